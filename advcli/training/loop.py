"""The training loop shared by every method: seeded, repeatable, resumable, guarded.

The loop follows the reference example by default: SGD with momentum, a fixed learning rate,
mini-batches reshuffled every epoch. Methods differ only in the step function that turns a
mini-batch into a loss (:data:`advcli.training.methods.METHODS`). Adversarial runs hold out a slice
of the training data to watch PGD accuracy (:mod:`advcli.training.guard`), and an interrupted run
returns a resume state (:mod:`advcli.training.checkpoint`) from which it continues exactly where it
stopped.

Each step (its attack and its weight update alike) runs in the configured precision; a run holds
its convolution weights channels-last while it trains (the fast layout); the guard's validation
attack is crafted in the same precision but classified in float32, as is the final test accuracy.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Optional

import torch
from torch import nn

from ..data.dataset import Dataset
from ..data.spec import load_dataset
from ..errors import AdvcliError
from ..io.resume import ResumeState
from ..models.build import build_model
from ..runtime.autocast import Autocast, autocast, set_channels_last
from ..runtime.coordination import main_decides
from ..runtime.device import resolve_device
from ..runtime.distributed import DistributedContext, agree, broadcast_buffers, exchanging
from ..runtime.precision import is_reduced, resolve_precision
from ..verification.verdicts import verify_batch
from .checkpoint import Generators, capture, restore
from .config import TrainConfig
from .guard import CollapseGuard, ValidationResult, pgd_validation, split_validation
from .methods import TrainingMethodSpec
from .monitor import TrainProgress, TrainResult, at_chance, chance_warning, collapse_warning
from .noise import NoiseKeys
from .optimizers import LR_SCHEDULES, OPTIMIZERS
from .parallel import (
    check_batches_split,
    check_sync_bn,
    correct_predictions,
    gathered_carry,
    local_batch,
    plain_batch_norm,
    sharded_accuracy,
    sharded_validation,
    split_carry,
    step_figures,
    training_module,
)

# The bounds certified training is validated by: CROWN over interval bounds of every layer (CROWN-IBP's
# bound, never looser than IBP's), as verified by `advcli verify --method crown --intermediate ibp`.
CERTIFIED_VALIDATION = {"method": "crown", "intermediate": "ibp"}

# validator(model, x_val, y_val, config) -> clean and robust validation accuracy
Validator = Callable[[nn.Module, torch.Tensor, torch.Tensor, TrainConfig], ValidationResult]


def robust_validation(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: TrainConfig, *,
                      indices: Optional[torch.Tensor] = None) -> ValidationResult:
    """The guard's measure: PGD-`val_iters` accuracy at the full eps (eps 0: clean accuracy), the
    attack crafted in the run's precision, every sample classified in float32; for certified
    training also certified accuracy at the full eps (:data:`CERTIFIED_VALIDATION` bounds, fp32).
    With `indices` (positions in the validation slice), random starts are keyed per sample."""
    precision = resolve_precision(config.precision, x.device, training=True)
    crafter = Autocast(model, precision, x.device.type) if is_reduced(precision) else None
    result = pgd_validation(model, x, y, eps=config.adversary.eps, iters=config.guard.val_iters,
                            clip=config.adversary.clip, seed=config.seed + 3, crafter=crafter, indices=indices)
    if not config.method_spec.certified:
        return result
    verdicts = verify_batch(model, x, y, config.adversary.eps, attacks=(), **CERTIFIED_VALIDATION)
    return replace(result, certified_accuracy=int(verdicts.verified.sum()) / max(1, len(x)))


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 1000) -> float:
    """Clean accuracy of `model` (in eval mode) on `x`, `y`, computed in batches."""
    return correct_predictions(model, x, y, batch_size=batch_size) / max(1, len(x))


@dataclass
class _Session:
    """A training run in progress: what it trains, on what, and how far it is."""

    config: TrainConfig
    dataset: Dataset
    device: torch.device
    spec: TrainingMethodSpec
    model: nn.Module
    optimizer: torch.optim.Optimizer
    generators: Generators
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    guard: Optional[CollapseGuard]
    channels_last: bool
    context: DistributedContext = field(default_factory=DistributedContext)
    trained: Optional[nn.Module] = None  # what the steps get: the model, or its DDP wrapper
    keyed_from: Optional[int] = None  # iteration from which a resumed run's draws became keyed
    step: int = 0
    order: Optional[torch.Tensor] = None
    carry: dict[str, torch.Tensor] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds_before: float = 0.0
    stalled_epoch: Optional[int] = None  # first epoch that ended with clean validation accuracy at chance

    @property
    def steps_per_epoch(self) -> int:
        return self.config.steps_per_epoch(len(self.x_train))

    @property
    def total(self) -> int:
        return self.steps_per_epoch * self.config.passes

    @property
    def keyed(self) -> bool:
        return self.config.keyed_noise

    @property
    def ramp_steps(self) -> int:
        return self.config.adversary.eps_ramp * (self.steps_per_epoch // self.config.batch_replays)


def _start(config: TrainConfig, dataset: Optional[Dataset], resume_from: Optional[ResumeState],
           context: DistributedContext) -> _Session:
    """Build the model, optimizer, generators and data split of a run (restored from `resume_from`);
    on several processes, the DDP wrapper the steps train through and keyed draws."""
    device = context.device if context.distributed else resolve_device(config.device)
    config = config.with_flat(precision=resolve_precision(config.precision, device, training=True))
    check_sync_bn(config.sync_bn, device)
    dataset = dataset if dataset is not None else load_dataset(config.data)
    torch.manual_seed(config.seed)
    model = build_model(config.arch, dataset.input_shape, dataset.num_classes).to(device)
    channels_last = set_channels_last(model)  # the fast layout for convolutions, in every precision
    optimizer = OPTIMIZERS.get(config.optimization.optimizer)(model.parameters(), config.optimization)
    generators = Generators(torch.Generator().manual_seed(config.seed),
                            torch.Generator(device=device).manual_seed(config.seed + 1))
    split = split_validation(len(dataset.x_train), config.validation_fraction, config.seed + 2)
    check_batches_split(len(split.train), config.optimization.batch_size, context)
    x_val, y_val = dataset.x_train[split.val].to(device), dataset.y_train[split.val].to(device)
    guard_settings = config.guard
    session = _Session(
        config=config, dataset=dataset, device=device, spec=config.method_spec, model=model, optimizer=optimizer,
        generators=generators, x_train=dataset.x_train[split.train].to(device),
        y_train=dataset.y_train[split.train].to(device), x_val=x_val, y_val=y_val,
        guard=CollapseGuard(guard_settings.collapse_drop, guard_settings.on_collapse) if len(x_val) else None,
        channels_last=channels_last, context=context,
    )
    if resume_from is not None:
        session.step, session.order, carry, session.history, session.seconds_before = restore(
            resume_from, config, dataset, model, optimizer, generators, session.guard, device)
        session.carry = split_carry(carry, context)
    if context.distributed and not config.keyed_noise:  # several processes always key their draws
        session.config = config.with_flat(keyed_noise=True)
        session.keyed_from = session.step or None
    session.trained = training_module(model, context, config.sync_bn)
    return session


def _update(session: _Session) -> tuple[dict[str, Any], float, int, bool]:
    """One optimizer update on the next mini-batch; returns its history row, loss, epoch index and
    whether it ended an epoch."""
    config, step, replays = session.config, session.step, session.config.batch_replays
    batch_size = config.optimization.batch_size
    epoch_index, within = divmod(step, session.steps_per_epoch)
    if within == 0 or session.order is None:
        session.order = torch.randperm(len(session.x_train), generator=session.generators.shuffle).to(session.device)
    batch = session.order[within // replays * batch_size:][:batch_size]
    settings = config.step_settings(step, session.ramp_steps)
    context, loss_weight = session.context, 1.0
    if session.keyed:  # this process's share of the batch, its draws keyed by the samples' indices
        share = local_batch(batch, batch_size, context)
        batch, loss_weight = share.indices, share.loss_weight
        settings = replace(settings, batch_size=share.rows, keys=NoiseKeys(batch, config.seed, step))
    xb, yb = session.x_train[batch], session.y_train[batch]
    schedule = LR_SCHEDULES.get(config.optimization.lr_schedule)
    lr = config.optimization.lr * schedule((step + 1) / session.total) * (session.guard.lr_scale if session.guard else 1.0)
    for group in session.optimizer.param_groups:
        group["lr"] = lr
    with autocast(session.device, config.precision):
        loss, logits = session.spec.step(session.trained, xb, yb, settings, session.generators.attack, session.carry)
    session.optimizer.zero_grad(set_to_none=True)
    if context.distributed:
        exchanging(context, "averaging gradients", (loss * loss_weight).backward)
    else:
        loss.backward()
    session.optimizer.step()
    session.step += 1
    if context.distributed:  # the global batch's figures, the same on every rank (a NaN included)
        loss_value, batch_accuracy = step_figures(float(loss.detach()), int((logits.argmax(1) == yb).sum()), len(yb),
                                                  context)
    else:
        loss_value, batch_accuracy = float(loss.detach()), float((logits.argmax(1) == yb).float().mean())
    if not math.isfinite(loss_value):
        raise AdvcliError(f"training diverged at iteration {session.step} (loss {loss_value}); lower `lr`", param="lr")
    row: dict[str, Any] = {
        "iteration": session.step, "epoch": epoch_index + 1, "loss": round(loss_value, 6),
        "batch_accuracy": round(batch_accuracy, 4),
        "lr": round(lr, 10), "eps": round(settings.eps, 10),
    }
    session.history.append(row)
    return row, loss_value, epoch_index, within + 1 == session.steps_per_epoch


def _validate(session: _Session, validator: Validator, row: dict[str, Any], progress: TrainProgress,
              epoch_index: int, epoch_end: bool) -> bool:
    """Validate, let the guard decide, and check for a run stuck at chance; returns whether to stop."""
    assert session.guard is not None
    result = sharded_validation(validator, session.model, session.x_val, session.y_val, session.config,
                                session.context, session.keyed)
    row["val_accuracy"] = round(result.accuracy, 6)
    row["val_robust_accuracy"] = round(result.robust_accuracy, 6)
    if result.certified_accuracy is not None:
        row["val_certified_accuracy"] = round(result.certified_accuracy, 6)
    progress.validation = result
    decision = session.guard.observe(result, epoch=epoch_index + 1, iteration=session.step, model=session.model,
                                     optimizer=session.optimizer)
    if decision.event is not None:
        progress.warning = collapse_warning(decision.event)
    if session.stalled_epoch is None and epoch_end and at_chance(result, epoch_index + 1, session.dataset.num_classes):
        session.stalled_epoch = epoch_index + 1
        progress.warning = "; ".join(filter(None, (progress.warning, chance_warning(result, session.stalled_epoch))))
    return decision.stop


def train_model(
    config: TrainConfig,
    *,
    dataset: Optional[Dataset] = None,
    on_progress: Optional[Callable[[TrainProgress], None]] = None,
    should_stop: Optional[Callable[[], bool]] = None,
    resume_from: Optional[ResumeState] = None,
    validator: Validator = robust_validation,
    context: Optional[DistributedContext] = None,
    on_epoch_end: Optional[Callable[[TrainResult], None]] = None,
) -> TrainResult:
    """Train a model as `config` says. `should_stop` is polled after every iteration; a run it
    interrupts returns the model so far with a resume state (`resume_from` continues one).

    With a validation split (adversarial methods: 10% of the training split by default), every
    epoch (and every `val_every` iterations) ends with `validator`; the guard keeps the weights with
    the best robust validation accuracy and reacts to a collapse as `on_collapse` says.

    Under torchrun, pass every process's `context` (:func:`advcli.runtime.init_from_environment`):
    the processes share each global batch, agree on every decision (guard, stop requests, a diverged
    loss), and only rank 0 reports progress and gets the resume state. `on_epoch_end` (given on
    every rank: the state is gathered from all of them) is called on rank 0 after every epoch but
    the last with the run so far and its resume state, as an interrupted run.
    """
    config = config.resolved()
    config.validate()
    context = context or DistributedContext()
    session = _start(config, dataset, resume_from, context)
    interrupted = stopped_by_guard = False
    started = time.perf_counter()
    session.model.train()
    assert session.trained is not None
    session.trained.train()
    val_every = session.config.guard.val_every
    while session.step < session.total:
        row, loss_value, epoch_index, epoch_end = _update(session)
        progress = TrainProgress(epoch_index + 1, session.config.passes, session.step, session.total, loss_value)
        if epoch_end:
            recent = session.history[-session.steps_per_epoch:]
            progress.epoch_loss = sum(r["loss"] for r in recent) / session.steps_per_epoch
        if session.guard is not None and (epoch_end or (val_every and session.step % val_every == 0)):
            stopped_by_guard = _validate(session, validator, row, progress, epoch_index, epoch_end)
        if on_progress is not None and context.is_main:
            on_progress(progress)
        if stopped_by_guard:
            break
        if should_stop is not None and agree(should_stop(), context):
            interrupted = session.step < session.total
            break
        if epoch_end and on_epoch_end is not None and session.step < session.total:
            snapshot = _snapshot(session, session.seconds_before + time.perf_counter() - started)
            main_decides(lambda: on_epoch_end(snapshot), context)
    return _finish(session, interrupted, stopped_by_guard, session.seconds_before + time.perf_counter() - started)


def _resume_state(session: _Session, seconds: float) -> Optional[ResumeState]:
    """The run's resume state as it stands (on rank 0; None on the other ranks)."""
    broadcast_buffers(session.model, session.context)
    carry = gathered_carry(session.carry, session.context)
    if carry is None:
        return None
    return capture(session.config, session.dataset, session.model, session.optimizer, session.generators, session.guard,
                   carry, session.order, session.step, session.total, session.history, seconds)


