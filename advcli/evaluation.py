"""Robustness evaluation: clean accuracy and worst-case robust accuracy under chosen attacks.

A sample counts as robust only if it is classified correctly both clean and under every attack
(a clean error is non-robust). Every adversarial batch is re-checked (finite, inside the eps-ball
and, when clipping, inside [0, 1]) and re-classified by the evaluator before it is counted.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

from .attacks import AttackConfig, predict, resolve_attack
from .data import Dataset, load_dataset
from .devices import resolve_device
from .errors import AdvcliError, AttackError
from .provenance import package_versions, utc_now
from .runs import DEFAULT_RUNS_DIR, Run, load_run, resolve_run_path

# float32 rounding of x + delta can exceed eps by a few ulps; anything larger is a real violation.
BOUND_TOLERANCE = 1e-5


@dataclass
class EvalConfig:
    """Everything that decides an evaluation; saved with every report."""

    model: Optional[str] = None
    data: Optional[str] = None
    split: str = "test"
    attacks: tuple[str, ...] = ("bim",)
    eps: float = 0.1
    alpha: Optional[float] = None
    iters: Optional[int] = None
    restarts: int = 1
    init: Optional[str] = None
    clip: bool = True
    samples: Optional[int] = None
    seed: int = 0
    batch_size: int = 500
    device: str = "auto"
    min_accuracy: Optional[float] = None
    min_robust_accuracy: Optional[float] = None

    def resolved_attacks(self) -> list[AttackConfig]:
        if not self.attacks:
            raise AdvcliError("give at least one attack")
        return [
            resolve_attack(name, eps=self.eps, alpha=self.alpha, iters=self.iters,
                           restarts=self.restarts, init=self.init, clip=self.clip)
            for name in dict.fromkeys(self.attacks)
        ]

    def validate(self) -> None:
        if self.split not in ("train", "test"):
            raise AdvcliError(f"split must be train or test, got {self.split!r}")
        if self.samples is not None and self.samples < 1:
            raise AdvcliError(f"samples must be >= 1, got {self.samples}")
        if self.batch_size < 1:
            raise AdvcliError(f"batch size must be >= 1, got {self.batch_size}")
        for name, value in (("min-accuracy", self.min_accuracy), ("min-robust-accuracy", self.min_robust_accuracy)):
            if value is not None and not (0 <= value <= 1):
                raise AdvcliError(f"--{name} must be in [0, 1], got {value}")
        self.resolved_attacks()


@dataclass
class AttackResult:
    attack: AttackConfig
    robust_accuracy: float
    seconds: float
    max_perturbation: float

    def to_dict(self) -> dict[str, Any]:
        return {**self.attack.to_dict(), "robust_accuracy": self.robust_accuracy,
                "max_perturbation": self.max_perturbation, "seconds": round(self.seconds, 3)}


@dataclass
class EvalReport:
    """What an evaluation measured, with everything needed to rerun it."""

    model: str
    model_fingerprint: str
    data: str
    data_fingerprint: str
    split: str
    samples: int
    device: str
    clean_accuracy: float
    attacks: list[AttackResult]
    robust_accuracy: float
    failures: list[str]
    config: EvalConfig
    seconds: float
    created: str = field(default_factory=utc_now)

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "model_fingerprint": self.model_fingerprint,
            "data": self.data,
            "data_fingerprint": self.data_fingerprint,
            "split": self.split,
            "samples": self.samples,
            "device": self.device,
            "clean_accuracy": self.clean_accuracy,
            "robust_accuracy": self.robust_accuracy,
            "attacks": [result.to_dict() for result in self.attacks],
            "passed": self.passed,
            "failures": self.failures,
            "thresholds": {"min_accuracy": self.config.min_accuracy,
                           "min_robust_accuracy": self.config.min_robust_accuracy},
            "config": asdict(self.config),
            "versions": package_versions(),
            "created": self.created,
            "seconds": round(self.seconds, 3),
        }


def select_samples(count: int, samples: Optional[int], seed: int) -> torch.Tensor:
    """Indices of a seeded random subset of size `samples` (all, in order, when None or too many)."""
    if samples is None or samples >= count:
        return torch.arange(count)
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    return order[:samples].sort().values


def check_adversarial(x: torch.Tensor, x_adv: torch.Tensor, attack: AttackConfig) -> float:
    """Verify an attack's output before it is counted; returns the largest |delta|."""
    if x_adv.shape != x.shape:
        raise AttackError(f"{attack.name} returned shape {tuple(x_adv.shape)} for inputs {tuple(x.shape)}")
    if not bool(torch.isfinite(x_adv).all()):
        raise AttackError(f"{attack.name} produced NaN or infinite pixels; the result is not reported")
    largest = float((x_adv - x).abs().max()) if x.numel() else 0.0
    if largest > attack.eps + BOUND_TOLERANCE:
        raise AttackError(f"{attack.name} left the eps-ball: |delta|inf = {largest:.6g} > eps = {attack.eps}")
    if attack.clip and x.numel() and (float(x_adv.min()) < 0 or float(x_adv.max()) > 1):
        raise AttackError(f"{attack.name} produced pixels outside [0, 1]")
    return largest


