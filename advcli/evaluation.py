"""Robustness evaluation: clean accuracy and worst-case robust accuracy under chosen attacks.

A sample counts as robust only if it is classified correctly both clean and under every attack
(a clean error is non-robust). Every adversarial batch is re-checked (finite, inside the eps-ball
and, when clipping, inside [0, 1]) and re-classified by the evaluator before it is counted.

The evaluated model may be a torch run or an exported ONNX file run by onnxruntime
(:mod:`advcli.backends`). White-box attacks against an ONNX file are transfer attacks crafted on its
source checkpoint; black-box attacks (:mod:`advcli.blackbox`) query the evaluated model itself.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Optional, Union

import torch
from torch import nn

from .attacks import ATTACKS, AttackConfig, predict, resolve_attack
from .backends import BACKENDS, Classifier, load_classifier, load_transfer_source, torch_classifier
from .blackbox import BLACK_BOX_ATTACKS, DEFAULT_QUERIES, BlackBoxConfig, resolve_black_box
from .data import Dataset, load_dataset
from .devices import auto_fallback_note, resolve_device
from .errors import AdvcliError, AttackError
from .provenance import package_versions, utc_now
from .runs import DEFAULT_RUNS_DIR, Run, load_run, resolve_run_path

# float32 rounding of x + delta can exceed eps by a few ulps; anything larger is a real violation.
BOUND_TOLERANCE = 1e-5

AnyAttackConfig = Union[AttackConfig, BlackBoxConfig]

EvalAttackName = Enum(  # type: ignore[misc]
    "EvalAttackName", {name: name for name in (*ATTACKS, *BLACK_BOX_ATTACKS)}, type=str)


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
    backend: Optional[str] = None  # None: follows from the model path
    source: Optional[str] = None  # checkpoint for transfer attacks on an ONNX model
    queries: int = DEFAULT_QUERIES  # per-sample budget of black-box attacks

    def resolved_attacks(self) -> list[AnyAttackConfig]:
        if not self.attacks:
            raise AdvcliError("give at least one attack")
        return [self._resolve(name) for name in dict.fromkeys(self.attacks)]

    def _resolve(self, name: str) -> AnyAttackConfig:
        if name in BLACK_BOX_ATTACKS:
            return resolve_black_box(name, eps=self.eps, queries=self.queries, clip=self.clip)
        return resolve_attack(name, eps=self.eps, alpha=self.alpha, iters=self.iters,
                              restarts=self.restarts, init=self.init, clip=self.clip)

    def validate(self) -> None:
        if self.split not in ("train", "test"):
            raise AdvcliError(f"split must be train or test, got {self.split!r}")
        if self.samples is not None and self.samples < 1:
            raise AdvcliError(f"samples must be >= 1, got {self.samples}")
        if self.batch_size < 1:
            raise AdvcliError(f"batch size must be >= 1, got {self.batch_size}")
        if self.backend is not None and self.backend not in BACKENDS:
            raise AdvcliError(f"unknown backend {self.backend!r}; choose one of: {', '.join(BACKENDS)}")
        for name, value in (("min-accuracy", self.min_accuracy), ("min-robust-accuracy", self.min_robust_accuracy)):
            if value is not None and not (0 <= value <= 1):
                raise AdvcliError(f"--{name} must be in [0, 1], got {value}")
        self.resolved_attacks()


@dataclass
class AttackResult:
    attack: AnyAttackConfig
    robust_accuracy: float
    seconds: float
    max_perturbation: float
    transfer_from: Optional[str] = None  # the checkpoint that crafted the examples, when not the model itself
    queries_mean: Optional[float] = None  # black-box attacks: model queries per sample, as counted

    @property
    def label(self) -> str:
        """The attack's name with what sets it apart, e.g. ``bim (transfer from runs/x)``."""
        notes = [] if self.attack.clip else ["no clip"]
        notes += [f"transfer from {self.transfer_from}"] if self.transfer_from else []
        return self.attack.name + "".join(f" ({note})" for note in notes)

    def to_dict(self) -> dict[str, Any]:
        extra = {} if self.queries_mean is None else {"queries_mean": round(self.queries_mean, 2)}
        return {**self.attack.to_dict(), "label": self.label, "transfer_from": self.transfer_from, **extra,
                "robust_accuracy": self.robust_accuracy, "max_perturbation": self.max_perturbation,
                "seconds": round(self.seconds, 3)}


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
    backend: str = "torch"
    execution_providers: Optional[list[str]] = None  # onnxruntime only: as read back from the session
    notes: list[str] = field(default_factory=list)  # e.g. a device fallback
    transfer_fingerprint: Optional[str] = None  # weights that crafted transfer attacks

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
            "backend": self.backend,
            "execution_providers": self.execution_providers,
            "notes": self.notes,
            "transfer_from_fingerprint": self.transfer_fingerprint,
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