def _snapshot(session: _Session, seconds: float) -> Optional[TrainResult]:
    """The run so far as an interrupted run (rank 0; None on the others): the weights as they are,
    the resume state, and only the metrics measured so far."""
    state = _resume_state(session, seconds)
    if state is None:
        return None
    guard = session.guard
    guard_record = None if guard is None else _guard_summary(session.config, guard, len(session.x_val), "last", False)
    metrics = {**_validation_metrics(guard), "epochs_completed": session.step // session.steps_per_epoch,
               "iterations": session.step, "interrupted": True, "train_seconds": round(seconds, 2),
               "device": str(session.device), "precision": session.config.precision}
    return TrainResult(session.model, session.config, session.dataset, list(session.history), metrics, True,
                       guard_record, state, distributed=_distributed_record(session))


def _validation_metrics(guard: Optional[CollapseGuard]) -> dict[str, Any]:
    return {"val_accuracy": None if guard is None else guard.best_accuracy,
            "val_robust_accuracy": None if guard is None else guard.best_robust_accuracy}


def _distributed_record(session: _Session) -> Optional[dict[str, Any]]:
    """The ``distributed`` entry of model.json: how many processes trained, over what (None: one)."""
    context = session.context
    if not context.distributed and session.keyed_from is None:
        return None
    record: dict[str, Any] = {"world_size": context.world_size, "backend": context.backend,
                              "global_batch_size": session.config.optimization.batch_size}
    if session.keyed_from is not None:
        record["keyed_noise_from_iteration"] = session.keyed_from
    return record


