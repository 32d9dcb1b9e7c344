"""Robustness evaluation: clean accuracy and worst-case robust accuracy under chosen attacks.

A sample counts as robust only if it is classified correctly both clean and under every attack
(a clean error is non-robust). Every adversarial batch is re-checked (finite, inside the eps-ball
of the chosen norm and, when clipping, inside [0, 1]) and re-classified by the evaluator before it
is counted; a re-classification that disagrees with the attack's own bookkeeping is an error.

Several radii give a curve. They are evaluated in increasing order and an attack runs at a radius
only on the samples it has not yet fooled at a smaller one: an adversarial example inside a small
ball is inside every larger one, so this is exact and the curve never rises. Sanity checks
(:mod:`advcli.sanity`) come with every report.

The evaluated model may be a torch run or an exported ONNX file run by onnxruntime
(:mod:`advcli.backends`). An ONNX model is known by its outputs only: it gives the clean
predictions, re-classifies every adversarial example and answers black-box queries (square), while
white-box attacks are crafted on a torch source checkpoint and judged by the ONNX model (transfer).

White-box attacks may take their gradients in reduced precision (``precision``, see
:mod:`advcli.precision`): they then craft under autocast, while the model, in float32, judges
every sample, answers black-box queries and re-classifies every adversarial example. For a
convolutional torch model both use a frozen copy with channels-last weights, for speed, in every
precision. Reported accuracies are therefore always float32 classifications. For an ONNX model the
precision applies only to its torch transfer source.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

from .attacks import ATTACK_KINDS, AttackConfig, attack_mode, choose_targets, l2_norms, predict, resolve_attack
from .autoattack import attack_members, run_sequence
from .backends import BACKENDS, Classifier, OutputsOnly, load_classifier, load_transfer_source, torch_classifier
from .data import Dataset, load_dataset
from .devices import auto_fallback_note, resolve_device
from .errors import AdvcliError, AttackError
from .precision import check_precision, crafting_model, deciding_model, resolve_precision
from .provenance import package_versions, utc_now
from .runs import DEFAULT_RUNS_DIR, Run, load_run, resolve_run_path
from .sanity import SanityCheck, SanityInputs, run_sanity_checks

# float32 rounding of x + delta can exceed eps by a few ulps; anything larger is a real violation.
BOUND_TOLERANCE = 1e-5


@dataclass
class EvalConfig:
    """Everything that decides an evaluation; saved with every report."""

    model: Optional[str] = None
    data: Optional[str] = None
    split: str = "test"
    attacks: tuple[str, ...] = ("bim",)
    eps: float | tuple[float, ...] = 0.1
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
    norm: str = "linf"
    target: Optional[str] = None
    queries: Optional[int] = None
    per_class: bool = False
    sanity_samples: int = 100
    backend: Optional[str] = None  # None: follows from the model path
    source: Optional[str] = None  # checkpoint that crafts white-box attacks on an ONNX model (transfer)
    precision: str = "auto"  # of white-box attack gradients: auto, fp32, bf16 or fp16 (CUDA)

    def eps_values(self) -> tuple[float, ...]:
        """The radii to evaluate, increasing; the last one is the headline."""
        values = self.eps if isinstance(self.eps, (tuple, list)) else (self.eps,)
        if not values:
            raise AdvcliError("give at least one eps")
        try:
            return tuple(sorted({float(value) for value in values}))
        except (TypeError, ValueError):
            raise AdvcliError(f"eps must be numbers, got {self.eps!r}") from None

    def resolved_attacks(self, eps: Optional[float] = None) -> list[AttackConfig]:
        """The attacks at radius `eps` (default: the largest radius)."""
        if not self.attacks:
            raise AdvcliError("give at least one attack")
        eps = self.eps_values()[-1] if eps is None else eps
        return [
            resolve_attack(name, eps=eps, alpha=self.alpha, iters=self.iters, restarts=self.restarts,
                           init=self.init, clip=self.clip, norm=self.norm, target=self.target, queries=self.queries)
            for name in dict.fromkeys(self.attacks)
        ]

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
        if not isinstance(self.sanity_samples, int) or self.sanity_samples < 0:
            raise AdvcliError(f"sanity samples must be >= 0, got {self.sanity_samples}")
        check_precision(self.precision)
        for eps in self.eps_values():
            self.resolved_attacks(eps)


def parse_eps(text: str) -> float | tuple[float, ...]:
    """``"0.1"`` -> 0.1; ``"0,0.02,0.05"`` -> (0.0, 0.02, 0.05), as the ``--eps`` option takes them."""
    try:
        values = tuple(float(part) for part in str(text).split(","))
    except ValueError:
        raise AdvcliError(f"eps must be a number or a comma-separated list of numbers, got {text!r}") from None
    return values[0] if len(values) == 1 else values


@dataclass
class AttackResult:
    """One attack at one radius. `attacked` samples were attacked; `carried` were already fooled at a
    smaller radius (not attacked again); `members` says what each member of ``auto`` fooled."""

    attack: AttackConfig
    robust_accuracy: float
    seconds: float
    max_perturbation: float
    attacked: int = 0
    carried: int = 0
    members: list[dict[str, Any]] = field(default_factory=list)
    target_hit_rate: Optional[float] = None
    untargetable: int = 0
    transfer_from: Optional[str] = None  # the checkpoint that crafted white-box examples, when not the model
    queries_mean: Optional[float] = None  # black-box queries per attacked sample, as counted

    @property
    def label(self) -> str:
        """The attack's name with what sets it apart, e.g. ``bim (transfer from runs/x)``."""
        a = self.attack
        notes = ([] if a.clip else ["no clip"]) + ([] if a.norm == "linf" else [a.norm])
        notes += [f"transfer from {self.transfer_from}"] if self.transfer_from else []
        return a.name + "".join(f" ({note})" for note in notes) + (f" → {a.target}" if a.target is not None else "")

    def to_dict(self) -> dict[str, Any]:
        result = {**self.attack.to_dict(), "label": self.label, "transfer_from": self.transfer_from,
                  "robust_accuracy": self.robust_accuracy,
                  "max_perturbation": self.max_perturbation, "seconds": round(self.seconds, 3),
                  "attacked": self.attacked, "carried": self.carried}
        if self.queries_mean is not None:
            result["queries_mean"] = round(self.queries_mean, 2)
        if self.members:
            result["members"] = self.members
        if self.attack.target is not None:
            result["target_hit_rate"] = self.target_hit_rate
            result["untargetable"] = self.untargetable
        return result


