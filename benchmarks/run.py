"""Speed benchmark: advcli against a plain eager PyTorch loop, side by side.

For the reference network (seed-cnn, 1x28x28 inputs, 10 classes) it measures images per second of

  * BIM-20 evaluation (eps 0.1, step 0.01) on an adversarially trained model, so that early
    stopping saves little; the plain loop is what one writes from the reference example (the
    reference's layer order, parameters requiring gradients, float32, batches of 100, no early
    stop); advcli runs its whole evaluation (re-checks and float32 re-classification included) and,
    separately, its attack kernel without early stopping; torchattacks' BIM when it is importable;
    then again with every contender in a fresh process per round, as users run them (the plain
    loop under glibc's allocator as it is, advcli as its command runs, with freed memory kept);
  * BIM-20 evaluation on a standard model, where early stopping pays (reported apart);
  * FGSM-RS and standard training (one epoch, no validation slice);
  * inference under torch and onnxruntime;

with the achieved share of this machine's measured matrix-multiply FLOP/s (fp32 and bf16, from
nominal FLOP counts of the layers), the robust accuracy moved by bf16 against fp32 on the same model
and samples (BIM-20 and PGD-20), and the peak memory of evaluating 10k and 60k images in a child
process (flat = streamed). Contenders run interleaved, best of --rounds, so a busy machine slows
them alike; in this process they all run with freed memory kept for reuse (see
advcli.runtime.keep_freed_memory; ``--glibc-default`` leaves the allocator alone), so that none
depends on what ran before it. Every figure records the precision it ran in. Prints a table;
``--json`` writes JSON.

    PYTHONPATH=. python benchmarks/run.py --threads 1 --json results.json
    PYTHONPATH=. python benchmarks/run.py --quick            # a smoke run, a minute or two

On a small machine shared with other jobs, ``--threads 1`` gives steadier figures: with several
threads every parallel region waits for whichever thread was descheduled.

Data: MNIST (``mnist:DIR``) when --data names it or when ``../shared/data/mnist`` is next to the
repository, else the built-in digits. Not a test: the numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

import advcli
from advcli.attacks import perturb
from advcli.data import Dataset
from advcli.evaluation import evaluate_model
from advcli.io.provenance import package_versions
from advcli.io.runs import load_run
from advcli.models import SeedCNN
from advcli.runtime import (
    attack_mode,
    cpu_has_native_bf16,
    crafting_model,
    deciding_model,
    keep_freed_memory,
    predict,
    resolve_precision,
)
from advcli.threat import ThreatModel
from advcli.training import TrainConfig, save_training, train_model

EPS, ALPHA, STEPS = 0.1, 0.01, 20
CPU = torch.device("cpu")
SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


# The plain loop -----------------------------------------------------------------------------


class ReferenceCNN(nn.Module):
    """The reference example's network in its own layer order (ReLU before the max-pool); same
    parameter names as advcli's seed-cnn, so the same weights load into both."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, padding=1),
                                      nn.ReLU(), nn.MaxPool2d(2, 2))
        self.classifier = nn.Linear(64 * 14 * 14, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def reference_copy(model: nn.Module) -> ReferenceCNN:
    copy = ReferenceCNN()
    copy.load_state_dict(model.state_dict())
    return copy.eval()


def plain_bim(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 100) -> torch.Tensor:
    """Robust samples under BIM-20, as written from the reference: float32, parameters requiring
    gradients, batches of 100, every sample attacked for all 20 steps."""
    robust = []
    for start in range(0, len(x), batch):
        xb, yb = x[start:start + batch], y[start:start + batch]
        with torch.no_grad():
            clean = model(xb).argmax(1) == yb
        x_adv = xb.clone()
        for _ in range(STEPS):
            x_adv.requires_grad_(True)
            loss = F.cross_entropy(model(x_adv), yb)
            (grad,) = torch.autograd.grad(loss, x_adv)
            x_adv = (xb + (x_adv.detach() + ALPHA * grad.sign() - xb).clamp(-EPS, EPS)).clamp(0, 1)
        with torch.no_grad():
            robust.append(clean & (model(x_adv).argmax(1) == yb))
    return torch.cat(robust)


def plain_train_epoch(dataset: Dataset, adversarial: bool, seed: int = 0) -> None:
    """One epoch of the reference's loop (SGD, momentum 0.9, lr 0.01, batches of 100), with
    FGSM-RS (Wong et al., 2020: uniform start, step 1.25·eps) when `adversarial`."""
    torch.manual_seed(seed)
    model = reference_copy(SeedCNN((1, 28, 28), 10)).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = dataset.x_train, dataset.y_train
    order = torch.randperm(len(x))
    for start in range(0, len(x), 100):
        xb, yb = x[order[start:start + 100]], y[order[start:start + 100]]
        if adversarial:
            delta = (2 * torch.rand_like(xb) - 1) * EPS
            x_adv = (xb + delta).clamp(0, 1).requires_grad_(True)
            (grad,) = torch.autograd.grad(F.cross_entropy(model(x_adv), yb), x_adv)
            delta = (delta + 1.25 * EPS * grad.sign()).clamp(-EPS, EPS)
            xb = (xb + delta).clamp(0, 1)
        loss = F.cross_entropy(model(xb), yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


# advcli -------------------------------------------------------------------------------------


def advcli_bim(model: nn.Module, x: torch.Tensor, y: torch.Tensor, precision: str) -> float:
    """Robust accuracy under advcli's whole evaluation (BIM-20 with early stopping, re-checks,
    float32 re-classification)."""
    report = evaluate_model(model, x, y, attacks=("bim",), eps=EPS, alpha=ALPHA, iters=STEPS, sanity_samples=0,
                            precision=precision, batch_size=500)
    return report.robust_accuracy


def advcli_kernel(model: nn.Module, x: torch.Tensor, y: torch.Tensor, precision: str) -> torch.Tensor:
    """advcli's attack loop alone, *without* early stopping, and float32 classification: the speed of
    precision and layout without the saving of stopping fooled samples."""
    robust = []
    with attack_mode(model):
        crafter = crafting_model(model, precision, CPU)
        judge = deciding_model(crafter)  # float32, in the crafting copy's layout, as evaluation judges
        for start in range(0, len(x), 500):
            xb, yb = x[start:start + 500], y[start:start + 500]
            clean = predict(judge, xb) == yb
            x_adv = perturb(crafter, xb, yb, ThreatModel(EPS), alpha=ALPHA, iters=STEPS, init="zero")
            robust.append(clean & (predict(judge, x_adv) == yb))
    return torch.cat(robust)


def advcli_train(dataset: Dataset, method: str, precision: str) -> None:
    """One epoch of advcli's training loop (no validation slice; the plain loop has none)."""
    config = TrainConfig.of(data=dataset.spec, epochs=1, batch_size=100, method=method,
                         eps=EPS if method != "none" else 0.0, val_split=0.0, precision=precision, device="cpu")
    train_model(config, dataset=dataset)


def torchattacks_bim(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 100) -> Optional[torch.Tensor]:
    try:
        import torchattacks
    except ImportError:
        return None
    attack = torchattacks.BIM(model, eps=EPS, alpha=ALPHA, steps=STEPS)
    robust = []
    for start in range(0, len(x), batch):
        xb, yb = x[start:start + batch], y[start:start + batch]
        x_adv = attack(xb, yb)
        robust.append((predict(model, xb) == yb) & (predict(model, x_adv) == yb))
    return torch.cat(robust)


# Measuring ----------------------------------------------------------------------------------


def forward_flops(shape: tuple[int, int, int] = (1, 28, 28), classes: int = 10) -> int:
    """Nominal FLOPs (2 per multiply-add) of one seed-cnn forward pass, from its layer shapes."""
    c, h, w = shape
    conv1 = 2 * h * w * 32 * 9 * c
    conv2 = 2 * h * w * 64 * 9 * 32
    linear = 2 * 64 * (h // 2) * (w // 2) * classes
    return conv1 + conv2 + linear


# Passes per image, in forward-pass equivalents: a backward pass to the input costs about one
# forward, one that also computes weight gradients about two.
PASSES = {"bim20": 2 + 2 * STEPS, "fgsm-rs": 5, "standard": 3, "inference": 1}


def matmul_flops(dtype: torch.dtype, size: int, repeats: int = 10) -> tuple[float, float]:
    """FLOP/s of a square matrix product in `dtype`, per wall-clock and per CPU second (best of 5)."""
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    a @ b
    timing = interleaved({"matmul": lambda: [a @ b for _ in range(repeats)]}, 5)["matmul"]
    work = repeats * 2 * size ** 3
    return work / timing.wall, work / timing.cpu


@dataclass
class Timing:
    wall: float = float("inf")  # best wall-clock seconds over the rounds
    cpu: float = float("inf")  # best CPU seconds of this process (all its threads) over the rounds
    result: Any = None


def interleaved(contenders: dict[str, Callable[[], Any]], rounds: int) -> dict[str, Timing]:
    """Run every contender once per round, in turn, and keep each one's best wall-clock and best
    CPU time (separately) and its last result."""
    best = {name: Timing() for name in contenders}
    for _ in range(rounds):
        for name, run in contenders.items():
            wall, cpu = time.perf_counter(), time.process_time()
            result = run()
            timing = best[name]
            timing.wall = min(timing.wall, time.perf_counter() - wall)
            timing.cpu = min(timing.cpu, time.process_time() - cpu)
            timing.result = result
    return best


@dataclass
class Row:
    group: str
    measurement: str
    precision: str
    images_per_s: float  # wall clock
    images_per_cpu_s: float  # per CPU second of this process
    vs_plain: Optional[float] = None  # wall clock
    vs_plain_cpu: Optional[float] = None
    peak_share: Optional[float] = None  # nominal FLOP/s over the measured matmul FLOP/s, per CPU second
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        def rounded(value: Optional[float], digits: int) -> Optional[float]:
            return None if value is None else round(value, digits)

        return {"group": self.group, "measurement": self.measurement, "precision": self.precision,
                "images_per_s": round(self.images_per_s, 1), "images_per_cpu_s": round(self.images_per_cpu_s, 1),
                "vs_plain": rounded(self.vs_plain, 2), "vs_plain_cpu": rounded(self.vs_plain_cpu, 2),
                "matmul_peak_share": rounded(self.peak_share, 4), "note": self.note}


@dataclass
class Bench:
    flops: dict[str, float]  # matmul FLOP per CPU second, by precision
    rows: list[Row] = field(default_factory=list)

    def add(self, group: str, measurement: str, precision: str, images: int, timing: Timing, *,
            plain: Optional[Timing] = None, passes: Optional[int] = None, note: str = "") -> Row:
        share = None
        if passes is not None and precision in self.flops:
            share = images / timing.cpu * passes * forward_flops() / self.flops[precision]
        row = Row(group, measurement, precision, images / timing.wall, images / timing.cpu,
                  None if plain is None else plain.wall / timing.wall, None if plain is None else plain.cpu / timing.cpu,
                  share, note)
        self.rows.append(row)
        print(f"  {group}: {measurement} [{precision}] {row.images_per_s:.1f} img/s"
              + (f", {row.vs_plain:.2f}x plain (CPU time: {row.vs_plain_cpu:.2f}x)" if plain is not None else ""),
              file=sys.stderr, flush=True)
        return row


def _vm_kib(field_name: str) -> Optional[int]:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def memory_child(samples: int, model_path: str, precision: str) -> dict[str, Any]:
    """In a fresh process, as the command runs (freed memory kept for reuse): the peak memory of
    labelling `samples` images with the model (so that every sample is attacked) and evaluating them
    (FGSM), above what the loaded model and data hold."""
    keep_freed_memory()
    torch.manual_seed(0)
    model = load_run(model_path).model
    x = torch.rand(samples, 1, 28, 28)
    before = _vm_kib("VmRSS")
    try:  # reset the peak, so it measures the labelling and evaluation alone
        Path("/proc/self/clear_refs").write_text("5")
        peak_field = "VmHWM"
    except OSError:
        peak_field = None
    started = time.perf_counter()
    y = predict(model, x)
    report = evaluate_model(model, x, y, attacks=("fgsm",), eps=EPS, sanity_samples=0, precision=precision,
                            batch_size=500)
    seconds = time.perf_counter() - started
    peak = _vm_kib(peak_field) if peak_field else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"samples": samples, "precision": report.precision, "data_mib": round(x.numel() * 4 / 2**20, 1),
            "rss_before_mib": round((before or 0) / 1024, 1), "peak_rss_mib": round((peak or 0) / 1024, 1),
            "growth_mib": round(((peak or 0) - (before or 0)) / 1024, 1), "seconds": round(seconds, 1),
            "peak_measure": peak_field or "ru_maxrss"}


# Contenders that each run in a fresh process, as a user runs them: the plain loop as a script
# under glibc's default allocator, advcli as its command runs (freed memory kept for reuse).
FRESH_CONTENDERS = {  # name: (label, precision, keep freed memory)
    "plain": ("plain eager loop (batch 100)", "fp32", False),
    "plain-kept": ("plain eager loop, freed memory kept", "fp32", True),
    "advcli-fp32": ("advcli evaluate, as the command runs", "fp32", True),
    "advcli-bf16": ("advcli evaluate, as the command runs", "bf16", True),
    "advcli-fp32-glibc": ("advcli evaluate, glibc's allocator as it is", "fp32", False),
    "advcli-bf16-glibc": ("advcli evaluate, glibc's allocator as it is", "bf16", False),
}


def clean_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                  samples: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The first `samples` of `x` that `model` classifies correctly (so that every contender attacks
    every one), their labels, and the model's clean accuracy on all of `x`."""
    correct = predict(model, x) == y
    picks = correct.nonzero().squeeze(1)[:samples]
    return x[picks], y[picks], float(correct.float().mean())


def bim_child(name: str, model_path: str, samples: int, spec: str) -> dict[str, Any]:
    """In a fresh process: BIM-20 by one of FRESH_CONTENDERS on the robust model's clean-correct images."""
    _, precision, keep = FRESH_CONTENDERS[name]
    if keep:
        keep_freed_memory()
    model = load_run(model_path).model.eval()
    dataset = advcli.load_dataset(spec)
    x, y, _ = clean_correct(model, dataset.x_test, dataset.y_test, samples)
    if name.startswith("plain"):
        reference = reference_copy(model)
        run = lambda xs, ys: float(plain_bim(reference, xs, ys).float().mean())  # noqa: E731
    else:
        run = lambda xs, ys: advcli_bim(model, xs, ys, precision)  # noqa: E731
    run(x[:20], y[:20])  # warm-up: kernels and primitives are created before the timing
    wall, cpu = time.perf_counter(), time.process_time()
    robust = run(x, y)
    return {"name": name, "images": len(x), "seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu,
            "robust": robust}


def run_child(arguments: list[str], threads: Optional[int]) -> dict[str, Any]:
    """Run this script with `arguments` in a fresh process and return the JSON it prints last."""
    command = [sys.executable, __file__, *arguments] + (["--threads", str(threads)] if threads else [])
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(advcli.__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    output = subprocess.run(command, capture_output=True, text=True, check=True, env=environment).stdout
    return json.loads(output.strip().splitlines()[-1])


def machine() -> dict[str, Any]:
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": name, "logical_cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "native_bf16": cpu_has_native_bf16(), "load_average_start": [round(v, 2) for v in os.getloadavg()]}


# The run ------------------------------------------------------------------------------------


def subset(dataset: Dataset, train: int, test: int) -> Dataset:
    return replace(dataset, x_train=dataset.x_train[:train], y_train=dataset.y_train[:train],
                   x_test=dataset.x_test[:test], y_test=dataset.y_test[:test],
                   fingerprint=dataset.fingerprint + f"[:{train}]")


def default_data() -> str:
    return f"mnist:{SHARED_MNIST}" if SHARED_MNIST.is_dir() else "digits"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: few samples, one round, small memory runs")
    parser.add_argument("--data", default=None, help="dataset spec (default: MNIST beside the repository, else digits)")
    parser.add_argument("--model", default=None, help="robust run folder to use (default: train one here, FGSM-RS eps 0.1)")
    parser.add_argument("--samples", type=int, default=None, help="clean-correct test images for BIM-20 (default 500)")
    parser.add_argument("--train-samples", type=int, default=None, help="images per training epoch (default 2000)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds, best kept (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    parser.add_argument("--json", type=Path, default=None, help="write all figures to this JSON file")
    parser.add_argument("--glibc-default", action="store_true",
                        help="leave glibc's allocator as it is in this process (default: keep freed memory, as the "
                             "advcli command does, so that no contender depends on what ran before it)")
    parser.add_argument("--memory-child", nargs=3, metavar=("SAMPLES", "MODEL", "PRECISION"), help=argparse.SUPPRESS)
    parser.add_argument("--bim-child", nargs=4, metavar=("NAME", "MODEL", "SAMPLES", "DATA"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        samples, model_path, precision = args.memory_child
        print(json.dumps(memory_child(int(samples), model_path, precision)))
        return 0
    if args.bim_child:
        name, model_path, samples, spec = args.bim_child
        print(json.dumps(bim_child(name, model_path, int(samples), spec)))
        return 0
    allocator = None if args.glibc_default else keep_freed_memory()

    quick = args.quick
    samples = args.samples or (100 if quick else 500)
    train_samples = args.train_samples or (300 if quick else 2000)
    rounds = args.rounds or (1 if quick else 3)
    auto = resolve_precision("auto", CPU)
    reduced = "bf16"  # measured whether or not it is native here; see the machine record
    started = time.perf_counter()
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "mode": "quick" if quick else "full", "machine": machine(), "versions": package_versions(),
        "auto_precision": {"evaluation": auto, "training": resolve_precision("auto", CPU, training=True)},
        "settings": {"eps": EPS, "alpha": ALPHA, "steps": STEPS, "samples": samples, "train_samples": train_samples,
                     "rounds": rounds, "allocator_in_process": allocator or "glibc default"},
    }
    spec = "digits" if quick and args.data is None else (args.data or default_data())
    print(f"loading {spec} ...", file=sys.stderr, flush=True)
    dataset = advcli.load_dataset(spec)
    results["data"] = spec

    with tempfile.TemporaryDirectory() as folder:
        if args.model:
            robust_path = Path(args.model)
            results["robust_model"] = str(robust_path)
        else:
            epochs, count = (1, 1000) if quick else (2, 10_000)
            print(f"training the robust model (FGSM-RS eps {EPS}, {epochs} epochs on {count} images) ...",
                  file=sys.stderr, flush=True)
            trained = train_model(TrainConfig.of(data=spec, epochs=epochs, method="fgsm-rs", eps=EPS, val_split=0.0,
                                              device="cpu"), dataset=subset(dataset, count, len(dataset.x_test)))
            robust_path = save_training(trained, Path(folder) / "robust")
            results["robust_model"] = (f"seed-cnn trained here: FGSM-RS eps {EPS}, {epochs} epochs on {count} "
                                       f"training images, precision {trained.config.precision}")
        robust = load_run(robust_path).model.eval()
        standard = train_model(TrainConfig.of(data=spec, epochs=1, device="cpu"),
                               dataset=subset(dataset, 1000 if quick else 5000, 1000)).model.eval()

        size = 512 if quick else 1024
        matmul = {"fp32": matmul_flops(torch.float32, size), "bf16": matmul_flops(torch.bfloat16, size)}
        results["matmul_gflops"] = {key: {"per_wall_s": round(wall / 1e9, 1), "per_cpu_s": round(cpu / 1e9, 1)}
                                    for key, (wall, cpu) in matmul.items()}
        bench = Bench({key: cpu for key, (_, cpu) in matmul.items()})

        # BIM-20 on the robust model, clean-correct samples only: every contender attacks every sample.
        x_all, y_all = dataset.x_test, dataset.y_test
        x, y, clean_accuracy = clean_correct(robust, x_all, y_all, samples)
        results["robust_model_clean_accuracy"] = round(clean_accuracy, 4)
        reference = reference_copy(robust)
        contenders: dict[str, Callable[[], Any]] = {
            "plain": lambda: plain_bim(reference, x, y),
            "advcli-fp32": lambda: advcli_bim(robust, x, y, "fp32"),
            f"advcli-{reduced}": lambda: advcli_bim(robust, x, y, reduced),
            "loop-fp32": lambda: advcli_kernel(robust, x, y, "fp32"),
            f"loop-{reduced}": lambda: advcli_kernel(robust, x, y, reduced),
        }
        if torchattacks_bim(reference, x[:2], y[:2]) is not None:
            contenders["torchattacks"] = lambda: torchattacks_bim(reference, x, y)
        # Warm-up: kernels and primitives are created before any timing.
        plain_bim(reference, x[:20], y[:20])
        advcli_bim(robust, x[:20], y[:20], reduced)
        advcli_kernel(robust, x[:20], y[:20], reduced)
        print(f"BIM-20 on {len(x)} clean-correct images, {rounds} round(s) ...", file=sys.stderr, flush=True)
        timed = interleaved(contenders, rounds)
        robust_acc = {name: float(t.result if isinstance(t.result, float) else t.result.float().mean())
                      for name, t in timed.items()}
        results["bim20_robust_accuracy_of_clean_correct"] = {k: round(v, 4) for k, v in robust_acc.items()}
        group = "BIM-20 eval, robust model"
        labels = {"plain": ("plain eager loop (batch 100)", "fp32"),
                  "torchattacks": ("torchattacks BIM (batch 100)", "fp32"),
                  "advcli-fp32": ("advcli evaluate", "fp32"),
                  f"advcli-{reduced}": ("advcli evaluate", reduced),
                  "loop-fp32": ("advcli attack loop, no early stop", "fp32"),
                  f"loop-{reduced}": ("advcli attack loop, no early stop", reduced)}
        for name, (label, precision) in labels.items():
            if name in timed:
                bench.add(group, label, precision, len(x), timed[name], plain=timed["plain"], passes=PASSES["bim20"],
                          note=f"robust {robust_acc[name]:.3f}")

        # The same, each contender in a fresh process per round, as users run them.
        print(f"BIM-20 on {len(x)} clean-correct images, a fresh process per contender and round ...",
              file=sys.stderr, flush=True)
        fresh: dict[str, Timing] = {name: Timing() for name in FRESH_CONTENDERS}
        for _ in range(rounds):
            for name in FRESH_CONTENDERS:
                child = run_child(["--bim-child", name, str(robust_path), str(len(x)), spec], args.threads)
                timing = fresh[name]
                timing.wall, timing.cpu = min(timing.wall, child["seconds"]), min(timing.cpu, child["cpu_seconds"])
                timing.result = child
        group = "BIM-20 eval, robust model, a fresh process each"
        for name, (label, precision, keep) in FRESH_CONTENDERS.items():
            child = fresh[name].result
            bench.add(group, label, precision, child["images"], fresh[name], plain=fresh["plain"],
                      passes=PASSES["bim20"],
                      note=f"robust {child['robust']:.3f}; {'freed memory kept' if keep else 'glibc default'}")

        # BIM-20 on a standard model: early stopping pays off here.
        xs, ys, _ = clean_correct(standard, x_all[:2000], y_all[:2000], samples)
        standard_reference = reference_copy(standard)
        print(f"BIM-20 on {len(xs)} images a standard model classifies correctly ...", file=sys.stderr, flush=True)
        timed = interleaved({"plain": lambda: plain_bim(standard_reference, xs, ys),
                             "advcli": lambda: advcli_bim(standard, xs, ys, auto)}, 1)
        group = "BIM-20 eval, standard model"
        bench.add(group, "plain eager loop (batch 100)", "fp32", len(xs), timed["plain"], plain=timed["plain"],
                  note=f"robust {float(timed['plain'].result.float().mean()):.3f}")
        bench.add(group, "advcli evaluate (early stop pays)", auto, len(xs), timed["advcli"], plain=timed["plain"],
                  note=f"robust {timed['advcli'].result:.3f}")

        # Training: one epoch, no validation slice (the plain loop has none).
        train_set = subset(dataset, train_samples, 200)
        for group, method, passes in (("FGSM-RS training", "fgsm-rs", PASSES["fgsm-rs"]),
                                      ("standard training", "none", PASSES["standard"])):
            print(f"{group} on {train_samples} images, {rounds} round(s) ...", file=sys.stderr, flush=True)
            advcli_train(subset(dataset, 200, 10), method, reduced)  # warm-up
            timed = interleaved({
                "plain": lambda: plain_train_epoch(train_set, method != "none"),
                "fp32": lambda: advcli_train(train_set, method, "fp32"),
                reduced: lambda: advcli_train(train_set, method, reduced),
            }, rounds)
            bench.add(group, "plain eager loop (batch 100)", "fp32", train_samples, timed["plain"],
                      plain=timed["plain"], passes=passes)
            for precision in ("fp32", reduced):
                bench.add(group, "advcli train (batch 100)", precision, train_samples, timed[precision],
                          plain=timed["plain"], passes=passes)

        # Inference: torch and onnxruntime on the same weights.
        results["onnx"] = inference(bench, robust, robust_path, Path(folder), x_all[:2000], rounds)

        # bf16 against fp32 on the same model and samples.
        xd, yd = dataset.x_test[:samples], dataset.y_test[:samples]
        print(f"robust accuracy in fp32 and {reduced} on {len(xd)} test images ...", file=sys.stderr, flush=True)
        accuracy = {}
        for precision in ("fp32", reduced):
            report = evaluate_model(robust, xd, yd, attacks=("bim", "pgd"), eps=EPS, iters=STEPS, sanity_samples=0,
                                    precision=precision)
            accuracy[precision] = {result.attack.name: result.robust_accuracy for result in report.attacks}
            accuracy[precision]["clean"] = report.clean_accuracy
        results["robust_accuracy_by_precision"] = {
            "samples": len(xd), **{p: {k: round(v, 4) for k, v in a.items()} for p, a in accuracy.items()},
            "bf16_minus_fp32_points": {name: round(100 * (accuracy[reduced][name] - accuracy["fp32"][name]), 2)
                                       for name in accuracy["fp32"]},
        }

        if not args.no_memory:
            sizes = (1000, 6000) if quick else (10_000, 60_000)
            memory = []
            for count in sizes:
                print(f"peak memory of evaluating {count} images (child process) ...", file=sys.stderr, flush=True)
                memory.append(run_child(["--memory-child", str(count), str(robust_path), auto], args.threads))
            results["eval_memory"] = memory

    results["machine"]["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    results["machine"]["torch_threads"] = torch.get_num_threads()
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["rows"] = [row.to_dict() for row in bench.rows]
    print_table(bench.rows, results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def inference(bench: Bench, model: nn.Module, run_path: Path, folder: Path, x: torch.Tensor,
              rounds: int) -> dict[str, Any]:
    import onnxruntime as ort

    from advcli.export import export_onnx

    exported = export_onnx(load_run(run_path), folder / "model.onnx", parity_samples=64)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(exported.path), sess_options=options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    batches = [x[i:i + 500] for i in range(0, len(x), 500)]
    arrays = [batch.numpy() for batch in batches]
    reduced = crafting_model(model, "bf16", CPU)

    def torch_fp32() -> None:
        with torch.no_grad():
            for batch in batches:
                model(batch)

    def torch_bf16() -> None:
        with torch.no_grad():
            for batch in batches:
                reduced(batch)

    def onnxruntime() -> None:
        for array in arrays:
            session.run(None, {name: array})

    torch_fp32(), torch_bf16(), onnxruntime()
    print(f"inference on {len(x)} images ...", file=sys.stderr, flush=True)
    timed = interleaved({"torch": torch_fp32, "torch-bf16": torch_bf16, "ort": onnxruntime}, max(rounds, 3))
    group = "inference (batch 500)"
    base = timed["torch"]
    bench.add(group, "torch eager", "fp32", len(x), base, plain=base, passes=PASSES["inference"])
    bench.add(group, "torch eager, autocast + channels-last", "bf16", len(x), timed["torch-bf16"], plain=base,
              passes=PASSES["inference"])
    bench.add(group, "onnxruntime CPU", "fp32", len(x), timed["ort"], plain=base, passes=PASSES["inference"],
              note=f"opset {exported.opset}, logits within {exported.max_abs_diff:.0e} of torch")
    return {"opset": exported.opset, "providers": session.get_providers(), "max_abs_diff": exported.max_abs_diff,
            "intra_op_threads": options.intra_op_num_threads}


def print_table(rows: list[Row], results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    machine_info = results["machine"]
    table = Table(title=f"advcli speed benchmark ({results['mode']}, {results['date']})",
                  caption=f"{machine_info['cpu']}, {machine_info['logical_cpus']} logical CPUs, "
                          f"{machine_info['torch_threads']} torch thread(s), load average "
                          f"{machine_info['load_average_start'][0]} → {machine_info['load_average_end'][0]}; "
                          f"data {results['data']}. 'vs plain' divides the plain loop's time by the row's.")
    for column in ("measurement", "precision", "img/s", "vs plain", "img/CPU-s", "vs plain (CPU)", "of matmul peak",
                   "note"):
        table.add_column(column, justify="left" if column in ("measurement", "note") else "right")
    group = None
    for row in rows:
        if row.group != group:
            table.add_row(f"[bold]{row.group}", *[""] * 7)
            group = row.group
        table.add_row("  " + row.measurement, row.precision, f"{row.images_per_s:.1f}",
                      "" if row.vs_plain is None else f"{row.vs_plain:.2f}x", f"{row.images_per_cpu_s:.1f}",
                      "" if row.vs_plain_cpu is None else f"{row.vs_plain_cpu:.2f}x",
                      "" if row.peak_share is None else f"{row.peak_share:.0%}", row.note)
    console = Console(width=160)
    console.print(table)
    matmul = results["matmul_gflops"]
    console.print("matmul GFLOP per CPU-second: " + ", ".join(f"{k} {v['per_cpu_s']}" for k, v in matmul.items()))
    deltas = results["robust_accuracy_by_precision"]
    console.print(f"robust accuracy, bf16 minus fp32, in points ({deltas['samples']} test images): "
                  + ", ".join(f"{k} {v:+.2f}" for k, v in deltas["bf16_minus_fp32_points"].items()))
    for entry in results.get("eval_memory", []):
        console.print(f"evaluating {entry['samples']} images ({entry['data_mib']} MiB of data, {entry['precision']}): "
                      f"peak RSS {entry['peak_rss_mib']} MiB, {entry['growth_mib']} MiB above what was loaded "
                      f"({entry['seconds']} s)")


if __name__ == "__main__":
    sys.exit(main())