def check_adversarial(x: torch.Tensor, x_adv: torch.Tensor, attack: AnyAttackConfig) -> float:
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
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    attack: AnyAttackConfig,
    *,
    batch_size: int,
    device: torch.device,
    generator: Optional[torch.Generator] = None,
    on_batch: Optional[Callable[[int], None]] = None,
    keep_adversarials: bool = False,
    target: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
) -> tuple[torch.Tensor, float, Optional[torch.Tensor]]:
    """Predictions on attacked inputs (streamed in batches), the largest |delta|, and optionally the inputs.

    `model` is what the attack runs on; `target` (default: `model`) classifies the results, so
    examples crafted on one model can be tested on another (transfer).
    """
    target = model if target is None else target
    predictions, kept, largest = [], [], 0.0
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size].to(device)
        yb = y[start:start + batch_size].to(device)
        x_adv = attack.run(model, xb, yb, generator=generator)
        largest = max(largest, check_adversarial(xb, x_adv, attack))
        predictions.append(predict(target, x_adv).cpu())
        if keep_adversarials:
            kept.append(x_adv.cpu())
        if on_batch is not None:
            on_batch(len(xb))
    adversarials = torch.cat(kept) if keep_adversarials else None
    return torch.cat(predictions) if predictions else torch.empty(0, dtype=torch.long), largest, adversarials


def clean_predictions(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *, batch_size: int, device: torch.device
) -> torch.Tensor:
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