@dataclass
class CurvePoint:
    """Robust accuracy at one radius: worst case over the attacks, and each attack's own."""

    eps: float
    robust_accuracy: float
    attacks: list[AttackResult]

    def to_dict(self) -> dict[str, Any]:
        return {"eps": self.eps, "robust_accuracy": self.robust_accuracy,
                "attacks": [result.to_dict() for result in self.attacks]}


@dataclass
class ClassResult:
    """Clean and robust accuracy of the samples of one class."""

    index: int
    name: str
    samples: int
    clean_accuracy: Optional[float]
    robust_accuracy: Optional[float]
    attacks: dict[str, Optional[float]]
    curve: list[Optional[float]]

    def to_dict(self) -> dict[str, Any]:
        return {"class": self.index, "name": self.name, "samples": self.samples,
                "clean_accuracy": self.clean_accuracy, "robust_accuracy": self.robust_accuracy,
                "attacks": self.attacks, "curve": self.curve}


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
    curve: list[CurvePoint] = field(default_factory=list)
    per_class: Optional[list[ClassResult]] = None
    sanity: list[SanityCheck] = field(default_factory=list)
    num_classes: int = 0
    backend: str = "torch"
    execution_providers: Optional[list[str]] = None  # onnxruntime only: as read back from the session
    notes: list[str] = field(default_factory=list)  # e.g. a device fallback
    transfer_fingerprint: Optional[str] = None  # weights that crafted transfer attacks
    precision: str = "fp32"  # what white-box attack gradients ran in; fp32 when no torch model crafts

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
            "precision": self.precision,
            "backend": self.backend,
            "execution_providers": self.execution_providers,
            "notes": self.notes,
            "transfer_from_fingerprint": self.transfer_fingerprint,
            "clean_accuracy": self.clean_accuracy,
            "robust_accuracy": self.robust_accuracy,
            "attacks": [result.to_dict() for result in self.attacks],
            "eps": [point.eps for point in self.curve],
            "norm": self.config.norm,
            "curve": [point.to_dict() for point in self.curve],
            **({"per_class": [row.to_dict() for row in self.per_class]} if self.per_class is not None else {}),
            "sanity": [check.to_dict() for check in self.sanity],
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


