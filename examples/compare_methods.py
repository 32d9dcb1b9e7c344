"""Train the reference network with each adversarial training method and compare their robustness.

For every method: train (the collapse guard on, as by default), then evaluate the kept model on
a seeded subset of the test split with the reference BIM-20 (alpha 0.01, zero start) and with
PGD-50 with 10 random restarts (alpha 2.5·eps/50). Prints a Markdown table.

    python examples/compare_methods.py                                  # all methods, built-in digits
    python examples/compare_methods.py --epochs 5 --samples 500 --methods none,fgsm-rs,pgd
    python examples/compare_methods.py --data mnist:DIR --eps 0.3 --bim-alpha 0.03 --methods fgsm-rs,pgd
        --train-samples 20000 --optimizer adam --lr 0.005 --lr-schedule cyclic     # (one command line)

Time per epoch is training time (the guard's validation included) divided by the passes over the
data; free training makes ceil(epochs / replays) passes, each replaying every mini-batch.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

import advcli
import advcli.training
from advcli.data import Dataset
from advcli.io.provenance import package_versions
from advcli.io.runs import default_run_name
from advcli.runtime import resolve_device


def subset_training_data(dataset: Dataset, count: int, seed: int) -> Dataset:
    """The dataset with a seeded random subset of `count` training samples (test split unchanged)."""
    if count >= len(dataset.x_train):
        return dataset
    picks = torch.randperm(len(dataset.x_train), generator=torch.Generator().manual_seed(seed))[:count].sort().values
    return Dataset(
        name=dataset.name, spec=dataset.spec, x_train=dataset.x_train[picks], y_train=dataset.y_train[picks],
        x_test=dataset.x_test, y_test=dataset.y_test, classes=dataset.classes,
        fingerprint=f"{dataset.fingerprint}+train-subset:{count}:seed{seed}",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="digits", help="dataset spec (default: the built-in digits)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--samples", type=int, default=500, help="test samples evaluated (seeded subset)")
    parser.add_argument("--train-samples", type=int, help="train on a seeded subset of this many samples")
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--model", default="seed-cnn", help="architecture (default: the reference network)")
    parser.add_argument("--pgd-alpha", type=float, help="PGD-50-10 step (default 2.5·eps/50)")
    parser.add_argument("--bim-alpha", type=float, default=0.01, help="BIM-20 step (the reference's 0.01)")
    parser.add_argument("--methods", default=",".join(advcli.training.METHODS),
                        help="comma-separated methods (default: all)")
    parser.add_argument("--optimizer", default="sgd", help="sgd (the reference's) or adam")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--lr-schedule", default="constant", help="constant, cyclic or multistep")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", help="auto, fp32, bf16 or fp16 (attacks craft in it; accuracies are fp32)")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"))
    parser.add_argument("--json", type=Path, help="also write the table to this JSON file")
    args = parser.parse_args(argv)

    pgd_alpha = args.pgd_alpha or 2.5 * args.eps / 50
    methods = [name.strip() for name in args.methods.split(",") if name.strip()]
    unknown = [name for name in methods if name not in advcli.training.METHODS]
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(advcli.training.METHODS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    dataset = advcli.load_dataset(args.data)
    if args.train_samples:
        dataset = subset_training_data(dataset, args.train_samples, args.seed)
    name = default_run_name("compare")
    rows = []
    for method in methods:
        print(f"[{method}] training {args.epochs} epochs on {dataset.spec} ({len(dataset.x_train)} samples) ...", flush=True)
        path, result = advcli.train(
            data=args.data, arch=args.model, method=method, eps=args.eps if method != "none" else 0.0, epochs=args.epochs,
            optimizer=args.optimizer, lr=args.lr, lr_schedule=args.lr_schedule,
            seed=args.seed, device=args.device, precision=args.precision, dataset=dataset, out=args.runs_dir / f"{name}-{method}",
        )
        run = advcli.load_run(path, device=resolve_device(args.device))
        common = dict(run=run, dataset=dataset, eps=args.eps, samples=args.samples, seed=args.seed, device=args.device,
                      precision=args.precision)
        started = time.perf_counter()
        bim = advcli.evaluate(attacks=("bim",), alpha=args.bim_alpha, iters=20, **common)
        pgd = advcli.evaluate(attacks=("pgd",), iters=50, restarts=10, init="random",
                              alpha=pgd_alpha, **common)
        passes = max(1, result.metrics["epochs_completed"])
        guard = result.guard or {}
        row = {
            "method": method,
            "clean": bim.clean_accuracy,
            "bim20": bim.robust_accuracy,
            "pgd50x10": pgd.robust_accuracy,
            "seconds_per_epoch": result.metrics["train_seconds"] / passes,
            "passes": result.metrics["epochs_completed"],
            "train_seconds": result.metrics["train_seconds"],
            "eval_seconds": time.perf_counter() - started,
            "kept": result.metrics["kept"],
            "precision": bim.precision,
            "best_epoch": guard.get("best_epoch"),
            "collapse_events": len(guard.get("events", [])),
            "run": str(path),
        }
        rows.append(row)
        print(f"[{method}] clean {row['clean']:.4f}  BIM-20 {row['bim20']:.4f}  PGD-50-10 {row['pgd50x10']:.4f}  "
              f"{row['seconds_per_epoch']:.1f} s/epoch", flush=True)

    print()
    print(f"{dataset.spec}, {args.model}, eps {args.eps}, {args.epochs} epochs, {len(dataset.x_train)} training samples, "
          f"{args.optimizer} lr {args.lr} ({args.lr_schedule}), {args.samples} test samples evaluated, "
          f"precision {rows[0]['precision'] if rows else args.precision}, threads {torch.get_num_threads()}")
    print("| method | clean | BIM-20 | PGD-50-10 | s/epoch | passes | kept (best epoch) | collapses |")
    print("|---|---:|---:|---:|---:|---:|---|---:|")
    for row in rows:
        kept = f"{row['kept']} ({row['best_epoch']})" if row["best_epoch"] is not None else row["kept"]
        print(f"| {row['method']} | {row['clean']:.4f} | {row['bim20']:.4f} | {row['pgd50x10']:.4f} | "
              f"{row['seconds_per_epoch']:.1f} | {row['passes']} | {kept} | {row['collapse_events']} |")
    if args.json:
        args.json.write_text(json.dumps({
            "data": dataset.spec, "data_fingerprint": dataset.fingerprint, "model": args.model, "eps": args.eps,
            "pgd_alpha": pgd_alpha, "epochs": args.epochs,
            "train_samples": len(dataset.x_train), "samples": args.samples, "bim_alpha": args.bim_alpha,
            "optimizer": args.optimizer, "lr": args.lr, "lr_schedule": args.lr_schedule,
            "precision": args.precision, "threads": torch.get_num_threads(), "versions": package_versions(), "rows": rows,
        }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
