"""The top of a report: its headline figures, the model card and the training curve."""

from __future__ import annotations

from typing import Any, Mapping, Optional

from .document import BAD, GOOD, MUTED, WARN, Cell, Facts, Figure, Headline, Notice, Paragraph, Section
from .figures import loss_png, smoothing_window
from .inputs import ReportInputs, history_series
from .text import shorten

MAX_CLASSES_LISTED = 12


def percent(value: Optional[float]) -> str:
    """A share as a percentage with one decimal; "—" when it was not measured."""
    return "—" if value is None else f"{100 * float(value):.1f}%"


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def _classes(names: list[str]) -> str:
    shown = ", ".join(shorten(name, 24) for name in names[:MAX_CLASSES_LISTED])
    more = len(names) - MAX_CLASSES_LISTED
    return f"{len(names)}: {shown}" + (f", … (+{more})" if more > 0 else "")


def _training_method(training: Mapping[str, Any]) -> str:
    method = str(training.get("method", "?"))
    if method == "none":
        return "standard (no adversarial training)"
    parts = [method, f"eps {_number(training.get('eps'))}"]
    if training.get("alpha") is not None:
        parts.append(f"step {_number(training['alpha'])}")
    return ", ".join(part for part in parts if part)


def _versions(versions: Any) -> str:
    if not isinstance(versions, Mapping) or not versions:
        return "not recorded"
    return ", ".join(f"{name} {version}" for name, version in versions.items())


def model_card(inputs: ReportInputs) -> Section:
    """Architecture, data and its fingerprint, training method and eps, precision, provenance."""
    model = inputs.model
    data = model.get("data") if isinstance(model.get("data"), Mapping) else {}
    training = model.get("training") if isinstance(model.get("training"), Mapping) else {}
    config = model.get("config") if isinstance(model.get("config"), Mapping) else {}
    metrics = model.get("metrics") if isinstance(model.get("metrics"), Mapping) else {}
    shape = "×".join(str(v) for v in model.get("input_shape", []))
    value_range = model.get("input_range") or [0, 1]
    pixels = f"[{', '.join(_number(v) for v in value_range)}]" if isinstance(value_range, list) else str(value_range)
    items: list[tuple[str, Cell]] = [
        ("Architecture", Cell(str(model.get("architecture", "?")), code=True)),
        ("Input", Cell(f"{shape} (C×H×W), pixels in {pixels}")),
        ("Classes", Cell(_classes(inputs.classes))),
        ("Data", Cell(f"{data.get('spec', '?')} ({data.get('n_train', '?')} train, {data.get('n_test', '?')} test)",
                      code=True)),
        ("Data fingerprint", Cell(str(data.get("fingerprint", "not recorded")), code=True)),
        ("Training", Cell(_training_method(training))),
        ("Precision", Cell(str(training.get("precision", config.get("precision", "not recorded"))))),
    ]
    if metrics:
        items.append(("Schedule", Cell(f"{metrics.get('epochs_completed', '?')} epochs, {metrics.get('iterations', '?')} "
                                       f"iterations, {config.get('optimizer', '?')} lr {config.get('lr', '?')}, "
                                       f"seed {model.get('seed', '?')}, {metrics.get('train_seconds', '?')} s on "
                                       f"{metrics.get('device', '?')}")))
    weights = model.get("weights") if isinstance(model.get("weights"), Mapping) else {}
    if inputs.exported is not None:
        items.append(("Exported file", Cell(f"{inputs.exported.get('path')} ({inputs.exported.get('fingerprint')})",
                                            code=True)))
    items += [("Weights", Cell(str(weights.get("sha256", "not recorded")), code=True)),
              ("Created", Cell(str(model.get("created", "not recorded")))),
              ("Versions", Cell(_versions(model.get("versions"))))]
    blocks: list[Any] = [Facts(items)]
    if metrics.get("interrupted"):
        blocks.append(Notice("Training was interrupted; these weights are from before it finished.", WARN))
    if metrics.get("stopped_by_guard"):
        blocks.append(Notice("The collapse guard stopped training early (see model.json 'guard').", WARN))
    return Section("model-card", "Model card", blocks)


def training_section(inputs: ReportInputs) -> Optional[Section]:
    """The loss curve (and validation accuracies) when the history holds any loss."""
    iterations, losses, validation = history_series(inputs.history)
    if not losses:
        return None
    figure = Figure("loss", loss_png(iterations, losses, validation), alt="Training loss per iteration",
                    caption=f"Training loss over {len(losses)} iterations"
                            + (f" (light: per mini-batch; dark: mean of {smoothing_window(len(losses))})"
                               if smoothing_window(len(losses)) > 1 else ", one point per mini-batch")
                            + ("; below: validation accuracy, clean and robust." if validation else "."))
    text = f"Final loss {losses[-1]:.4f} after {int(iterations[-1])} iterations."
    return Section("training", "Training", [figure, Paragraph(text)])


def headlines(inputs: ReportInputs, verification: Optional[Mapping[str, Any]]) -> list[Headline]:
    """Clean and robust accuracy (and certified accuracy) as measured; nothing when not measured."""
    evaluation = inputs.evaluation
    out: list[Headline] = []
    if evaluation is not None:
        samples = evaluation.get("samples")
        out.append(Headline("Clean accuracy", percent(evaluation.get("clean_accuracy")),
                            f"{samples} {evaluation.get('split', '')} samples"))
        eps = evaluation.get("eps") or []
        attacks = ", ".join(str(a.get("label", a.get("name"))) for a in evaluation.get("attacks", []))
        out.append(Headline("Robust accuracy", percent(evaluation.get("robust_accuracy")),
                            f"eps {max(eps):g} {evaluation.get('norm', '')}, worst of {attacks}" if eps else attacks,
                            status=None))
        passed = evaluation.get("passed")
        if passed is not None and any(v is not None for v in (evaluation.get("thresholds") or {}).values()):
            out.append(Headline("Thresholds", "passed" if passed else "failed",
                                "; ".join(evaluation.get("failures") or []) or "all met", GOOD if passed else BAD))
    if verification is not None:
        best = verification["results"][-1]
        out.append(Headline("Certified accuracy", percent(best["certified_accuracy"]),
                            f"eps {best['eps']:g} {verification['norm']}, {verification['method']} (a lower bound)"))
    if not out:
        out.append(Headline("Robustness", "not evaluated", "no evaluation was given", MUTED))
    return out
