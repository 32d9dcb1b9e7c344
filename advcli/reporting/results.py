"""Report sections for what an evaluation and a verifier measured: accuracy table, eps curve,
per-class table, sanity checks and certified accuracy."""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from .card import percent
from .document import BAD, GOOD, MUTED, WARN, Cell, Facts, Figure, Notice, Paragraph, Section, Table
from .figures import curve_png


def _attack_labels(evaluation: Mapping[str, Any]) -> list[str]:
    return [str(a.get("label", a.get("name", "?"))) for a in evaluation.get("attacks", [])]


def _curve_rows(evaluation: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [point for point in evaluation.get("curve", []) if isinstance(point, Mapping)]


def _attack_settings(attack: Mapping[str, Any]) -> str:
    iters = attack.get("iters")
    parts = [f"{iters} step{'' if iters == 1 else 's'}" if iters is not None else None,
             f"step {attack['alpha']:g}" if isinstance(attack.get("alpha"), (int, float)) else None,
             f"{attack.get('restarts')} restarts" if (attack.get("restarts") or 1) > 1 else None,
             f"{attack.get('init')} start" if attack.get("init") else None,
             "no clipping to [0, 1]" if attack.get("clip") is False else None,
             f"{attack.get('queries')} queries" if attack.get("queries") else None,
             f"target {attack.get('target')}" if attack.get("target") is not None else None]
    return ", ".join(part for part in parts if part)


def accuracy_section(evaluation: Mapping[str, Any]) -> Section:
    """Clean and robust accuracy at every eps for every attack, the worst case, and how it was run."""
    labels = _attack_labels(evaluation)
    several = len(labels) > 1
    headers = ["eps"] + labels + (["worst case"] if several else [])
    rows = [[Cell("0 (clean)", numeric=True)] + [Cell(percent(evaluation.get("clean_accuracy")), numeric=True)
                                                  for _ in headers[1:]]]
    for point in _curve_rows(evaluation):
        attacks = point.get("attacks", [])
        cells = [Cell(f"{point.get('eps'):g}", numeric=True)]
        cells += [Cell(percent(a.get("robust_accuracy")), numeric=True) for a in attacks]
        if several:
            cells.append(Cell(percent(point.get("robust_accuracy")), numeric=True, strong=True))
        rows.append(cells)
    table = Table(headers, rows, caption=f"Accuracy under each attack ({evaluation.get('norm', '?')} radius eps); "
                                         "worst case: a sample counts as robust only if every attack failed on it.")
    settings = [(str(a.get("label", a.get("name"))), Cell(_attack_settings(a) or "defaults"))
                for a in evaluation.get("attacks", [])]
    runs_on = str(evaluation.get("backend", "torch"))
    if evaluation.get("execution_providers"):
        runs_on += " on " + ", ".join(map(str, evaluation["execution_providers"]))
    facts = Facts(settings + [
        ("Model", Cell(str(evaluation.get("model", "?")), code=True)),
        ("Data", Cell(f"{evaluation.get('data', '?')}, {evaluation.get('split', '?')} split, "
                      f"{evaluation.get('samples', '?')} samples", code=True)),
        ("Ran on", Cell(f"{evaluation.get('device', '?')}, {runs_on}, attack gradients in "
                        f"{evaluation.get('precision', '?')}, {evaluation.get('seconds', '?')} s")),
        ("Created", Cell(str(evaluation.get("created", "not recorded")))),
    ])
    blocks: list[Any] = [table, facts]
    for failure in evaluation.get("failures") or []:
        blocks.append(Notice(f"Threshold not met: {failure}", BAD))
    for note in evaluation.get("notes") or []:
        blocks.append(Notice(str(note), WARN))
    return Section("accuracy", "Clean and robust accuracy", blocks)


def curve_section(evaluation: Mapping[str, Any], verification: Optional[Mapping[str, Any]]) -> Optional[Section]:
    """Robust accuracy against eps, when the evaluation measured two radii or more."""
    points = _curve_rows(evaluation)
    if len(points) < 2:
        return None
    eps = [float(point["eps"]) for point in points]
    labels = _attack_labels(evaluation)
    series = {label: [p["attacks"][i].get("robust_accuracy") if i < len(p.get("attacks", [])) else None
                      for p in points] for i, label in enumerate(labels)}
    if len(labels) > 1:
        series["worst case"] = [point.get("robust_accuracy") for point in points]
    clean = evaluation.get("clean_accuracy")
    if clean is not None and min(eps) > 0:  # at eps 0 every attack leaves the clean accuracy
        eps = [0.0] + eps
        series = {label: [clean] + values for label, values in series.items()}
    certified = None
    if verification is not None and verification.get("norm") == evaluation.get("norm"):
        rows = verification["results"]
        certified = (str(verification["method"]), [r["eps"] for r in rows], [r["certified_accuracy"] for r in rows])
    classes = len(evaluation.get("per_class") or []) or None
    png = curve_png(eps, series, norm=str(evaluation.get("norm", "?")), clean=clean,
                    chance=1 / classes if classes else None, certified=certified)
    caption = ("Robust accuracy against eps: attacks give upper bounds on the true robust accuracy"
               + ("; certified accuracy is a proven lower bound." if certified else "."))
    return Section("robustness-curve", "Robustness curve", [Figure("robustness-curve", png, "Robust accuracy against eps", caption)])


def per_class_section(evaluation: Mapping[str, Any]) -> Optional[Section]:
    """Clean and worst-case robust accuracy of each class at every radius."""
    rows = evaluation.get("per_class")
    if not rows:
        return None
    eps = [point.get("eps") for point in _curve_rows(evaluation)]
    headers = ["class", "samples", "clean"] + [f"eps {e:g}" for e in eps]
    table_rows = []
    for row in rows:
        curve = list(row.get("curve") or [])
        name = str(row.get("name"))
        label = name if name == str(row.get("class")) else f"{row.get('class')}: {name}"
        cells = [Cell(label), Cell(str(row.get("samples")), numeric=True),
                 Cell(percent(row.get("clean_accuracy")), numeric=True)]
        cells += [Cell(percent(curve[i] if i < len(curve) else None), numeric=True) for i in range(len(eps))]
        table_rows.append(cells)
    blocks: list[Any] = [Table(headers, table_rows, caption="Worst case over the attacks, per true class; "
                                                             "— where a class has no samples.")]
    measured = [r for r in rows if r.get("robust_accuracy") is not None]
    if len(measured) > 1 and eps:
        low = min(r["robust_accuracy"] for r in measured)
        names = [str(r.get("name")) for r in measured if r["robust_accuracy"] == low]
        listed = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        blocks.append(Paragraph(f"Lowest robust accuracy at eps {eps[-1]:g}: {percent(low)}, for "
                                f"{'class' if len(names) == 1 else f'{len(names)} of {len(measured)} classes:'} {listed}."))
    return Section("per-class", "Per-class accuracy", blocks)


def sanity_section(evaluation: Mapping[str, Any]) -> Optional[Section]:
    """The evaluation's sanity checks: fired (the robust figure is suspect), passed, or not checked."""
    checks = [check for check in evaluation.get("sanity") or [] if isinstance(check, Mapping)]
    if not checks:
        return None
    rows = []
    for check in checks:
        if not check.get("checked", True):
            status, word = MUTED, "not checked"
        elif check.get("fired"):
            status, word = BAD, "fired"
        else:
            status, word = GOOD, "passed"
        rows.append([Cell(str(check.get("name")), code=True), Cell(word, status=status), Cell(str(check.get("detail", "")))])
    fired = sum(1 for row in rows if row[1].status == BAD)
    blocks: list[Any] = [Table(["check", "result", "detail"], rows,
                               caption="Signs that the attacks did not work (Carlini et al., 2019; Athalye et al., 2018).")]
    if fired:
        blocks.insert(0, Notice(f"{fired} sanity check{'s' if fired > 1 else ''} fired: the robust accuracy above "
                                "may be overstated.", BAD))
    return Section("sanity", "Sanity checks", blocks)


def verification_section(verification: Mapping[str, Any], evaluation: Optional[Mapping[str, Any]]) -> Section:
    """Certified accuracy per radius with the verified / violated / unproven shares, beside the
    attack-measured robust accuracy at the same radius when the evaluation has it."""
    attacked = {}
    if evaluation is not None and evaluation.get("norm") == verification.get("norm"):
        attacked = {float(p["eps"]): p.get("robust_accuracy") for p in _curve_rows(evaluation)}
    rows, notices = [], []
    for row in verification["results"]:
        upper = row.get("robust_accuracy", attacked.get(row["eps"]))
        rows.append([Cell(f"{row['eps']:g}", numeric=True), Cell(percent(row["certified_accuracy"]), numeric=True),
                     Cell(percent(upper), numeric=True),
                     Cell(percent(row["verified"]), numeric=True), Cell(percent(row["violated"]), numeric=True),
                     Cell(percent(row["unproven"]), numeric=True)])
        if upper is not None and row["certified_accuracy"] > upper + 1e-9:
            notices.append(Notice(f"At eps {row['eps']:g} the certified accuracy ({percent(row['certified_accuracy'])}) "
                                  f"exceeds the attack-measured robust accuracy ({percent(upper)}): on the same samples "
                                  "that is impossible, so check that both ran on the same samples.", BAD))
    table = Table(["eps", "certified", "attacked (upper bound)", "verified", "violated", "unproven"], rows,
                  caption="Certified: share of all samples proven correct in the whole ball. Verified / violated / "
                          "unproven: shares of the attempted samples proven robust, with a counterexample, or neither.")
    facts = Facts([("Method", Cell(str(verification["method"]), code=True)),
                   ("Threat model", Cell(f"{verification['norm']}, {verification['samples']} samples")),
                   ("Time", Cell(f"{float(verification['seconds']):g} s"))])
    return Section("verification", "Verification", [table, facts, *notices])


def sections(evaluation: Optional[Mapping[str, Any]], verification: Optional[Mapping[str, Any]]) -> Sequence[Section]:
    """Every results section that has data, in reading order."""
    out: list[Optional[Section]] = []
    if evaluation is not None:
        out += [accuracy_section(evaluation), curve_section(evaluation, verification),
                per_class_section(evaluation), sanity_section(evaluation)]
    if verification is not None:
        out.append(verification_section(verification, evaluation))
    return [section for section in out if section is not None]
