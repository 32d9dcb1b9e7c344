"""Speed of formal verification: images per second of each bound method on advcli's models, peak
memory, and how the cost grows with the batch size and with the number of radii.

Models: seed-cnn untrained (random weights, seed 0), seed-cnn trained by ``advcli.train`` on the
built-in digits for a couple of epochs, and mnist-small untrained; inputs are the digits' test
images (1x28x28). Methods: ``ibp``; ``crown`` with interval intermediate bounds (CROWN-IBP's bound);
``crown`` with CROWN intermediate bounds; ``alpha-crown``. Every configuration runs in a fresh
process, after a one-sample warm-up, and reports seconds per image (wall clock, and the process's
CPU time, which a machine shared with other jobs inflates less), images per second, the
process's peak resident memory during the bounds (/proc/self/status VmHWM, reset just before) and
its growth over the resident memory before them (torch, the model and the images), the share of
images whose every margin lower bound is positive, and the mean smallest margin lower bound (a
tightness figure: higher is tighter). The "eps list" rows verify the same images at 1, 2 and 4
radii with :func:`advcli.verification.verify_radii` (no attacks). The "command" rows time the real
command path, ``advcli verify`` in a fresh process on the trained models (bounds only, then with the
default counterexample attacks), from the seconds its JSON report gives (the whole verification,
model and data loading excluded) and the process's wall time. Not a test: the figures depend on
the machine and on its load.

    PYTHONPATH=. python benchmarks/verify_speed.py --threads 1 --json verify_speed.json
    PYTHONPATH=. python benchmarks/verify_speed.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import advcli
from advcli.verification import margin_bounds, verify_radii

METHODS = [("ibp", "ibp"), ("crown", "ibp"), ("crown", "crown"), ("alpha-crown", "crown")]


def _status_mb(field: str) -> float:
    """A memory figure of this process from /proc/self/status (VmRSS: now, VmHWM: peak), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak() -> None:
    """Start the peak-memory count afresh (Linux: 5 to clear_refs). ru_maxrss cannot be used: a child
    inherits its parent's peak across exec."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _load(model_name: str, trained: dict[str, str]) -> torch.nn.Module:
    if model_name.endswith("-trained"):
        return advcli.load_run(trained[model_name]).model.eval()
    torch.manual_seed(0)
    return advcli.build_model(model_name.removesuffix("-random"), (1, 28, 28), 10).eval()


def child(config: dict[str, Any]) -> dict[str, Any]:
    """Run one configuration in this process and return its figures."""
    torch.set_num_threads(config["threads"])
    model = _load(config["model"], config.get("trained"))
    with np.load(config["inputs"], allow_pickle=False) as arrays:  # only these images: the peak is the bounds'
        x, y = torch.from_numpy(arrays["x"][:config["batch"]]), torch.from_numpy(arrays["y"][:config["batch"]])
    eps_list = config["eps"]
    with torch.no_grad():
        margin_bounds(model, x[:1], y[:1], eps_list[0], method=config["method"], intermediate=config["intermediate"])
        _reset_peak()
        baseline = _status_mb("VmRSS")
        start, cpu_start = time.perf_counter(), time.process_time()
        if len(eps_list) == 1:
            worst = margin_bounds(model, x, y, eps_list[0], method=config["method"],
                                  intermediate=config["intermediate"]).worst()
            certified = float((worst > 0).float().mean())
            mean_worst = float(worst.mean())
        else:
            results = verify_radii(model, x, y, eps=tuple(eps_list), method=config["method"],
                                   intermediate=config["intermediate"], attacks=())
            certified = [float(r.verified.float().mean()) for r in results]
            mean_worst = None
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    return {**config, "seconds_per_image": seconds / len(x), "images_per_second": len(x) / seconds,
            "cpu_seconds_per_image": cpu_seconds / len(x),
            "peak_rss_mb": _status_mb("VmHWM"), "rss_growth_mb": _status_mb("VmHWM") - baseline,
            "certified": certified, "mean_worst_margin": mean_worst}


def _run_child(config: dict[str, Any]) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": str(config["threads"])}
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(config)], env=env, check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _prepare(folder: Path, epochs: int, count: int) -> tuple[dict[str, str], str]:
    """Train seed-cnn and mnist-small (run folders) and save the first `count` digits test images (an npz)."""
    trained = {}
    for arch in ("seed-cnn", "mnist-small"):
        path, _ = advcli.train(data="digits", arch=arch, epochs=epochs, device="cpu", out=folder / arch,
                               **({"optimizer": "adam", "lr": 0.001} if arch == "mnist-small" else {}))
        trained[f"{arch}-trained"] = str(path)
    x, y = advcli.load_dataset("digits").split("test")
    inputs = folder / "inputs.npz"
    np.savez(inputs, x=x[:count].numpy(), y=y[:count].numpy())
    return trained, str(inputs)


def command(config: dict[str, Any]) -> dict[str, Any]:
    """Time ``advcli verify`` on a trained run in a fresh process: its report's seconds and the wall time."""
    run = config["trained"][config["model"]]
    args = [sys.executable, "-m", "advcli", "verify", "--model", run, "--eps", ",".join(f"{e:g}" for e in config["eps"]),
            "--method", config["method"], "--intermediate", config["intermediate"], "--samples", str(config["batch"]),
            "--device", "cpu", "--precision", "fp32", "--json"]
    if config["method"] == "ibp":
        args.remove("--intermediate")
        args.remove(config["intermediate"])
    args += ["--bounds-only"] if not config["attacks"] else []
    env = {**os.environ, "OMP_NUM_THREADS": str(config["threads"])}
    started = time.perf_counter()
    done = subprocess.run(args, env=env, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - started
    report = json.loads(done.stdout)
    seconds = report["seconds"]
    return {**config, "seconds_per_image": seconds / config["batch"], "images_per_second": config["batch"] / seconds,
            "cpu_seconds_per_image": float("nan"), "process_wall_seconds": wall, "peak_rss_mb": float("nan"),
            "rss_growth_mb": float("nan"), "certified": [p["certified_accuracy"] for p in report["curve"]],
            "robust": [p["robust_accuracy"] for p in report["curve"]], "mean_worst_margin": None}


def configurations(args: argparse.Namespace, trained: dict[str, str], inputs: str) -> list[dict[str, Any]]:
    base = {"threads": args.threads, "trained": trained, "inputs": inputs}
    methods = METHODS[:3] if args.quick else METHODS
    configs = []
    for model in ("seed-cnn-random", "seed-cnn-trained", "mnist-small-random"):
        for method, intermediate in methods:
            for eps in args.eps:
                configs.append({**base, "group": "methods", "model": model, "method": method,
                                "intermediate": intermediate, "eps": [eps], "batch": args.samples})
    for batch in sorted({1, 4, args.samples}):
        configs.append({**base, "group": "batch size", "model": "seed-cnn-random", "method": "crown",
                        "intermediate": "crown", "eps": [args.eps[0]], "batch": batch})
    for length in (1, 2, 4):
        radii = [args.eps[0] * (i + 1) for i in range(length)]
        configs.append({**base, "group": "eps list", "model": "seed-cnn-trained", "method": "crown",
                        "intermediate": "crown", "eps": radii, "batch": args.samples})
    for model in ("seed-cnn-trained", "mnist-small-trained"):
        for method, intermediate in methods[:3]:
            for attacks in (False, True):
                configs.append({**base, "group": "cmd+attack" if attacks else "command", "model": model, "method": method,
                                "intermediate": intermediate, "eps": [args.eps[-1]], "batch": args.command_samples,
                                "attacks": attacks})
    return configs


def _row(figures: dict[str, Any]) -> str:
    certified = figures["certified"]
    certified = ", ".join(f"{c:.2f}" for c in certified) if isinstance(certified, list) else f"{certified:.2f}"
    worst = "" if figures["mean_worst_margin"] is None else f"{figures['mean_worst_margin']:.3f}"
    eps = ",".join(f"{e:g}" for e in figures["eps"])
    return (f"{figures['group']:<10} {figures['model']:<19} {figures['method']:<11} {figures['intermediate']:<6} "
            f"{eps:<17} {figures['batch']:>5} {figures['seconds_per_image']:>9.4f} "
            f"{figures['cpu_seconds_per_image']:>9.4f} "
            f"{figures['images_per_second']:>9.1f} "
            f"{figures['peak_rss_mb']:>8.0f} {figures['rss_growth_mb']:>7.0f}  {certified:<16} {worst}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--eps", type=float, nargs="+", default=[0.002, 0.01])
    parser.add_argument("--epochs", type=int, default=2, help="training epochs of the trained models")
    parser.add_argument("--command-samples", type=int, default=100, help="images of the `advcli verify` rows")
    parser.add_argument("--quick", action="store_true", help="4 images, no alpha-crown")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    if args.quick:
        args.samples, args.command_samples = 4, 8
    with tempfile.TemporaryDirectory() as folder:
        trained, inputs = _prepare(Path(folder), args.epochs, args.samples)
        print(f"{'group':<10} {'model':<19} {'method':<11} {'inter':<6} {'eps':<17} {'batch':>5} {'s/image':>9} "
              f"{'cpu s/img':>9} {'images/s':>9} {'peak MB':>8} {'+MB':>7}  {'certified':<16} mean worst")
        results = []
        for config in configurations(args, trained, inputs):
            figures = command(config) if "attacks" in config else _run_child(config)
            results.append(figures)
            print(_row(figures), flush=True)
    if args.json:
        meta = {"machine": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                "torch": torch.__version__, "threads": args.threads, "load_average": os.getloadavg()}
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=1))


if __name__ == "__main__":
    main()
