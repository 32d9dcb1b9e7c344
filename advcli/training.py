"""Standard and adversarial training of registered models, with a seeded, repeatable loop.

The loop follows the reference example by default: SGD with momentum, a fixed learning rate,
mini-batches reshuffled every epoch. Methods differ only in the step function that turns a
mini-batch into a loss, looked up in :data:`TRAINING_METHODS`; optimizers, learning-rate
schedules and on-collapse actions are registries too. Adversarial runs hold out a slice of the
training data to watch PGD accuracy (:mod:`advcli.guard`), and an interrupted run saves a resume
state (:mod:`advcli.resume`) from which it continues exactly where it stopped.

Each step (its attack and its weight update alike) runs in the configured precision
(:mod:`advcli.precision`; ``auto`` is bf16 where the hardware has it natively). A reduced-precision
run holds its convolution weights channels-last while it trains; the guard's validation attack is
crafted in the same precision but classified in float32, as is the final test accuracy. A run
records the precision it resolved to, so a resumed run continues in it.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .attacks import INITS, attack_mode, input_gradient, linf_step, perturb, random_start
from .data import Dataset, load_dataset
from .devices import resolve_device
from .errors import AdvcliError, CheckpointError, DataError
from .guard import ON_COLLAPSE, CollapseGuard, ValidationResult, pgd_validation, split_validation
from .models import DEFAULT_MODEL, MODELS, build_model
from .precision import PRECISION_CHOICES, PRECISIONS, Autocast, autocast, resolve_precision, set_channels_last
from .provenance import package_versions, utc_now
from .resume import ResumeState, grouped, pack_optimizer, read_resume_state, resume_files, unpack_optimizer
from .runs import DEFAULT_RUNS_DIR, LOSS_PLOT_FILE, check_run_dir_free, default_run_name, read_run_meta, save_run

# Share of the training split held out for the guard when --val-split is not given.
DEFAULT_ROBUST_VAL_SPLIT = 0.1


@dataclass
class TrainConfig:
    """Everything that decides a training run; saved with every checkpoint.

    Fields left at None take the method's default (see :data:`TRAINING_METHODS`);
    :meth:`resolved` fills them in, and that is what a run records.
    """

    data: str = "digits"
    model: str = DEFAULT_MODEL
    epochs: int = 30
    batch_size: int = 100
    lr: float = 0.01
    momentum: float = 0.9
    seed: int = 0
    device: str = "auto"
    method: str = "none"
    eps: float = 0.0
    alpha: Optional[float] = None
    init: Optional[str] = None
    iters: Optional[int] = None
    clip: bool = True
    beta: float = 6.0
    replays: Optional[int] = None
    optimizer: str = "sgd"
    lr_schedule: str = "constant"
    eps_ramp: int = 0
    val_split: Optional[float] = None
    val_every: int = 0
    val_iters: int = 10
    collapse_drop: float = 0.2
    on_collapse: str = "stop"
    precision: str = "auto"  # a run records what it resolved to (fp32 or bf16)

    @property
    def method_spec(self) -> "TrainingMethodSpec":
        """The registered method this config names (its step function and defaults)."""
        try:
            return TRAINING_METHODS[self.method]
        except KeyError:
            raise AdvcliError(f"unknown method {self.method!r}; choose one of: {', '.join(TRAINING_METHODS)}") from None

    @property
    def attack_iters(self) -> int:
        """Attack iterations per mini-batch: `iters`, or the method's default."""
        return self.method_spec.default_iters if self.iters is None else self.iters

    @property
    def step_size(self) -> float:
        """The adversarial step: `alpha`, or the method's default (FGSM-RS: 1.25·eps, Wong et al., 2020)."""
        return self.method_spec.default_alpha(self.eps, self.attack_iters) if self.alpha is None else self.alpha

    @property
    def start(self) -> Optional[str]:
        """The perturbation's starting point for methods that offer a choice (fgsm-rs, pgd)."""
        return (self.method_spec.inits[0] if self.method_spec.inits else None) if self.init is None else self.init

    @property
    def batch_replays(self) -> int:
        """How many optimizer updates each mini-batch gets in a row (free training: m)."""
        return self.method_spec.default_replays if self.replays is None else self.replays

    @property
    def validation_fraction(self) -> float:
        """Share of the training split held out for validation (0 = no guard)."""
        if self.val_split is not None:
            return self.val_split
        return DEFAULT_ROBUST_VAL_SPLIT if self.method_spec.adversarial else 0.0

    @property
    def passes(self) -> int:
        """Passes over the data: `epochs`, divided by the replays (rounded up) as in free training."""
        return math.ceil(self.epochs / self.batch_replays)

    def resolved(self) -> "TrainConfig":
        """A copy with every method default filled in."""
        spec = self.method_spec
        return replace(
            self,
            alpha=self.step_size if spec.adversarial else self.alpha,
            iters=self.attack_iters,
            init=self.start,
            replays=self.batch_replays,
            val_split=self.validation_fraction,
        )

    def validate(self) -> None:
        """Reject impossible settings eagerly, before any data is loaded."""
        _first_failure([
            (self.model in MODELS, f"unknown model {self.model!r}; choose one of: {', '.join(MODELS)}"),
            (self.method in TRAINING_METHODS, f"unknown method {self.method!r}; choose one of: {', '.join(TRAINING_METHODS)}"),
            (self.optimizer in OPTIMIZERS, f"unknown optimizer {self.optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}"),
            (self.lr_schedule in LR_SCHEDULES, f"unknown lr schedule {self.lr_schedule!r}; choose one of: {', '.join(LR_SCHEDULES)}"),
            (self.on_collapse in ON_COLLAPSE, f"on-collapse must be one of {', '.join(ON_COLLAPSE)}, got {self.on_collapse!r}"),
            (_is_count(self.epochs, 1), f"epochs must be >= 1, got {self.epochs}"),
            (_is_count(self.batch_size, 1), f"batch size must be >= 1, got {self.batch_size}"),
            (_is_number(self.lr) and self.lr > 0, f"learning rate must be > 0, got {self.lr}"),
            (_is_number(self.momentum) and 0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}"),
            (_is_number(self.eps) and 0 <= self.eps <= 1, f"eps must be in [0, 1], got {self.eps}"),
            (self.iters is None or _is_count(self.iters, 1), f"iterations must be >= 1, got {self.iters}"),
            (self.replays is None or _is_count(self.replays, 1), f"replays must be >= 1, got {self.replays}"),
            (self.alpha is None or _is_number(self.alpha), f"alpha must be > 0, got {self.alpha}"),
            (_is_number(self.beta) and self.beta >= 0, f"beta must be >= 0, got {self.beta}"),
            (_is_count(self.eps_ramp, 0) and self.eps_ramp <= self.epochs,
             f"eps ramp must be between 0 and --epochs ({self.epochs}), got {self.eps_ramp}"),
            (self.val_split is None or (_is_number(self.val_split) and 0 <= self.val_split < 1),
             f"validation split must be in [0, 1), got {self.val_split}"),
            (_is_count(self.val_every, 0), f"val-every must be >= 0 iterations (0: once per epoch), got {self.val_every}"),
            (_is_count(self.val_iters, 1), f"val-iters must be >= 1, got {self.val_iters}"),
            (_is_number(self.collapse_drop) and 0 < self.collapse_drop <= 1,
             f"collapse drop must be in (0, 1], got {self.collapse_drop}"),
            (self.precision in PRECISION_CHOICES,
             f"precision must be one of {', '.join(PRECISION_CHOICES)}, got {self.precision!r}"),
            (self.precision != "fp16",
             "--precision fp16 is not supported for training (it needs loss scaling); use bf16 or fp32"),
        ])
        spec = self.method_spec
        multi_step = ", ".join(name for name, other in TRAINING_METHODS.items() if other.multi_step)
        choosable = ", ".join(name for name, other in TRAINING_METHODS.items() if other.inits)
        _first_failure([
            (not spec.adversarial or self.eps > 0, f"adversarial training ({self.method}) needs eps > 0"),
            (not spec.adversarial or self.step_size > 0, f"alpha must be > 0, got {self.alpha}"),
            (self.attack_iters == 1 or spec.multi_step,
             f"method {self.method} takes a single attack step; --iters applies to {multi_step}"),
            (self.init is None or self.init in INITS, f"init must be one of {', '.join(INITS)}, got {self.init!r}"),
            (self.init is None or self.init in spec.inits,
             f"--init does not apply to method {self.method} (it has its own start); it applies to {choosable}"),
        ])


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_count(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _first_failure(checks: list[tuple[bool, str]]) -> None:
    for ok, message in checks:
        if not ok:
            raise AdvcliError(message)


# Training methods ---------------------------------------------------------------------------

# A step turns a mini-batch into (loss, logits). `carry` is the method's own state between steps
# (kept by the loop and saved with a resume state); `config` holds this step's eps and alpha.
StepFn = Callable[
    [nn.Module, torch.Tensor, torch.Tensor, TrainConfig, torch.Generator, dict[str, torch.Tensor]],
    tuple[torch.Tensor, torch.Tensor],
]


def standard_step(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: TrainConfig,
    generator: torch.Generator, carry: dict[str, torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy on the clean mini-batch."""
    logits = model(x).float()
    return F.cross_entropy(logits, y), logits


def pgd_step(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: TrainConfig,
    generator: torch.Generator, carry: dict[str, torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy on `iters` signed-gradient steps projected on the eps-ball (Madry et al., 2018);
    FGSM-RS (Wong et al., 2020) is its one-step case with alpha 1.25·eps."""
    x_adv = perturb(
        model, x, y, eps=config.eps, alpha=config.step_size, steps=config.attack_iters,
        random_init=config.start == "random", clip=config.clip, generator=generator,
    )
    logits = model(x_adv).float()
    return F.cross_entropy(logits, y), logits


# TRADES starts its adversary this close to the clean input (Zhang et al., 2019).
TRADES_START_STD = 0.001


def trades_step(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: TrainConfig,
    generator: torch.Generator, carry: dict[str, torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """TRADES (Zhang et al., 2019): clean cross-entropy + beta·KL(clean ‖ adversarial) logits.

    The adversary maximises the KL term with `iters` signed steps projected on the eps-ball,
    from a Gaussian start of std 0.001, with the model in eval mode as in the paper's code.
    """
    with attack_mode(model):
        with torch.no_grad():
            clean_probs = F.softmax(model(x).float(), dim=1)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x_adv = x + TRADES_START_STD * noise
        x_adv = x_adv.clamp(0, 1) if config.clip else x_adv
        for _ in range(config.attack_iters):
            x_adv = x_adv.detach().requires_grad_(True)
            with torch.enable_grad():
                divergence = F.kl_div(F.log_softmax(model(x_adv).float(), dim=1), clean_probs, reduction="sum")
                (grad,) = torch.autograd.grad(divergence, x_adv)
            x_adv = linf_step(x, x_adv.detach(), grad, eps=config.eps, alpha=config.step_size, clip=config.clip)
    logits = model(x).float()
    adversarial = F.kl_div(F.log_softmax(model(x_adv).float(), dim=1), F.softmax(logits, dim=1), reduction="batchmean")
    return F.cross_entropy(logits, y) + config.beta * adversarial, logits


def free_step(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: TrainConfig,
    generator: torch.Generator, carry: dict[str, torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Free adversarial training (Shafahi et al., 2019): one perturbation, carried over from
    update to update and from mini-batch to mini-batch, moved by a signed step of alpha
    (default eps) along the input gradient of the previous update and kept in the eps-ball.

    The loop's own backward pass fills that input gradient (``carry["delta"].grad``), so each
    replay costs one forward and one backward pass. With `clip`, ``x + delta`` stays in [0, 1].
    """
    rows = max(config.batch_size, x.shape[0])
    delta = carry.get("delta")
    with torch.no_grad():
        if delta is None or tuple(delta.shape[1:]) != tuple(x.shape[1:]) or delta.shape[0] < rows:
            delta = torch.zeros((rows, *x.shape[1:]), device=x.device, dtype=x.dtype)
        else:
            grad = delta.grad
            delta = delta.detach().clone()
            if grad is not None:
                delta += config.step_size * grad.sign()
            delta.clamp_(-config.eps, config.eps)
        if config.clip:
            used = delta[:x.shape[0]]
            used.copy_(torch.maximum(torch.minimum(used, 1 - x), -x))
    delta.requires_grad_(True)
    carry["delta"] = delta
    x_adv = x + delta[:x.shape[0]]
    logits = model(x_adv.clamp(0, 1) if config.clip else x_adv).float()
    return F.cross_entropy(logits, y), logits


# N-FGSM draws its noise from a box this many eps wide on each side (de Jorge et al., 2022).
NFGSM_NOISE = 2.0


def n_fgsm_step(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: TrainConfig,
    generator: torch.Generator, carry: dict[str, torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """N-FGSM (de Jorge et al., 2022): uniform noise of radius 2·eps, then one signed step of
    alpha (default eps), *not* projected back on the eps-ball: |delta|inf <= 2·eps + alpha."""
    x_noise = random_start(x, NFGSM_NOISE * config.eps, clip=config.clip, generator=generator)
    grad, _ = input_gradient(model, x_noise, y)
    x_adv = x_noise + config.step_size * grad.sign()
    logits = model(x_adv.clamp(0, 1) if config.clip else x_adv).float()
    return F.cross_entropy(logits, y), logits


def _no_step(eps: float, iters: int) -> float:
    return 0.0


@dataclass(frozen=True)
class TrainingMethodSpec:
    """A training method: its step function and the defaults it brings."""

    step: StepFn
    summary: str
    adversarial: bool = True
    default_alpha: Callable[[float, int], float] = _no_step  # (eps, iters) -> alpha
    default_iters: int = 1
    multi_step: bool = False  # accepts iters > 1
    inits: tuple[str, ...] = ()  # starting points it offers; the first is the default
    default_replays: int = 1


TRAINING_METHODS: dict[str, TrainingMethodSpec] = {
    "none": TrainingMethodSpec(standard_step, "plain training on clean inputs", adversarial=False),
    "fgsm-rs": TrainingMethodSpec(
        pgd_step, "FGSM from a random start, step 1.25·eps (Wong et al., 2020)",
        default_alpha=lambda eps, iters: 1.25 * eps, multi_step=True, inits=("random", "zero"),
    ),
    "pgd": TrainingMethodSpec(
        pgd_step, "PGD-k from a random start, step 2.5·eps/k (Madry et al., 2018)",
        default_alpha=lambda eps, iters: 2.5 * eps / iters, default_iters=10, multi_step=True, inits=("random", "zero"),
    ),
    "trades": TrainingMethodSpec(
        trades_step, "clean loss + beta·KL to PGD-k logits (Zhang et al., 2019)",
        default_alpha=lambda eps, iters: 2.5 * eps / iters, default_iters=10, multi_step=True,
    ),
    "free": TrainingMethodSpec(
        free_step, "each mini-batch replayed m times, perturbation carried over (Shafahi et al., 2019)",
        default_alpha=lambda eps, iters: eps, default_replays=4,
    ),
    "n-fgsm": TrainingMethodSpec(
        n_fgsm_step, "FGSM from noise of radius 2·eps, step eps, no projection (de Jorge et al., 2022)",
        default_alpha=lambda eps, iters: eps,
    ),
}

TrainingMethod = Enum("TrainingMethod", {name: name for name in TRAINING_METHODS}, type=str)  # type: ignore[misc]


# Optimizers and learning-rate schedules -----------------------------------------------------


def _sgd(params: Any, config: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum)


def _adam(params: Any, config: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=config.lr)


# SGD with momentum is the reference's; --momentum applies to it only.
OPTIMIZERS: dict[str, Callable[[Any, TrainConfig], torch.optim.Optimizer]] = {"sgd": _sgd, "adam": _adam}

OptimizerName = Enum("OptimizerName", {name: name for name in OPTIMIZERS}, type=str)  # type: ignore[misc]


def constant_lr(progress: float) -> float:
    """The reference's fixed learning rate."""
    return 1.0


def cyclic_lr(progress: float) -> float:
    """One triangular cycle: from 0 up to --lr at 2/5 of training, then down to 0 (Wong et al., 2020)."""
    return progress / 0.4 if progress <= 0.4 else (1.0 - progress) / 0.6


def multistep_lr(progress: float) -> float:
    """--lr, times 0.1 after half of training and again after three quarters."""
    return 0.1 ** ((progress > 0.5) + (progress > 0.75))


# Factor of --lr for an update, given the share of training done once it is applied (0, 1].
LR_SCHEDULES: dict[str, Callable[[float], float]] = {
    "constant": constant_lr, "cyclic": cyclic_lr, "multistep": multistep_lr,
}

LrSchedule = Enum("LrSchedule", {name: name for name in LR_SCHEDULES}, type=str)  # type: ignore[misc]


# The loop -----------------------------------------------------------------------------------


@dataclass
class TrainProgress:
    """A snapshot handed to the progress callback after every iteration.

    `validation` and `epoch_loss` are set after an epoch (and every --val-every iterations for
    `validation`); `warning` when the guard saw robust validation accuracy collapse, or clean
    validation accuracy still at chance level (see `AT_CHANCE_FACTOR`).
    """

    epoch: int
    epochs: int
    iteration: int
    iterations: int
    loss: float
    validation: Optional[ValidationResult] = None
    epoch_loss: Optional[float] = None
    warning: Optional[str] = None


@dataclass
class TrainResult:
    """A trained model with what it took to get there."""

    model: nn.Module
    config: TrainConfig
    dataset: Dataset
    history: list[dict[str, Any]]
    metrics: dict[str, Any]
    interrupted: bool
    guard: Optional[dict[str, Any]] = None
    resume_state: Optional[ResumeState] = None
    resumed_from: Optional[dict[str, Any]] = None


# validator(model, x_val, y_val, config) -> clean and robust validation accuracy
Validator = Callable[[nn.Module, torch.Tensor, torch.Tensor, TrainConfig], ValidationResult]


def robust_validation(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: TrainConfig) -> ValidationResult:
    """The guard's measure: PGD-`val_iters` accuracy at the full eps (eps 0: clean accuracy), the
    attack crafted in the run's precision, every sample classified in float32."""
    precision = resolve_precision(config.precision, x.device, training=True)
    crafter = None if PRECISIONS[precision] is None else Autocast(model, precision, x.device.type)
    return pgd_validation(model, x, y, eps=config.eps, iters=config.val_iters, clip=config.clip, seed=config.seed + 3,
                          crafter=crafter)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 1000) -> float:
    """Clean accuracy of `model` (in eval mode) on `x`, `y`, computed in batches."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size].to(device, non_blocking=True)
        yb = y[start:start + batch_size].to(device, non_blocking=True)
        correct += int((model(xb).argmax(1) == yb).sum())
    model.train(was_training)
    return correct / max(1, len(x))


def _step_config(config: TrainConfig, step: int, ramp_steps: int) -> TrainConfig:
    """This update's config: eps (and alpha with it) grow linearly over the first `ramp_steps`."""
    if ramp_steps <= 0 or step + 1 >= ramp_steps:
        return config
    factor = (step + 1) / ramp_steps
    return replace(config, eps=config.eps * factor, alpha=None if config.alpha is None else config.alpha * factor)


@dataclass
class _Generators:
    shuffle: torch.Generator
    attack: torch.Generator


def _capture(
    config: TrainConfig, dataset: Dataset, model: nn.Module, optimizer: torch.optim.Optimizer,
    generators: _Generators, guard: Optional[CollapseGuard], carry: dict[str, torch.Tensor],
    order: Optional[torch.Tensor], step: int, total: int, history: list[dict[str, Any]], seconds: float,
) -> ResumeState:
    """Everything needed to continue this run from `step` exactly as if it had not stopped."""
    optimizer_tensors, optimizer_plain = pack_optimizer(optimizer.state_dict())
    tensors = {
        **grouped("model", model.state_dict()),
        **grouped("optimizer", optimizer_tensors),
        "rng.shuffle": generators.shuffle.get_state(),
        "rng.attack": generators.attack.get_state(),
        "rng.global": torch.get_rng_state(),
        **grouped("carry", {key: value.detach() for key, value in carry.items()}),
        **grouped("carry_grad", {key: value.grad for key, value in carry.items() if value.grad is not None}),
    }
    device = next(model.parameters()).device
    if device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(device)
    if order is not None:
        tensors["order"] = order
    info: dict[str, Any] = {
        "config": asdict(config), "data_fingerprint": dataset.fingerprint, "step": step, "total_steps": total,
        "seconds": seconds, "history": [dict(row) for row in history], "optimizer": optimizer_plain,
        "carry_requires_grad": sorted(key for key, value in carry.items() if value.requires_grad),
        "guard": None, "best_optimizer": None,
    }
    if guard is not None:
        info["guard"] = guard.record()
        if guard.best_model is not None and guard.best_optimizer is not None:
            best_tensors, info["best_optimizer"] = pack_optimizer(guard.best_optimizer)
            tensors.update(grouped("best_model", guard.best_model))
            tensors.update(grouped("best_optimizer", best_tensors))
    # Copies: the model may yet be switched to the guard's best weights, in place.
    return ResumeState(tensors={name: value.detach().clone() for name, value in tensors.items()}, info=info)


def _saved_config(saved: Any) -> Any:
    """A saved config as this version reads it: runs saved before precision was a setting ran in fp32."""
    return {"precision": "fp32", **saved} if isinstance(saved, dict) else saved


def _restore(
    state: ResumeState, config: TrainConfig, dataset: Dataset, model: nn.Module, optimizer: torch.optim.Optimizer,
    generators: _Generators, guard: Optional[CollapseGuard], total: int, device: torch.device,
) -> tuple[int, Optional[torch.Tensor], dict[str, torch.Tensor], list[dict[str, Any]], float]:
    """Load a resume state into the freshly built objects; returns step, order, carry, history, seconds."""
    info = state.info
    if _saved_config(info.get("config")) != asdict(config):
        raise CheckpointError("the resume state was written for another configuration")
    if info.get("data_fingerprint") != dataset.fingerprint:
        raise DataError(f"{dataset.spec}: not the data this run was trained on (fingerprint differs)")
    if info.get("total_steps") != total or not 0 < info.get("step", 0) < total:
        raise CheckpointError("the resume state does not fit this run's length")
    try:
        model.load_state_dict(state.group("model"), strict=True)
        optimizer.load_state_dict(unpack_optimizer(state.group("optimizer"), info["optimizer"]))
        generators.shuffle.set_state(state.tensors["rng.shuffle"])
        generators.attack.set_state(state.tensors["rng.attack"])
        torch.set_rng_state(state.tensors["rng.global"])
        if device.type == "cuda" and "rng.cuda" in state.tensors:
            torch.cuda.set_rng_state(state.tensors["rng.cuda"], device)
    except (KeyError, RuntimeError, ValueError) as error:
        raise CheckpointError(f"the resume state does not fit this run ({error})") from None
    carry = {key: value.to(device) for key, value in state.group("carry").items()}
    grads = state.group("carry_grad")
    for key in info.get("carry_requires_grad", []):
        carry[key].requires_grad_(True)
        if key in grads:
            carry[key].grad = grads[key].to(device)
    if guard is not None and info.get("guard") is not None:
        guard.load_record(info["guard"])
        if info.get("best_optimizer") is not None:
            guard.best_model = {key: value.to(device) for key, value in state.group("best_model").items()}
            guard.best_optimizer = unpack_optimizer(state.group("best_optimizer"), info["best_optimizer"])
    order = state.tensors.get("order")
    return info["step"], None if order is None else order.to(device), carry, list(info["history"]), float(info["seconds"])


def train_model(
    config: TrainConfig,
    *,
    dataset: Optional[Dataset] = None,
    on_progress: Optional[Callable[[TrainProgress], None]] = None,
    should_stop: Optional[Callable[[], bool]] = None,
    resume_from: Optional[ResumeState] = None,
    validator: Validator = robust_validation,
) -> TrainResult:
    """Train a model as `config` says. `should_stop` is polled after every iteration; a run it
    interrupts returns the model so far with a resume state (`resume_from` continues one).

    With a validation split (adversarial methods: 10% of the training split by default), every
    epoch (and every `val_every` iterations) ends with `validator`; the guard keeps the weights with
    the best robust validation accuracy and reacts to a collapse as `on_collapse` says.
    """
    config = config.resolved()
    config.validate()
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device, training=True)
    config = replace(config, precision=precision)
    dataset = dataset if dataset is not None else load_dataset(config.data)
    spec = config.method_spec
    torch.manual_seed(config.seed)
    model = build_model(config.model, dataset.input_shape, dataset.num_classes).to(device)
    channels_last = set_channels_last(model)  # the fast layout for convolutions, in every precision
    optimizer = OPTIMIZERS[config.optimizer](model.parameters(), config)
    generators = _Generators(torch.Generator().manual_seed(config.seed),
                             torch.Generator(device=device).manual_seed(config.seed + 1))
    split = split_validation(len(dataset.x_train), config.validation_fraction, config.seed + 2)
    x_train, y_train = dataset.x_train[split.train].to(device), dataset.y_train[split.train].to(device)
    x_val, y_val = dataset.x_train[split.val].to(device), dataset.y_train[split.val].to(device)
    guard = CollapseGuard(config.collapse_drop, config.on_collapse) if len(x_val) else None

    count = len(x_train)
    per_epoch = math.ceil(count / config.batch_size)
    replays = config.batch_replays
    steps_per_epoch = per_epoch * replays
    total = steps_per_epoch * config.passes
    ramp_steps = config.eps_ramp * per_epoch
    step, order, carry, history, seconds_before = 0, None, {}, [], 0.0
    if resume_from is not None:
        step, order, carry, history, seconds_before = _restore(
            resume_from, config, dataset, model, optimizer, generators, guard, total, device)
    interrupted = stopped_by_guard = False
    stalled_epoch: Optional[int] = None  # first epoch that ended with clean validation accuracy at chance
    started = time.perf_counter()
    model.train()
    while step < total:
        epoch_index, within = divmod(step, steps_per_epoch)
        if within == 0 or order is None:
            order = torch.randperm(count, generator=generators.shuffle).to(device)
        batch = order[within // replays * config.batch_size:][:config.batch_size]
        xb, yb = x_train[batch], y_train[batch]
        step_config = _step_config(config, step, ramp_steps)
        lr = config.lr * LR_SCHEDULES[config.lr_schedule]((step + 1) / total) * (guard.lr_scale if guard else 1.0)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with autocast(device, precision):
            loss, logits = spec.step(model, xb, yb, step_config, generators.attack, carry)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            raise AdvcliError(f"training diverged at iteration {step} (loss {loss_value}); lower --lr")
        row: dict[str, Any] = {
            "iteration": step,
            "epoch": epoch_index + 1,
            "loss": round(loss_value, 6),
            "batch_accuracy": round(float((logits.argmax(1) == yb).float().mean()), 4),
            "lr": round(lr, 10),
            "eps": round(step_config.eps, 10),
        }
        history.append(row)
        epoch_end = within + 1 == steps_per_epoch
        progress = TrainProgress(epoch_index + 1, config.passes, step, total, loss_value)
        if epoch_end:
            progress.epoch_loss = sum(r["loss"] for r in history[-steps_per_epoch:]) / steps_per_epoch
        if guard is not None and (epoch_end or (config.val_every and step % config.val_every == 0)):
            result = validator(model, x_val, y_val, config)
            row["val_accuracy"] = round(result.accuracy, 6)
            row["val_robust_accuracy"] = round(result.robust_accuracy, 6)
            progress.validation = result
            decision = guard.observe(result, epoch=epoch_index + 1, iteration=step, model=model, optimizer=optimizer)
            if decision.event is not None:
                progress.warning = _collapse_warning(decision.event)
            stopped_by_guard = decision.stop
            if stalled_epoch is None and epoch_end and _at_chance(result, epoch_index + 1, dataset.num_classes):
                stalled_epoch = epoch_index + 1
                progress.warning = "; ".join(filter(None, (progress.warning, _chance_warning(result, stalled_epoch))))
        if on_progress is not None:
            on_progress(progress)
        if stopped_by_guard:
            break
        if should_stop is not None and should_stop():
            interrupted = step < total
            break
    seconds = seconds_before + time.perf_counter() - started
    if channels_last:
        set_channels_last(model, False)
    resume_state = None
    if interrupted:
        resume_state = _capture(config, dataset, model, optimizer, generators, guard, carry, order,
                                step, total, history, seconds)
    kept = "last"
    if guard is not None and guard.best_model is not None and not guard.holds(model):
        model.load_state_dict(guard.best_model)
        kept = "best"
    model.eval()
    guard_record = None if guard is None else _guard_summary(config, guard, len(x_val), kept, stopped_by_guard)
    metrics = {
        "clean_test_accuracy": round(accuracy(model, dataset.x_test, dataset.y_test), 6),
        "val_accuracy": None if guard is None else guard.best_accuracy,
        "val_robust_accuracy": None if guard is None else guard.best_robust_accuracy,
        "final_loss": history[-1]["loss"] if history else None,
        "epochs_completed": step // steps_per_epoch,
        "iterations": step,
        "interrupted": interrupted,
        "stopped_by_guard": stopped_by_guard,
        "at_chance_epoch": stalled_epoch,
        "kept": kept,
        "train_seconds": round(seconds, 2),
        "device": str(device),
        "precision": precision,
    }
    return TrainResult(model, config, dataset, history, metrics, interrupted, guard_record, resume_state)


def _guard_summary(config: TrainConfig, guard: CollapseGuard, samples: int, kept: str, stopped: bool) -> dict[str, Any]:
    """The ``guard`` entry of model.json: how validation was done, what it saw, which model was kept."""
    return {
        "selection": f"weights with the best PGD-{config.val_iters} accuracy on the validation slice of the training split",
        "validation": {
            "split": "train", "fraction": config.validation_fraction, "samples": samples,
            "attack": "pgd", "eps": config.eps, "iters": config.val_iters,
            "alpha": 2.5 * config.eps / config.val_iters, "init": "random",
            "every": config.val_every or "epoch",
        },
        "collapse_drop": config.collapse_drop,
        "on_collapse": config.on_collapse,
        **guard.record(),
        "kept": kept,
        "stopped": stopped,
    }


# Clean validation accuracy at most this multiple of chance (1 / classes), from this epoch on,
# means the model has not started to learn: large-eps adversarial training from scratch can sit
# at a constant prediction for the whole run, with nothing in the loss to say so but ln(classes).
AT_CHANCE_FACTOR = 1.5
AT_CHANCE_FROM_EPOCH = 2


def _at_chance(result: ValidationResult, epoch: int, num_classes: int) -> bool:
    return epoch >= AT_CHANCE_FROM_EPOCH and result.accuracy <= AT_CHANCE_FACTOR / num_classes


def _chance_warning(result: ValidationResult, epoch: int) -> str:
    return (f"clean validation accuracy is {result.accuracy:.4f} after {epoch} epochs, at chance level: the model "
            "is not learning (at a large eps, ramp it up with --eps-ramp, or lower --lr)")


def _collapse_warning(event: dict[str, Any]) -> str:
    return (f"robust validation accuracy collapsed to {event['val_robust_accuracy']:.4f} "
            f"(best {event['best_val_robust_accuracy']:.4f} at epoch {event['best_epoch']}); {event['action']}")


# Run folders --------------------------------------------------------------------------------


def run_metadata(result: TrainResult) -> dict[str, Any]:
    """The ``model.json`` description of a trained model."""
    dataset = result.dataset
    adversarial = result.config.method_spec.adversarial
    meta = {
        "created": utc_now(),
        "architecture": result.config.model,
        "input_shape": list(dataset.input_shape),
        "input_range": [0.0, 1.0],
        "classes": list(dataset.classes),
        "training": {
            "method": result.config.method,
            "eps": result.config.eps if adversarial else 0.0,
            "alpha": result.config.step_size if adversarial else None,
            "precision": result.config.precision,
        },
        "config": asdict(result.config),
        "data": dataset.describe(),
        "seed": result.config.seed,
        "versions": package_versions(),
        "metrics": result.metrics,
    }
    if result.guard is not None:
        meta["guard"] = result.guard
    if result.resumed_from is not None:
        meta["resumed_from"] = result.resumed_from
    return meta


def save_training(result: TrainResult, path: Path) -> Path:
    """Save a trained model as a run folder (weights, model.json, history.csv, loss.png and,
    for an interrupted run, its resume state)."""
    from .plots import save_loss_curve

    title = f"Training loss ({result.config.method}, {result.config.model}, {result.dataset.name})"
    meta = run_metadata(result)
    writers: list[Callable[[Path], None]] = [
        lambda folder: save_loss_curve(result.history, folder / LOSS_PLOT_FILE, title=title)]
    if result.resume_state is not None:
        files, meta["resume"] = resume_files(result.resume_state)

        def write_resume_files(folder: Path) -> None:
            for name, content in files.items():
                (folder / name).write_bytes(content)

        writers.append(write_resume_files)
    return save_run(path, result.model, meta, result.history, extra_writers=writers)


def train(
    config: Optional[TrainConfig] = None,
    *,
    out: Optional[Path | str] = None,
    runs_dir: Path | str = DEFAULT_RUNS_DIR,
    dataset: Optional[Dataset] = None,
    on_progress: Optional[Callable[[TrainProgress], None]] = None,
    should_stop: Optional[Callable[[], bool]] = None,
    **overrides: Any,
) -> tuple[Path, TrainResult]:
    """Train and save a run folder; returns its path and the result.

    ``advcli.train(epochs=5)`` trains the reference network on the built-in digits;
    ``advcli.train(method="fgsm-rs", eps=0.1)`` does FGSM adversarial training.
    """
    config = TrainConfig(**{**asdict(config or TrainConfig()), **overrides})
    config.validate()
    kind = "standard" if config.method == "none" else "robust"
    path = Path(out) if out is not None else Path(runs_dir) / default_run_name(kind)
    check_run_dir_free(path)
    result = train_model(config, dataset=dataset, on_progress=on_progress, should_stop=should_stop)
    return save_training(result, path), result


def robust_train(config: Optional[TrainConfig] = None, **kwargs: Any) -> tuple[Path, TrainResult]:
    """:func:`train` with FGSM-RS adversarial training at eps 0.1 unless told otherwise."""
    if config is None:
        kwargs.setdefault("method", "fgsm-rs")
        kwargs.setdefault("eps", 0.1)
    return train(config, **kwargs)


def resumed_run_path(run: Path | str) -> Path:
    """Where a resumed run goes by default: ``<run>-resumed`` beside the interrupted one."""
    run = Path(run).resolve()
    return run.with_name(run.name + "-resumed")


def load_resume(run: Path | str) -> tuple[TrainConfig, ResumeState, dict[str, Any]]:
    """The config, resume state and model.json of an interrupted run folder."""
    path = Path(run)
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such run folder")
    meta = read_run_meta(path)
    if "resume" not in meta:
        raise CheckpointError(f"{path}: this run was not interrupted; there is nothing to resume")
    state = read_resume_state(path, meta["resume"])
    try:
        config = TrainConfig(**_saved_config(state.info["config"]))
    except (KeyError, TypeError) as error:
        raise CheckpointError(f"{path}: the resume state has an unreadable config ({error})") from None
    return config, state, meta


def resume_training(
    run: Path | str,
    *,
    out: Optional[Path | str] = None,
    dataset: Optional[Dataset] = None,
    on_progress: Optional[Callable[[TrainProgress], None]] = None,
    should_stop: Optional[Callable[[], bool]] = None,
) -> tuple[Path, TrainResult]:
    """Continue an interrupted run into a new run folder (default ``<run>-resumed``); the
    interrupted run is left as it is. The result equals that of an uninterrupted run."""
    config, state, meta = load_resume(run)
    path = Path(out) if out is not None else resumed_run_path(run)
    check_run_dir_free(path)
    dataset = dataset if dataset is not None else load_dataset(config.data)
    result = train_model(config, dataset=dataset, on_progress=on_progress, should_stop=should_stop,
                         resume_from=state)
    result.resumed_from = {"run": str(Path(run)), "iteration": state.info["step"],
                           "weights_sha256": meta["weights"]["sha256"]}
    return save_training(result, path), result