def _finish(session: _Session, interrupted: bool, stopped_by_guard: bool, seconds: float) -> TrainResult:
    """The kept model (the guard's best where it has one), its resume state when interrupted, and the
    run's metrics."""
    model, guard, config, context = session.model, session.guard, session.config, session.context
    if context.distributed and config.sync_bn:
        plain_batch_norm(model)
    if session.channels_last:
        set_channels_last(model, False)
    broadcast_buffers(model, context)  # rank 0's BatchNorm statistics, for the test and the saved weights
    resume_state = _resume_state(session, seconds) if interrupted else None
    kept = "last"
    if guard is not None and guard.best_model is not None and not guard.holds(model):
        model.load_state_dict(guard.best_model)
        kept = "best"
    model.eval()
    guard_record = None if guard is None else _guard_summary(config, guard, len(session.x_val), kept, stopped_by_guard)
    x_test, y_test = session.dataset.x_test, session.dataset.y_test
    test_accuracy = sharded_accuracy(model, x_test, y_test, context) if context.distributed else accuracy(
        model, x_test, y_test)
    metrics = {
        "clean_test_accuracy": round(test_accuracy, 6),
        **_validation_metrics(guard),
        **({"val_certified_accuracy": None if guard is None else guard.best_certified_accuracy}
           if config.method_spec.certified else {}),
        "final_loss": session.history[-1]["loss"] if session.history else None,
        "epochs_completed": session.step // session.steps_per_epoch,
        "iterations": session.step,
        "interrupted": interrupted,
        "stopped_by_guard": stopped_by_guard,
        "at_chance_epoch": session.stalled_epoch,
        "kept": kept,
        "train_seconds": round(seconds, 2),
        "device": str(session.device),
        "precision": config.precision,
    }
    return TrainResult(model, config, session.dataset, session.history, metrics, interrupted, guard_record, resume_state,
                       distributed=_distributed_record(session))


def _guard_summary(config: TrainConfig, guard: CollapseGuard, samples: int, kept: str, stopped: bool) -> dict[str, Any]:
    """The ``guard`` entry of model.json: how validation was done, what it saw, which model was kept."""
    settings, eps = config.guard, config.adversary.eps
    certified = config.method_spec.certified
    measure = (f"certified accuracy ({CERTIFIED_VALIDATION['method']} bounds over "
               f"{CERTIFIED_VALIDATION['intermediate']} intermediate bounds)" if certified
               else f"PGD-{settings.val_iters} accuracy")
    return {
        "selection": f"weights with the best {measure} on the validation slice of the training split",
        "validation": {
            "split": "train", "fraction": config.validation_fraction, "samples": samples,
            "attack": "pgd", "eps": eps, "iters": settings.val_iters,
            "alpha": 2.5 * eps / settings.val_iters, "init": "random",
            "every": settings.val_every or "epoch",
            **({"certified": {**CERTIFIED_VALIDATION, "eps": eps}} if certified else {}),
        },
        "collapse_drop": settings.collapse_drop,
        "on_collapse": settings.on_collapse,
        **guard.record(),
        "kept": kept,
        "stopped": stopped,
    }