def perturbation_sizes(x: torch.Tensor, x_adv: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-sample size of `x_adv - x` in the L-inf or the L2 norm."""
    delta = (x_adv - x).flatten(1)
    return delta.abs().amax(1) if norm == "linf" else l2_norms(delta).flatten()


def bound_tolerance(attack: AttackConfig, x: torch.Tensor) -> float:
    """How far float32 rounding may push |delta| past eps: a few ulps per pixel, which add up
    under L2 (at most sqrt(pixels) of them)."""
    if attack.norm == "linf":
        return BOUND_TOLERANCE
    return BOUND_TOLERANCE * max(1.0, attack.eps) + 1.2e-7 * math.sqrt(x[0].numel() if x.shape[0] else 1)


def check_adversarial(x: torch.Tensor, x_adv: torch.Tensor, attack: AttackConfig) -> float:
    """Verify an attack's output before it is counted; returns the largest |delta| in its norm."""
    if x_adv.shape != x.shape:
        raise AttackError(f"{attack.name} returned shape {tuple(x_adv.shape)} for inputs {tuple(x.shape)}")
    if not bool(torch.isfinite(x_adv).all()):
        raise AttackError(f"{attack.name} produced NaN or infinite pixels; the result is not reported")
    largest = float(perturbation_sizes(x, x_adv, attack.norm).max()) if x.numel() else 0.0
    if largest > attack.eps + bound_tolerance(attack, x):
        raise AttackError(f"{attack.name} left the eps-ball: |delta|_{attack.norm} = {largest:.6g} > eps = {attack.eps}")
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
    crafter: Optional[nn.Module] = None,
) -> tuple[torch.Tensor, float, Optional[torch.Tensor], Optional[torch.Tensor]]:
    """Predictions on attacked inputs (streamed in batches), the largest |delta|, optionally the
    inputs, and the target classes of a targeted attack (None when untargeted).

    The attack runs on `crafter` when given (a reduced-precision wrapper of `model`, see
    :func:`advcli.precision.crafting_model`); `model` chooses targets and makes the predictions."""
    predictions = torch.empty(len(x), dtype=torch.long)
    adversarials = torch.empty_like(x, device="cpu") if keep_adversarials else None
    chosen = torch.empty(len(x), dtype=torch.long) if attack.target is not None else None
    largest = 0.0
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size].to(device, non_blocking=True)
        yb = y[start:start + batch_size].to(device, non_blocking=True)
        targets = None
        if chosen is not None:
            targets = choose_targets(model, xb, yb, attack.target, generator=generator)
            chosen[start:start + len(xb)] = targets
        x_adv = attack.run(model if crafter is None else crafter, xb, yb, generator=generator, targets=targets)
        largest = max(largest, check_adversarial(xb, x_adv, attack))
        predictions[start:start + len(xb)] = predict(model, x_adv)
        if adversarials is not None:
            adversarials[start:start + len(xb)] = x_adv
        if on_batch is not None:
            on_batch(len(xb))
    return predictions, largest, adversarials, chosen


def clean_predictions(model: nn.Module, x: torch.Tensor, *, batch_size: int, device: torch.device) -> torch.Tensor:
    """Predicted labels of `x` in batches, written into one tensor sized once (see :func:`attack_samples`)."""
    predictions = torch.empty(len(x), dtype=torch.long)
    for start in range(0, len(x), batch_size):
        predictions[start:start + batch_size] = predict(model, x[start:start + batch_size].to(device, non_blocking=True))
    return predictions


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


