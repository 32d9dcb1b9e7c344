"""Reproduce the reference example end to end and compare with its published figures.

1. train the reference CNN (30 epochs, SGD-momentum, lr 0.01, batch 100);
2. attack it with BIM (eps 0.1, alpha 0.01, 20 iterations, zero start);
3. retrain it with FGSM adversarial training from a random start (alpha = 1.25·eps);
4. attack the robust model with the same BIM.

BIM is evaluated twice: with adversarial images clipped to the valid range [0, 1] (advcli's
default threat model) and unclipped, as the reference does (its BIM only bounds the perturbation).

Like the reference, both trainings use the whole training split (``val_split=0``: no held-out
slice, so no catastrophic-overfitting guard) and keep the final weights.

    python examples/reproduce_seed.py                      # built-in digits, no download
    python examples/reproduce_seed.py --data mnist:../shared/data/mnist
    python examples/reproduce_seed.py --precision fp32     # the fp32 column of the figures in README.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import advcli
from advcli.io.runs import default_run_name

REFERENCE = {"standard_clean": 0.9864, "standard_bim": 0.0114, "robust_clean": 0.9966, "robust_bim": 0.7568}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="digits", help="dataset spec (default: the built-in digits)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", help="auto (bf16 where native), fp32 or bf16")
    parser.add_argument("--samples", type=int, help="evaluate a seeded subset of the test split of this size")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"))
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--no-unclipped", dest="unclipped", action="store_false",
                        help="skip the unclipped BIM evaluation (the reference's threat model)")
    args = parser.parse_args(argv)

    timings: dict[str, float] = {}
    figures: dict[str, float] = {}
    precisions: dict[str, dict[str, str]] = {}
    dataset = advcli.load_dataset(args.data)
    evaluation = dict(attacks=("bim",), eps=args.eps, alpha=0.01, iters=20, device=args.device, samples=args.samples,
                      precision=args.precision)
    name = default_run_name("seed")
    for kind, method in (("standard", "none"), ("robust", "fgsm-rs")):
        started = time.perf_counter()
        print(f"[{kind}] training {args.epochs} epochs on {dataset.spec} ...", flush=True)
        path, result = advcli.train(
            data=args.data, epochs=args.epochs, method=method, eps=args.eps if method != "none" else 0.0,
            val_split=0.0, device=args.device, precision=args.precision, out=args.runs_dir / f"{name}-{kind}",
            dataset=dataset,
        )
        timings[f"{kind}_train_seconds"] = time.perf_counter() - started
        started = time.perf_counter()
        print(f"[{kind}] BIM-20 evaluation of {path} ...", flush=True)
        report = advcli.evaluate(model=str(path), dataset=dataset, **evaluation)
        timings[f"{kind}_eval_seconds"] = time.perf_counter() - started
        figures[f"{kind}_clean"] = report.clean_accuracy
        figures[f"{kind}_bim"] = report.robust_accuracy
        precisions[kind] = {"training": result.config.precision, "evaluation": report.precision}
        if args.unclipped:
            started = time.perf_counter()
            print(f"[{kind}] BIM-20 evaluation without clipping to [0, 1] (the reference's threat model) ...",
                  flush=True)
            report = advcli.evaluate(model=str(path), dataset=dataset, clip=False, **evaluation)
            timings[f"{kind}_eval_unclipped_seconds"] = time.perf_counter() - started
            figures[f"{kind}_bim_unclipped"] = report.robust_accuracy

    total = sum(timings.values())
    print()
    print(f"{'':28}{'advcli':>10}{'reference':>12}")
    labels = {"standard_clean": "standard model, clean", "standard_bim": "standard model, BIM-20",
              "standard_bim_unclipped": "  BIM-20 unclipped", "robust_clean": "robust model, clean",
              "robust_bim": "robust model, BIM-20", "robust_bim_unclipped": "  BIM-20 unclipped"}
    for key, label in labels.items():
        if key in figures:
            reference = REFERENCE[key.replace("_unclipped", "")]
            print(f"{label:28}{figures[key]:>10.4f}{reference:>12.4f}")
    print(f"\ntotal time {total / 60:.1f} min (" + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()) + "); "
          + ", ".join(f"{kind}: trained in {p['training']}, attacked in {p['evaluation']}" for kind, p in precisions.items()))
    if args.json:
        args.json.write_text(json.dumps({"data": dataset.spec, "data_fingerprint": dataset.fingerprint,
                                         "epochs": args.epochs, "eps": args.eps, "samples": args.samples,
                                         "precision": precisions, "figures": figures,
                                         "reference": REFERENCE, "seconds": timings}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
