"""What decides a training run, as small value objects (saved flat with every checkpoint)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from ..errors import AdvcliError
from ..models.architectures import DEFAULT_MODEL, MODELS
from ..runtime.device import DEVICES
from ..runtime.precision import PRECISIONS
from ..settings import FlatSettings, check_seed
from ..threat import INITS
from .collapse import ON_COLLAPSE
from .methods import METHODS, TrainingMethodSpec
from .optimizers import LR_SCHEDULES, OPTIMIZERS

if TYPE_CHECKING:
    from .noise import NoiseKeys

# Share of the training split held out for the guard when `val_split` is not given.
DEFAULT_ROBUST_VAL_SPLIT = 0.1


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_count(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _trains_in(precision: str) -> bool:
    entry = PRECISIONS.get(precision)
    return entry is None or entry.trains


def _first_failure(checks: list[tuple[bool, str, str]]) -> None:
    for ok, message, param in checks:
        if not ok:
            raise AdvcliError(message, param=param)


@dataclass(frozen=True)
class Optimization:
    """How weights are updated: `epochs` over mini-batches of `batch_size`, the `optimizer` (SGD with
    `momentum`, the reference's, or Adam) at learning rate `lr` under `lr_schedule`."""

    epochs: int = 30
    batch_size: int = 100
    lr: float = 0.01
    momentum: float = 0.9
    optimizer: str = "sgd"
    lr_schedule: str = "constant"


@dataclass(frozen=True)
class Adversary:
    """The training attack: radius `eps` (grown linearly from 0 over `eps_ramp` epochs), step `alpha`,
    start `init`, `iters` steps, `clip` to [0, 1]; TRADES' `beta`, free training's `replays`.
    None takes the method's default."""

    eps: float = 0.0
    alpha: Optional[float] = None
    init: Optional[str] = None
    iters: Optional[int] = None
    clip: bool = True
    beta: float = 6.0
    replays: Optional[int] = None
    eps_ramp: int = 0


@dataclass(frozen=True)
class GuardSettings:
    """The catastrophic-overfitting guard: the held-out share `val_split` of the training split
    (None: the method's default), validated every epoch and every `val_every` iterations by
    PGD-`val_iters`; a drop of more than `collapse_drop` is a collapse, met by `on_collapse`."""

    val_split: Optional[float] = None
    val_every: int = 0
    val_iters: int = 10
    collapse_drop: float = 0.2
    on_collapse: str = "stop"


@dataclass(frozen=True)
class StepSettings:
    """What one training step needs to know: this update's (possibly ramped) eps and step, the attack's
    steps and start, clipping, TRADES' beta, the mini-batch size (this process's share of it when
    several share a batch), and the share of the eps ramp done by this update (1 once eps is at full
    size, or without a ramp; certified training's schedules follow it). With `keys`, random draws are
    keyed per sample (:mod:`.noise`)."""

    eps: float
    alpha: float
    iters: int
    init: Optional[str]
    clip: bool
    beta: float
    batch_size: int
    keys: Optional["NoiseKeys"] = None
    ramp_progress: float = 1.0


@dataclass(frozen=True)
class TrainConfig(FlatSettings):
    """Everything that decides a training run; saved (flat) with every checkpoint.

    Settings left at None take the method's default (see :data:`advcli.training.methods.METHODS`);
    :meth:`resolved` fills them in, and that is what a run records.
    """

    data: str = "digits"
    arch: str = DEFAULT_MODEL
    method: str = "none"
    optimization: Optimization = field(default_factory=Optimization)
    adversary: Adversary = field(default_factory=Adversary)
    guard: GuardSettings = field(default_factory=GuardSettings)
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # a run records what it resolved to (fp32 or bf16)
    keyed_noise: bool = False  # random draws keyed per sample, as on several processes (always on there)
    sync_bn: bool = False  # BatchNorm statistics over the global batch on several GPUs

    @property
    def method_spec(self) -> TrainingMethodSpec:
        """The registered method this config names (its step function and defaults)."""
        return METHODS.get(self.method)

    @property
    def attack_iters(self) -> int:
        """Attack iterations per mini-batch: `iters`, or the method's default."""
        return self.method_spec.default_iters if self.adversary.iters is None else self.adversary.iters

    @property
    def step_size(self) -> float:
        """The adversarial step: `alpha`, or the method's default (FGSM-RS: 1.25·eps, Wong et al., 2020)."""
        alpha = self.adversary.alpha
        return self.method_spec.default_alpha(self.adversary.eps, self.attack_iters) if alpha is None else alpha

    @property
    def start(self) -> Optional[str]:
        """The perturbation's starting point for methods that offer a choice (fgsm-rs, pgd)."""
        inits = self.method_spec.inits
        return (inits[0] if inits else None) if self.adversary.init is None else self.adversary.init

    @property
    def batch_replays(self) -> int:
        """How many optimizer updates each mini-batch gets in a row (free training: m)."""
        return self.method_spec.default_replays if self.adversary.replays is None else self.adversary.replays

    @property
    def validation_fraction(self) -> float:
        """Share of the training split held out for validation (0 = no guard)."""
        if self.guard.val_split is not None:
            return self.guard.val_split
        return DEFAULT_ROBUST_VAL_SPLIT if self.method_spec.adversarial else 0.0

    @property
    def passes(self) -> int:
        """Passes over the data: `epochs`, divided by the replays (rounded up) as in free training."""
        return math.ceil(self.optimization.epochs / self.batch_replays)

    def steps_per_epoch(self, rows: int) -> int:
        """Optimizer updates per pass over `rows` training samples (free training replays each batch)."""
        return math.ceil(rows / self.optimization.batch_size) * self.batch_replays

    def total_steps(self, training_split: int) -> int:
        """Updates of the whole run on a training split of `training_split` samples (the guard's
        validation slice held out)."""
        return self.steps_per_epoch(training_split - round(training_split * self.validation_fraction)) * self.passes

    def resolved(self) -> "TrainConfig":
        """A copy with every method default filled in."""
        attacks = self.method_spec.adversarial and not self.method_spec.certified
        return self.with_flat(
            alpha=self.step_size if attacks else self.adversary.alpha,
            iters=self.attack_iters, init=self.start, replays=self.batch_replays,
            val_split=self.validation_fraction,
        )

    def step_settings(self, step: int, ramp_steps: int) -> StepSettings:
        """Update `step`'s settings: eps (and alpha with it) grow linearly over the first `ramp_steps`."""
        config, factor = self, 1.0
        if ramp_steps > 0 and step + 1 < ramp_steps:
            factor = (step + 1) / ramp_steps
            alpha = self.adversary.alpha
            config = self.with_flat(eps=self.adversary.eps * factor, alpha=None if alpha is None else alpha * factor)
        return StepSettings(eps=config.adversary.eps, alpha=config.step_size, iters=config.attack_iters,
                            init=config.start, clip=config.adversary.clip, beta=config.adversary.beta,
                            batch_size=config.optimization.batch_size, ramp_progress=factor)

    def validate(self) -> None:
        """Reject impossible settings eagerly, before any data is loaded."""
        MODELS.check(self.arch)
        METHODS.check(self.method)
        o, a, g = self.optimization, self.adversary, self.guard
        OPTIMIZERS.check(o.optimizer)
        LR_SCHEDULES.check(o.lr_schedule)
        ON_COLLAPSE.check(g.on_collapse)
        DEVICES.check(self.device)
        PRECISIONS.check(self.precision)
        check_seed(self.seed)
        _first_failure([
            (isinstance(self.keyed_noise, bool), f"`keyed_noise` must be true or false, got {self.keyed_noise!r}",
             "keyed_noise"),
            (isinstance(self.sync_bn, bool), f"`sync_bn` must be true or false, got {self.sync_bn!r}", "sync_bn"),
            (_is_count(o.epochs, 1), f"`epochs` must be >= 1, got {o.epochs}", "epochs"),
            (_is_count(o.batch_size, 1), f"`batch_size` must be >= 1, got {o.batch_size}", "batch_size"),
            (_is_number(o.lr) and o.lr > 0, f"`lr` (learning rate) must be > 0, got {o.lr}", "lr"),
            (_is_number(o.momentum) and 0 <= o.momentum < 1, f"`momentum` must be in [0, 1), got {o.momentum}",
             "momentum"),
            (_is_number(a.eps) and 0 <= a.eps <= 1, f"`eps` must be in [0, 1], got {a.eps}", "eps"),
            (a.iters is None or _is_count(a.iters, 1), f"`iters` must be >= 1, got {a.iters}", "iters"),
            (a.replays is None or _is_count(a.replays, 1), f"`replays` must be >= 1, got {a.replays}", "replays"),
            (a.alpha is None or _is_number(a.alpha), f"`alpha` must be > 0, got {a.alpha}", "alpha"),
            (_is_number(a.beta) and a.beta >= 0, f"`beta` must be >= 0, got {a.beta}", "beta"),
            (_is_count(a.eps_ramp, 0) and _is_count(o.epochs, 1) and a.eps_ramp <= o.epochs,
             f"`eps_ramp` must be between 0 and `epochs` ({o.epochs}), got {a.eps_ramp}", "eps_ramp"),
            (g.val_split is None or (_is_number(g.val_split) and 0 <= g.val_split < 1),
             f"`val_split` (validation split) must be in [0, 1), got {g.val_split}", "val_split"),
            (_is_count(g.val_every, 0), f"`val_every` must be >= 0 iterations (0: once per epoch), got {g.val_every}",
             "val_every"),
            (_is_count(g.val_iters, 1), f"`val_iters` must be >= 1, got {g.val_iters}", "val_iters"),
            (_is_number(g.collapse_drop) and 0 < g.collapse_drop <= 1,
             f"`collapse_drop` must be in (0, 1], got {g.collapse_drop}", "collapse_drop"),
            (_trains_in(self.precision),
             f"`precision` {self.precision} is not supported for training (it needs loss scaling); use bf16 or fp32",
             "precision"),
        ])
        self._validate_method()

    def _validate_method(self) -> None:
        spec, a = self.method_spec, self.adversary
        multi_step = ", ".join(name for name, other in METHODS.items() if other.multi_step)
        choosable = ", ".join(name for name, other in METHODS.items() if other.inits)
        if spec.certified:
            unset = {"alpha": None, "iters": spec.default_iters, "init": None}  # as resolved() leaves them
            given = next((name for name, value in unset.items() if getattr(a, name) not in (None, value)), None)
            _first_failure([
                (a.eps > 0, f"certified training ({self.method}) needs `eps` > 0", "eps"),
                (given is None, f"`{given}` does not apply to method {self.method}: it trains on bounds, not attacks",
                 str(given)),
            ])
            return
        _first_failure([
            (not spec.adversarial or a.eps > 0, f"adversarial training ({self.method}) needs `eps` > 0", "eps"),
            (not spec.adversarial or self.step_size > 0,
             f"`alpha` must be > 0, got {a.alpha if a.alpha is not None else self.step_size}", "alpha"),
            (self.attack_iters == 1 or spec.multi_step,
             f"method {self.method} takes a single attack step; `iters` applies to {multi_step}", "iters"),
            (a.init is None or a.init in INITS, f"`init` must be one of {INITS.choices()}, got {a.init!r}", "init"),
            (a.init is None or a.init in spec.inits,
             f"`init` does not apply to method {self.method} (it has its own start); it applies to {choosable}",
             "init"),
        ])


def saved_config(saved: Any) -> Any:
    """A saved config as this version reads it: runs saved before precision was a setting ran in fp32,
    before keyed noise and SyncBatchNorm were settings without them, and runs saved before the
    vocabulary was unified named the architecture ``model``."""
    if not isinstance(saved, dict):
        return saved
    saved = {"precision": "fp32", "keyed_noise": False, "sync_bn": False, **saved}
    if "model" in saved and "arch" not in saved:
        saved["arch"] = saved.pop("model")
    return saved


def config_from_flat(saved: Any) -> TrainConfig:
    """The config a checkpoint stored (flat), or an AdvcliError saying what is wrong with it."""
    saved = saved_config(saved)
    if not isinstance(saved, dict):
        raise AdvcliError("the stored training config is not a mapping")
    return TrainConfig.from_flat(saved)