class QueryCounter(nn.Module):
    """A model that counts the inputs it is asked about (black-box queries)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.count = model, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.count += len(x)
        return self.model(x)


def is_black_box(attack: AttackConfig) -> bool:
    return ATTACK_KINDS[attack.name] == "black-box"


@dataclass
class AttackedSamples:
    """The re-checked outcome of one attack on some samples (all on the CPU)."""

    fooled_by: torch.Tensor  # index of the member that fooled the sample, -1: robust
    predictions: torch.Tensor  # re-classified adversarial predictions
    targets: torch.Tensor  # target class of a targeted attack, -1: none
    largest: float  # largest |delta| in the attack's norm
    queries: int = 0  # inputs the black-box members asked the model about


def attack_samples(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attack: AttackConfig,
    *,
    num_classes: int,
    batch_size: int,
    device: torch.device,
    seed: int,
    on_batch: Optional[Callable[[int], None]] = None,
    source: Optional[nn.Module] = None,
    crafter: Optional[nn.Module] = None,
    rows: Optional[torch.Tensor] = None,
) -> AttackedSamples:
    """Attack clean-correct samples in batches (``auto`` as its sequence of members), re-check every
    adversarial example and re-classify it; fail loudly when the re-classification disagrees
    with what the attack reported. With `rows`, the samples are ``x[rows]``, gathered one batch at
    a time (no copy of the whole selection).

    White-box members craft on `crafter` when given (a reduced-precision wrapper of the model that
    crafts, see :func:`advcli.precision.crafting_model`), else on `source` when given (transfer),
    else on `model`; black-box members query `model`. `model` always judges, both inside the
    sequence and when re-classifying, so the two must agree whoever crafted the examples."""
    members = attack_members(attack, num_classes)
    if source is None and isinstance(model, OutputsOnly) and not all(is_black_box(member) for member in members):
        raise AdvcliError(f"{attack.name} needs gradients, but the model gives outputs only; "
                          "name a source checkpoint for transfer attacks or use black-box attacks (square)")
    counter = QueryCounter(model)

    gradient_model = crafter if crafter is not None else model if source is None else source

    def attacker(member: AttackConfig) -> nn.Module:
        return counter if is_black_box(member) else gradient_model

    generator = torch.Generator(device=device).manual_seed(seed)
    count = len(x) if rows is None else len(rows)
    # Results go straight into tensors sized once: nothing small is kept per batch, which would pin
    # the allocator's heap between the batches' large temporaries and grow memory with the data.
    fooled_by = torch.full((count,), -1, dtype=torch.long)
    predictions = torch.full((count,), -1, dtype=torch.long)
    targets = torch.full((count,), -1, dtype=torch.long)
    largest = 0.0
    for start in range(0, count, batch_size):
        chosen = slice(start, start + batch_size) if rows is None else rows[start:start + batch_size]
        xb = x[chosen].to(device, non_blocking=True)
        yb = y[chosen].to(device, non_blocking=True)
        outcome = run_sequence(model, xb, yb, members, generator=generator, attacker=attacker)
        largest = max(largest, check_adversarial(xb, outcome.x_adv, attack))
        predicted = predict(model, outcome.x_adv)
        disagree = int(((predicted != yb) != (outcome.fooled_by >= 0)).sum())
        if disagree:
            raise AttackError(
                f"{attack.name}: re-classifying its adversarial examples disagrees with the attack's own "
                f"bookkeeping on {disagree} of {len(xb)} samples (are the model's outputs random or "
                "batch-dependent?); the result is not reported")
        done = slice(start, start + len(xb))
        fooled_by[done] = outcome.fooled_by
        predictions[done] = predicted
        targets[done] = outcome.targets
        if on_batch is not None:
            on_batch(len(xb))
    return AttackedSamples(fooled_by=fooled_by, predictions=predictions, targets=targets, largest=largest,
                           queries=counter.count)


def _share(mask: torch.Tensor) -> Optional[float]:
    return float(mask.float().mean()) if mask.numel() else None


def _attack_over_eps(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    clean: torch.Tensor,
    attacks: list[AttackConfig],
    *,
    num_classes: int,
    config: EvalConfig,
    device: torch.device,
    on_progress: Optional[Callable[[str, int, int], None]],
    source: Optional[nn.Module] = None,
    transfer_from: Optional[str] = None,
    crafter: Optional[nn.Module] = None,
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[AttackResult]]:
    """One attack at increasing radii (`attacks`, one per radius), each time only on the samples it
    has not fooled yet. Returns per radius: the robust samples, the member that fooled each sample
    (-1: none) and the result."""
    broken_by = torch.full((len(x),), -1, dtype=torch.long)
    masks, breakers, results = [], [], []
    for attack in attacks:
        members = attack_members(attack, num_classes)
        started = time.perf_counter()
        carried = int((clean & (broken_by >= 0)).sum()) if attack.eps > 0 else 0
        todo = (clean & (broken_by == -1)).nonzero().squeeze(1) if attack.eps > 0 else torch.empty(0, dtype=torch.long)
        stage, done = f"{attack.name} eps={attack.eps:g}", 0

        def advance(batch: int, stage: str = stage, size: int = len(todo)) -> None:
            nonlocal done
            done += batch
            if on_progress is not None:
                on_progress(stage, done, size)

        outcome = attack_samples(model, x, y, attack, num_classes=num_classes, batch_size=config.batch_size,
                                 device=device, seed=config.seed, on_batch=advance, source=source, crafter=crafter,
                                 rows=todo)
        fooled = outcome.fooled_by >= 0
        broken_by[todo[fooled]] = outcome.fooled_by[fooled]
        robust = clean & (broken_by == -1)
        hit_rate, untargetable = None, 0
        if attack.target is not None:
            aimed = (outcome.targets >= 0) & (outcome.targets != y[todo])
            untargetable = int(((outcome.targets >= 0) & ~aimed).sum())
            hit_rate = _share((outcome.predictions == outcome.targets)[aimed])
        counts = torch.bincount(outcome.fooled_by[fooled], minlength=len(members)).tolist()
        member_rows = [{"name": member.name, "target": member.target, "fooled": counts[position]}
                       for position, member in enumerate(members)] if len(members) > 1 else []
        masks.append(robust.clone())
        breakers.append(broken_by.clone())
        results.append(AttackResult(
            attack, float(robust.float().mean()), time.perf_counter() - started, outcome.largest, attacked=len(todo),
            carried=carried, members=member_rows, target_hit_rate=hit_rate, untargetable=untargetable,
            transfer_from=transfer_from if source is not None and not all(map(is_black_box, members)) else None,
            queries_mean=outcome.queries / len(todo) if len(todo) and any(map(is_black_box, members)) else None,
        ))
    return masks, breakers, results


def _per_class(
    y: torch.Tensor, classes: list[str], clean: torch.Tensor, worst: list[torch.Tensor], names: list[str],
    robust_by_attack: list[torch.Tensor],
) -> list[ClassResult]:
    """Per class: clean accuracy, worst-case accuracy at each radius, each attack's at the last."""
    rows = []
    for label, name in enumerate(classes):
        mine = y == label
        rows.append(ClassResult(
            index=label, name=name, samples=int(mine.sum()), clean_accuracy=_share(clean[mine]),
            robust_accuracy=_share(worst[-1][mine]),
            attacks={attack: _share(robust[mine]) for attack, robust in zip(names, robust_by_attack)},
            curve=[_share(mask[mine]) for mask in worst],
        ))
    return rows