class QueryCounter:
    """A logits function that counts the inputs it is asked about (black-box queries)."""

    def __init__(self, logits: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.logits, self.count = logits, 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.count += len(x)
        return self.logits(x)


def check_fits_data(classifier: Classifier, dataset: Dataset) -> None:
    """Refuse data whose image shape or class count the model was not made for."""
    if classifier.input_shape is not None and tuple(dataset.input_shape) != tuple(classifier.input_shape):
        raise AdvcliError(f"data {dataset.spec} has input shape {dataset.input_shape}, "
                          f"but the model expects {tuple(classifier.input_shape)}")
    if classifier.classes is not None and dataset.num_classes != len(classifier.classes):
        raise AdvcliError(f"data {dataset.spec} has {dataset.num_classes} classes, the model {len(classifier.classes)}")


def _white_box_model(classifier: Classifier, config: EvalConfig) -> tuple[nn.Module, Optional[Run], list[str]]:
    """The torch model white-box attacks run on: `config.source` when given (transfer), else the
    evaluated model's own weights, else (an ONNX file) the source checkpoint named in its metadata."""
    if config.source is None and classifier.model is not None:
        return classifier.model, None, []
    note = auto_fallback_note(config.device)
    source = load_transfer_source(classifier, config.source, resolve_device(config.device))
    return source.model, source, [note] if note else []


def evaluate(
    config: Optional[EvalConfig] = None,
    *,
    run: Optional[Run] = None,
    classifier: Optional[Classifier] = None,
    dataset: Optional[Dataset] = None,
    runs_dir: Path | str = DEFAULT_RUNS_DIR,
    on_progress: Optional[Callable[[str, int, int], None]] = None,
    **overrides: Any,
) -> EvalReport:
    """Clean and robust accuracy of a model (the newest run under `runs_dir` by default).

    ``advcli.evaluate(attacks=("bim",), eps=0.1, iters=20)`` reproduces the reference evaluation;
    ``advcli.evaluate(model="model.onnx", attacks=("bim", "square"))`` evaluates an exported file
    under onnxruntime. `run` or `classifier` pass a model already loaded.
    `on_progress(stage, done, total)` is called after every batch.
    """
    config = EvalConfig(**{**asdict(config or EvalConfig()), **overrides})
    config.attacks = tuple(config.attacks)
    config.validate()
    attacks = config.resolved_attacks()
    if classifier is None and run is not None:
        classifier = torch_classifier(run)
    elif classifier is None:
        classifier, _ = load_classifier(config.model, backend=config.backend, device=config.device, runs_dir=runs_dir)
    if dataset is None:
        spec = config.data or classifier.data_spec
        if spec is None:
            raise AdvcliError(f"{classifier.path} does not name its data; pass --data")
        dataset = load_dataset(spec)
    check_fits_data(classifier, dataset)
    notes = list(classifier.notes)
    white_box, source = None, None
    if any(isinstance(attack, AttackConfig) for attack in attacks):
        white_box, source, source_notes = _white_box_model(classifier, config)
        notes += [note for note in source_notes if note not in notes]
    device = next(white_box.parameters()).device if white_box is not None else classifier.device
    started = time.perf_counter()

    x_all, y_all = dataset.split(config.split)
    picks = select_samples(len(x_all), config.samples, config.seed)
    x, y = x_all[picks], y_all[picks]
    total = len(x)
    if total == 0:
        raise AdvcliError(f"data {dataset.spec} has no {config.split} samples")

    clean = clean_predictions(classifier, x, batch_size=config.batch_size, device=device) == y
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

        # Black-box attacks query the evaluated model itself; white-box ones need torch weights.
        queries = QueryCounter(classifier) if isinstance(attack, BlackBoxConfig) else None
        adv_pred, largest, _ = robust_predictions(
            white_box if queries is None else queries, x, y, attack, batch_size=config.batch_size, device=device,
            generator=generator, on_batch=advance, target=classifier,
        )
        attack_robust = clean & (adv_pred == y)
        robust &= attack_robust
        results.append(AttackResult(
            attack, float(attack_robust.float().mean()), time.perf_counter() - attack_started, largest,
            transfer_from=str(source.path) if source is not None and queries is None else None,
            queries_mean=queries.count / total if queries is not None else None,
        ))

    clean_accuracy = float(clean.float().mean())
    robust_accuracy = float(robust.float().mean())
    failures = []
    if config.min_accuracy is not None and clean_accuracy < config.min_accuracy:
        failures.append(f"clean accuracy {clean_accuracy:.4f} < required {config.min_accuracy}")
    if config.min_robust_accuracy is not None and robust_accuracy < config.min_robust_accuracy:
        failures.append(f"robust accuracy {robust_accuracy:.4f} < required {config.min_robust_accuracy}")
    return EvalReport(
        model=str(classifier.path), model_fingerprint=classifier.fingerprint, data=dataset.spec,
        data_fingerprint=dataset.fingerprint, split=config.split, samples=total, device=str(device),
        clean_accuracy=clean_accuracy, attacks=results, robust_accuracy=robust_accuracy,
        failures=failures, config=config, seconds=time.perf_counter() - started,
        backend=classifier.backend, execution_providers=classifier.execution_providers, notes=notes,
        transfer_fingerprint=source.fingerprint if source is not None else None,
    )