def robust_predictions(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attack: AttackConfig,
    *,
    batch_size: int,
    device: torch.device,
    generator: Optional[torch.Generator] = None,
    on_batch: Optional[Callable[[int], None]] = None,
    keep_adversarials: bool = False,
) -> tuple[torch.Tensor, float, Optional[torch.Tensor]]:
    """Predictions on attacked inputs (streamed in batches), the largest |delta|, and optionally the inputs."""
    predictions, kept, largest = [], [], 0.0
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size].to(device)
        yb = y[start:start + batch_size].to(device)
        x_adv = attack.run(model, xb, yb, generator=generator)
        largest = max(largest, check_adversarial(xb, x_adv, attack))
        predictions.append(predict(model, x_adv).cpu())
        if keep_adversarials:
            kept.append(x_adv.cpu())
        if on_batch is not None:
            on_batch(len(xb))
    adversarials = torch.cat(kept) if keep_adversarials else None
    return torch.cat(predictions) if predictions else torch.empty(0, dtype=torch.long), largest, adversarials


def clean_predictions(model: nn.Module, x: torch.Tensor, *, batch_size: int, device: torch.device) -> torch.Tensor:
    return torch.cat([predict(model, x[i:i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)])


def load_for_evaluation(config: EvalConfig, runs_dir: Path | str = DEFAULT_RUNS_DIR) -> tuple[Run, Dataset, bool]:
    """The run, the dataset (the run's own unless `config.data` says otherwise) and whether
    the run was picked automatically."""
    path, automatic = resolve_run_path(config.model, runs_dir)
    run = load_run(path, device=resolve_device(config.device))
    dataset = load_dataset(config.data or run.data_spec)
    if tuple(dataset.input_shape) != tuple(run.meta["input_shape"]):
        raise AdvcliError(f"data {dataset.spec} has input shape {dataset.input_shape}, "
                          f"but the model expects {tuple(run.meta['input_shape'])}")
    if dataset.num_classes != len(run.classes):
        raise AdvcliError(f"data {dataset.spec} has {dataset.num_classes} classes, the model {len(run.classes)}")
    return run, dataset, automatic


def evaluate(
    config: Optional[EvalConfig] = None,
    *,
    run: Optional[Run] = None,
    dataset: Optional[Dataset] = None,
    runs_dir: Path | str = DEFAULT_RUNS_DIR,
    on_progress: Optional[Callable[[str, int, int], None]] = None,
    **overrides: Any,
) -> EvalReport:
    """Clean and robust accuracy of a run (the newest under `runs_dir` by default).

    ``advcli.evaluate(attacks=("bim",), eps=0.1, iters=20)`` reproduces the reference evaluation.
    `on_progress(stage, done, total)` is called after every batch.
    """
    config = EvalConfig(**{**asdict(config or EvalConfig()), **overrides})
    config.attacks = tuple(config.attacks)
    config.validate()
    attacks = config.resolved_attacks()
    if run is None:
        run, loaded, _ = load_for_evaluation(config, runs_dir)
        dataset = dataset or loaded
    elif dataset is None:
        dataset = load_dataset(config.data or run.data_spec)
    device = next(run.model.parameters()).device
    started = time.perf_counter()

    x_all, y_all = dataset.split(config.split)
    picks = select_samples(len(x_all), config.samples, config.seed)
    x, y = x_all[picks], y_all[picks]
    total = len(x)
    if total == 0:
        raise AdvcliError(f"data {dataset.spec} has no {config.split} samples")

    clean = clean_predictions(run.model, x, batch_size=config.batch_size, device=device) == y
    robust = clean.clone()
    generator = torch.Generator(device=device).manual_seed(config.seed)
    results = []
    for attack in attacks:
        attack_started = time.perf_counter()
        done = 0

        def advance(batch: int, name: str = attack.name) -> None:
            nonlocal done
            done += batch
            if on_progress is not None:
                on_progress(name, done, total)

        adv_pred, largest, _ = robust_predictions(
            run.model, x, y, attack, batch_size=config.batch_size, device=device,
            generator=generator, on_batch=advance,
        )
        attack_robust = clean & (adv_pred == y)
        robust &= attack_robust
        results.append(AttackResult(attack, float(attack_robust.float().mean()),
                                    time.perf_counter() - attack_started, largest))

    clean_accuracy = float(clean.float().mean())
    robust_accuracy = float(robust.float().mean())
    failures = []
    if config.min_accuracy is not None and clean_accuracy < config.min_accuracy:
        failures.append(f"clean accuracy {clean_accuracy:.4f} < required {config.min_accuracy}")
    if config.min_robust_accuracy is not None and robust_accuracy < config.min_robust_accuracy:
        failures.append(f"robust accuracy {robust_accuracy:.4f} < required {config.min_robust_accuracy}")
    return EvalReport(
        model=str(run.path), model_fingerprint=run.fingerprint, data=dataset.spec,
        data_fingerprint=dataset.fingerprint, split=config.split, samples=total, device=str(device),
        clean_accuracy=clean_accuracy, attacks=results, robust_accuracy=robust_accuracy,
        failures=failures, config=config, seconds=time.perf_counter() - started,
    )