def evaluate_model(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    config: Optional[EvalConfig] = None,
    *,
    classes: Optional[list[str]] = None,
    model_name: str = "(in memory)",
    model_fingerprint: Optional[str] = None,
    data_name: str = "(in memory)",
    data_fingerprint: Optional[str] = None,
    on_progress: Optional[Callable[[str, int, int], None]] = None,
    source: Optional[nn.Module] = None,
    transfer_from: Optional[str] = None,
    **overrides: Any,
) -> EvalReport:
    """Clean accuracy, robust accuracy at every radius, per-class figures and sanity checks of any
    model on tensors `x` (pixels in [0, 1]) and `y`, on the device of the model's parameters.
    `config.model`, `config.data`, `config.split` and `config.samples` are not used here.

    With `source` (a torch model, named `transfer_from` in the report), white-box attacks are
    crafted on it and judged by `model` (transfer); black-box attacks always query `model`, which
    may be outputs only (:class:`advcli.backends.OutputsOnly`). White-box gradients run in
    `config.precision`, resolved on that device; `model` judges in float32 regardless."""
    config = EvalConfig(**{**asdict(config or EvalConfig()), **overrides})
    config.attacks = tuple(config.attacks)
    config.validate()
    started = time.perf_counter()
    parameter = next((source if source is not None else model).parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    total = len(x)
    if total == 0:
        raise AdvcliError("no samples to evaluate")
    eps_values = config.eps_values()
    attacks_by_eps = [config.resolved_attacks(eps) for eps in eps_values]
    precision = resolve_precision(config.precision, device)
    gradient_model = source if source is not None else None if isinstance(model, OutputsOnly) else model
    if gradient_model is None:
        precision = "fp32"  # nothing is differentiated; the model answers in its own arithmetic
    crafter = None if gradient_model is None else crafting_model(gradient_model, precision, device)
    if crafter is gradient_model:
        crafter = None
    elif crafter is not None and source is None:
        model = deciding_model(crafter)  # the float32 model in the crafting copy's layout judges
    with attack_mode(model):
        with torch.no_grad():
            num_classes = int(model(x[:1].to(device)).shape[1])
        classes = list(classes) if classes is not None else [str(index) for index in range(num_classes)]
        if len(classes) != num_classes:
            raise AdvcliError(f"the model has {num_classes} outputs but there are {len(classes)} class names")
        if config.target is not None and config.target.isdigit() and int(config.target) >= num_classes:
            raise AdvcliError(f"--target {config.target}: the model has classes 0 to {num_classes - 1}")

        clean = clean_predictions(model, x, batch_size=config.batch_size, device=device) == y
        masks: list[list[torch.Tensor]] = []  # [attack][eps] robust samples
        breakers: list[list[torch.Tensor]] = []  # [attack][eps] member that fooled each sample, -1 none
        results: list[list[AttackResult]] = []
        for index in range(len(attacks_by_eps[0])):
            column = _attack_over_eps(model, x, y, clean, [attacks[index] for attacks in attacks_by_eps],
                                      num_classes=num_classes, config=config, device=device, on_progress=on_progress,
                                      source=source, transfer_from=transfer_from, crafter=crafter)
            for collected, part in zip((masks, breakers, results), column):
                collected.append(part)

        worst = [torch.stack([masks[a][e] for a in range(len(masks))]).all(0) for e in range(len(eps_values))]
        curve = [CurvePoint(eps, float(worst[e].float().mean()), [results[a][e] for a in range(len(results))])
                 for e, eps in enumerate(eps_values)]
        names = [attack.name for attack in attacks_by_eps[-1]]
        per_class = _per_class(y, classes, clean, worst, names, [column[-1] for column in masks]) if config.per_class else None

        def measure(attack: AttackConfig, indices: torch.Tensor) -> torch.Tensor:
            ok = clean[indices]
            robust = ok.clone()
            chosen = indices[ok]
            if attack.eps > 0 and chosen.numel():
                outcome = attack_samples(model, x, y, attack, num_classes=num_classes,
                                         batch_size=config.batch_size, device=device, seed=config.seed,
                                         source=source, crafter=crafter, rows=chosen)
                robust[ok] = outcome.fooled_by == -1
            return robust

        sanity = run_sanity_checks(SanityInputs(
            model=model, x=x, y=y, clean=clean, eps_values=eps_values, attacks_by_eps=attacks_by_eps,
            members=[attack_members(attack, num_classes) for attack in attacks_by_eps[-1]],
            masks=masks, breakers=breakers, num_classes=num_classes, norm=config.norm, clip=config.clip,
            subset=select_samples(total, config.sanity_samples, config.seed) if config.sanity_samples else
            torch.empty(0, dtype=torch.long),
            resolve=config.resolved_attacks, measure=measure, device=device, batch_size=config.batch_size,
            seed=config.seed, on_progress=on_progress, gradient_model=source,
            outputs_only=source is None and isinstance(model, OutputsOnly),
        ))

    clean_accuracy = float(clean.float().mean())
    robust_accuracy = curve[-1].robust_accuracy
    failures = []
    if config.min_accuracy is not None and clean_accuracy < config.min_accuracy:
        failures.append(f"clean accuracy {clean_accuracy:.4f} < required {config.min_accuracy}")
    if config.min_robust_accuracy is not None and robust_accuracy < config.min_robust_accuracy:
        failures.append(f"robust accuracy {robust_accuracy:.4f} < required {config.min_robust_accuracy}"
                        + (f" at eps {eps_values[-1]:g}" if len(eps_values) > 1 else ""))
    return EvalReport(
        model=model_name, model_fingerprint=model_fingerprint, data=data_name, data_fingerprint=data_fingerprint,
        split=config.split, samples=total, device=str(device), clean_accuracy=clean_accuracy,
        attacks=curve[-1].attacks, robust_accuracy=robust_accuracy, failures=failures, config=config,
        seconds=time.perf_counter() - started, curve=curve, per_class=per_class, sanity=sanity,
        num_classes=num_classes, precision=precision,
    )


def check_fits_data(classifier: Classifier, dataset: Dataset) -> None:
    """Refuse data whose image shape or class count the model was not made for."""
    if classifier.input_shape is not None and tuple(dataset.input_shape) != tuple(classifier.input_shape):
        raise AdvcliError(f"data {dataset.spec} has input shape {dataset.input_shape}, "
                          f"but the model expects {tuple(classifier.input_shape)}")
    if classifier.classes is not None and dataset.num_classes != len(classifier.classes):
        raise AdvcliError(f"data {dataset.spec} has {dataset.num_classes} classes, the model {len(classifier.classes)}")


def _needs_gradients(config: EvalConfig) -> bool:
    """Whether any attack is white-box or has white-box members (``auto``)."""
    return any(not is_black_box(attack) for attack in config.resolved_attacks())


def _transfer_source(classifier: Classifier, config: EvalConfig) -> tuple[Optional[Run], list[str]]:
    """The torch checkpoint white-box attacks craft on: `config.source` when given, none for a torch
    model (it attacks itself), else the source checkpoint named in the ONNX file; and device notes."""
    if config.source is None and classifier.model is not None:
        return None, []
    note = auto_fallback_note(config.device)
    source = load_transfer_source(classifier, config.source, resolve_device(config.device))
    return source, [note] if note else []


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
    ``advcli.evaluate(attacks=("auto",), eps=(0.05, 0.1, 0.2), per_class=True)`` gives a curve;
    ``advcli.evaluate(model="model.onnx", attacks=("bim", "square"))`` evaluates an exported file
    under onnxruntime. `run` or `classifier` pass a model already loaded.
    `on_progress(stage, done, total)` is called after every batch.
    """
    config = EvalConfig(**{**asdict(config or EvalConfig()), **overrides})
    config.attacks = tuple(config.attacks)
    config.validate()
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
    source, source_notes = _transfer_source(classifier, config) if _needs_gradients(config) else (None, [])
    notes += [note for note in source_notes if note not in notes]
    x_all, y_all = dataset.split(config.split)
    picks = select_samples(len(x_all), config.samples, config.seed)
    if len(picks) == 0:
        raise AdvcliError(f"data {dataset.spec} has no {config.split} samples")
    report = evaluate_model(
        classifier.as_module(), x_all[picks], y_all[picks], config, classes=list(dataset.classes),
        model_name=str(classifier.path), model_fingerprint=classifier.fingerprint, data_name=dataset.spec,
        data_fingerprint=dataset.fingerprint, on_progress=on_progress,
        source=source.model if source is not None else None, transfer_from=str(source.path) if source else None,
    )
    report.backend = classifier.backend
    report.execution_providers = classifier.execution_providers
    report.notes = notes
    report.transfer_fingerprint = source.fingerprint if source is not None else None
    return report


def save_curve_plot(report: EvalReport, path: Path | str) -> Path:
    """Write robust accuracy against eps (each attack and the worst case) as a PNG, atomically."""
    from .plots import save_robustness_curve

    path = Path(path)
    check_plot_path(path)
    eps = [point.eps for point in report.curve]
    series = {result.attack.name: [point.attacks[index].robust_accuracy for point in report.curve]
              for index, result in enumerate(report.attacks)}
    if len(series) > 1:
        series["worst case"] = [point.robust_accuracy for point in report.curve]
    title = f"{Path(report.model).name or report.model}: robust accuracy ({report.config.norm}, {report.samples} samples)"
    save_robustness_curve(eps, series, path, title=title, clean_accuracy=report.clean_accuracy,
                          chance=1 / report.num_classes if report.num_classes else None)
    return path


def check_plot_path(path: Path | str) -> None:
    """Refuse a plot path that cannot work, before any evaluation starts."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise AdvcliError(f"--plot must end in .png, got {path}")
    if path.is_dir():
        raise AdvcliError(f"--plot {path} is a folder")
