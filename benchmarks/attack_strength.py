"""Attack strength: our attacks against an independent implementation (torchattacks), same model,
same samples, same budget. Reports both robust accuracies (lower = stronger attack), averaged over
--seeds for the attacks with random starts, how many samples only one side fooled, a table and
JSON, and exits 1 when one of ours is weaker than its counterpart by more than --tolerance.

    PYTHONPATH=. python benchmarks/attack_strength.py --model runs/robust --samples 500 --eps 0.1 --seeds 0,1,2,3,4

For APGD, when one batch holds all the samples (--batch-size >= --samples, the default), both
sides draw their random starts from the same seed in the same order, so the same algorithm gives
the same result sample for sample: a sample that only one side fools then points at a real
difference. With smaller batches (and for PGD) the starts differ, and single samples may go either
way by chance.

torchattacks is optional and not a dependency of advcli (``pip install --no-deps torchattacks scipy``).
Without it, only our figures are reported.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from rich.console import Console
from rich.table import Table

from advcli.attacks import resolve_attack
from advcli.data import load_dataset, select_samples
from advcli.evaluation import attack_samples, clean_predictions
from advcli.io.provenance import package_versions
from advcli.io.runs import load_run
from advcli.runtime import Victim, predict

# Ours (advcli attack name) and how to build the torchattacks counterpart with the same budget.
PAIRS: dict[str, Callable[[Any, torch.nn.Module, float, int], Any]] = {
    "fgsm": lambda ta, model, eps, seed: ta.FGSM(model, eps=eps),
    "pgd": lambda ta, model, eps, seed: ta.PGD(model, eps=eps, alpha=2.5 * eps / 20, steps=20, random_start=True),
    "bim": lambda ta, model, eps, seed: ta.BIM(model, eps=eps, alpha=0.01, steps=20),
    "apgd-ce": lambda ta, model, eps, seed: ta.APGD(model, norm="Linf", eps=eps, steps=100, n_restarts=1, loss="ce",
                                                    seed=seed),
    "apgd-dlr": lambda ta, model, eps, seed: ta.APGD(model, norm="Linf", eps=eps, steps=100, n_restarts=1, loss="dlr",
                                                     seed=seed),
}
DETERMINISTIC = ("fgsm", "bim")  # no random start: one seed says it all


def torchattacks_module() -> Optional[Any]:
    try:
        import torchattacks
    except ImportError:
        return None
    return torchattacks


def theirs_robust(attack: Any, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, name: str, eps: float,
                  batch_size: int) -> torch.Tensor:
    """Robust samples under a torchattacks attack, with the same re-checks as our evaluation."""
    config = resolve_attack(name, eps=eps)
    robust = []
    for start in range(0, len(x), batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        adv = attack(xb, yb).detach()
        config.threat.check(xb, adv, name)
        robust.append((predict(model, xb) == yb) & (predict(model, adv) == yb))
    return torch.cat(robust)


def ours_robust(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, name: str, eps: float, seed: int,
                batch_size: int) -> torch.Tensor:
    """Robust samples under our attack, through the evaluation's own attack-and-re-check step."""
    victim = Victim.of(model, precision="fp32")
    clean = clean_predictions(victim, x, batch_size=batch_size) == y
    robust = clean.clone()
    with torch.no_grad():
        num_classes = int(model(x[:1]).shape[1])
    outcome = attack_samples(victim, x, y, resolve_attack(name, eps=eps), rows=clean.nonzero().squeeze(1),
                             num_classes=num_classes, batch_size=batch_size, seed=seed)
    robust[clean] = outcome.fooled_by == -1
    return robust


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="run folder")
    parser.add_argument("--data", default=None, help="dataset spec (default: the run's)")
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--attacks", default="fgsm,pgd,apgd-ce,apgd-dlr", help=f"comma-separated, from {', '.join(PAIRS)}")
    parser.add_argument("--auto", action="store_true", help="also report our auto (no counterpart)")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds; attacks with random starts run once per seed")
    parser.add_argument("--batch-size", type=int, default=1000,
                        help="samples per batch; >= --samples gives both APGDs the same random starts")
    parser.add_argument("--tolerance", type=float, default=0.0, help="allowed excess robust accuracy of ours")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)

    names = [name.strip() for name in args.attacks.split(",") if name.strip()]
    unknown = [name for name in names if name not in PAIRS]
    if unknown:
        parser.error(f"unknown attack(s) {', '.join(unknown)}; choose from {', '.join(PAIRS)}")
    run = load_run(args.model)
    dataset = load_dataset(args.data or run.data_spec)
    x_all, y_all = dataset.split("test")
    seeds_all = [int(seed) for seed in args.seeds.split(",")]
    picks = select_samples(len(x_all), args.samples, seeds_all[0])
    x, y = x_all[picks], y_all[picks]
    model = run.model
    ta = torchattacks_module()
    console = Console(stderr=True)
    if ta is None:
        console.print("torchattacks is not installed: only our figures are reported")

    rows = []
    for name in names + (["auto"] if args.auto else []):
        seeds = seeds_all[:1] if name in DETERMINISTIC else seeds_all
        row: dict[str, Any] = {"attack": name, "seeds": seeds, "runs": []}
        for seed in seeds:
            started = time.perf_counter()
            ours_robust_mask = ours_robust(model, x, y, name, args.eps, seed, args.batch_size)
            measured: dict[str, Any] = {"seed": seed, "ours": float(ours_robust_mask.float().mean()),
                                   "ours_seconds": round(time.perf_counter() - started, 2)}
            row["ours_config"] = resolve_attack(name, eps=args.eps).to_dict()
            if ta is not None and name in PAIRS:
                torch.manual_seed(seed)
                started = time.perf_counter()
                attack = PAIRS[name](ta, model, args.eps, seed)
                theirs_robust_mask = theirs_robust(attack, model, x, y, name, args.eps, args.batch_size)
                measured.update(theirs=float(theirs_robust_mask.float().mean()),
                           theirs_seconds=round(time.perf_counter() - started, 2),
                           only_ours_fooled=int((theirs_robust_mask & ~ours_robust_mask).sum()),
                           only_theirs_fooled=int((ours_robust_mask & ~theirs_robust_mask).sum()))
                row["theirs_attack"] = repr(attack).splitlines()[0][:200]
            row["runs"].append(measured)
            console.print(f"{name} seed {seed}: done", highlight=False)
        for key in ("ours", "theirs", "ours_seconds", "theirs_seconds", "only_ours_fooled", "only_theirs_fooled"):
            if all(key in measured for measured in row["runs"]):
                row[key] = sum(measured[key] for measured in row["runs"]) / len(row["runs"])
        if "theirs" in row:
            row["not_weaker"] = row["ours"] <= row["theirs"] + args.tolerance
        rows.append(row)

    payload = {"model": str(run.path), "model_fingerprint": run.fingerprint, "data": dataset.spec,
               "data_fingerprint": dataset.fingerprint, "samples": len(x), "eps": args.eps, "seeds": seeds_all,
               "clean_accuracy": float((predict(model, x) == y).float().mean()), "batch_size": args.batch_size,
               "apgd_same_random_starts": args.batch_size >= len(x), "results": rows,
               "torchattacks": getattr(ta, "__version__", None), "versions": package_versions()}
    table = Table(title=f"Robust accuracy at eps {args.eps:g} (L-inf), {len(x)} samples, mean over seeds; "
                        "lower = stronger attack")
    for column in ("attack", "seeds", "advcli", "torchattacks", "only advcli fooled", "only theirs fooled",
                   "advcli s", "theirs s", "not weaker"):
        table.add_column(column, justify="left" if column == "attack" else "right")

    def number(row: dict[str, Any], key: str, form: str) -> str:
        return format(row[key], form) if key in row else "–"

    for row in rows:
        table.add_row(row["attack"], str(len(row["seeds"])), number(row, "ours", ".4f"), number(row, "theirs", ".4f"),
                      number(row, "only_ours_fooled", ".1f"), number(row, "only_theirs_fooled", ".1f"),
                      number(row, "ours_seconds", ".1f"), number(row, "theirs_seconds", ".1f"),
                      str(row.get("not_weaker", "–")))
    Console(width=130).print(table)
    print(json.dumps(payload, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0 if all(row.get("not_weaker", True) for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
