"""Held-out validation and the catastrophic-overfitting guard of adversarial training.

Single-step adversarial training can collapse ("catastrophic overfitting", Wong et al., 2020):
accuracy against the training attack stays high while PGD accuracy falls to near zero, with no
sign of it in the loss. The guard measures PGD accuracy on a seeded, held-out slice of the
*training* split (never the test split), keeps the weights that scored best, and when the score
drops by more than a set margin from the best it stops, rolls back or only records the event.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import nn

from ..attacks.core import perturb
from ..attacks.methods.pgd import pgd
from ..errors import AdvcliError
from ..runtime.execution import attack_mode, predict
from ..runtime.sharding import sample_uniform
from ..threat import ThreatModel
from .collapse import ON_COLLAPSE

# Keeps the validation's keyed random starts apart from those of the training steps.
VALIDATION_STREAM = 2


@dataclass(frozen=True)
class ValidationSplit:
    """Row indices into the training split: those trained on and those held out (both sorted)."""

    train: torch.Tensor
    val: torch.Tensor


def split_validation(count: int, fraction: float, seed: int) -> ValidationSplit:
    """Hold out round(count·fraction) seeded random training rows for validation."""
    if not 0 <= fraction < 1:
        raise AdvcliError(f"`val_split` (validation split) must be in [0, 1), got {fraction}", param="val_split")
    held_out = round(count * fraction)
    if fraction > 0 and held_out < 1:
        raise AdvcliError(f"validation split {fraction} of {count} training samples holds out none; raise `val_split`",
                          param="val_split")
    if count - held_out < 1:
        raise AdvcliError(f"validation split {fraction} leaves no training samples", param="val_split")
    if held_out == 0:
        return ValidationSplit(torch.arange(count), torch.arange(0))
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    return ValidationSplit(order[held_out:].sort().values, order[:held_out].sort().values)


@dataclass(frozen=True)
class ValidationResult:
    """Clean and robust (PGD) accuracy on the validation slice, and for certified training its
    certified accuracy; the guard keeps the weights with the best :attr:`score`."""

    accuracy: float
    robust_accuracy: float
    certified_accuracy: Optional[float] = None

    @property
    def score(self) -> float:
        """What the guard selects by: certified accuracy where measured, else robust accuracy."""
        return self.robust_accuracy if self.certified_accuracy is None else self.certified_accuracy


def pgd_validation(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    iters: int,
    clip: bool,
    seed: int,
    batch_size: int = 500,
    crafter: Optional[nn.Module] = None,
    indices: Optional[torch.Tensor] = None,
) -> ValidationResult:
    """Clean and PGD-`iters` accuracy (alpha 2.5·eps/iters, random start) of `model`.

    The random starts are drawn from a generator seeded afresh on every call, so successive
    validations of one run are comparable and leave no random state behind; with `indices` (the
    samples' positions in the validation slice) each start is keyed by (seed, position) instead,
    the same on any number of processes. PGD runs on `crafter` when given (a reduced-precision
    wrapper of `model`); `model` classifies.
    """
    generator = torch.Generator(device=x.device).manual_seed(seed)
    clean_correct = robust_correct = 0
    with attack_mode(model):
        for start in range(0, len(x), batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            clean = predict(model, xb) == yb
            attacker = model if crafter is None else crafter
            if indices is None:
                x_adv = pgd(attacker, xb, yb, eps=eps, iters=iters, init="random", clip=clip, generator=generator)
            else:
                x_adv = _keyed_pgd(attacker, xb, yb, indices[start:start + batch_size], eps=eps, iters=iters,
                                   clip=clip, seed=seed)
            robust = clean & (predict(model, x_adv) == yb)
            clean_correct += int(clean.sum())
            robust_correct += int(robust.sum())
    count = max(1, len(x))
    return ValidationResult(clean_correct / count, robust_correct / count)


def _keyed_pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, indices: torch.Tensor, *, eps: float, iters: int,
               clip: bool, seed: int) -> torch.Tensor:
    """:func:`pgd` (early stop, one start) from random starts keyed by the samples' `indices`."""
    if eps == 0 or len(x) == 0:
        return x.detach().clone()
    noise = sample_uniform(indices, x.shape[1:], seed=seed, step=0, stream=VALIDATION_STREAM, dtype=x.dtype,
                           device=x.device)
    start = x + eps * (2 * noise - 1)
    return perturb(model, x, y, ThreatModel(eps, "linf", clip), alpha=2.5 * eps / iters, iters=iters, init="random",
                   early_stop=True, start=start.clamp(0, 1) if clip else start)


def _state_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


@dataclass
class GuardDecision:
    """The outcome of one validation: a collapse event (if any) and whether to stop."""

    event: Optional[dict[str, Any]] = None
    stop: bool = False


class CollapseGuard:
    """Tracks robust validation accuracy, keeps the best weights and reacts to a collapse.

    A collapse is a robust validation accuracy more than `drop` (absolute) below the best so
    far, as in the early stopping of Wong et al. (2020). One event is recorded per collapse; a
    rollback ends it (the best weights are back), a recovery above the threshold too.
    """

    def __init__(self, drop: float, action: str) -> None:
        ON_COLLAPSE.check(action)
        self.drop = drop
        self.action = action
        self.best_accuracy: Optional[float] = None
        self.best_robust_accuracy: Optional[float] = None
        self.best_certified_accuracy: Optional[float] = None
        self.best_score: Optional[float] = None
        self.best_epoch: Optional[int] = None
        self.best_iteration: Optional[int] = None
        self.events: list[dict[str, Any]] = []
        self.lr_scale = 1.0
        self.collapsed = False
        self.best_model: Optional[dict[str, torch.Tensor]] = None
        self.best_optimizer: Optional[dict[str, Any]] = None

    def observe(
        self, result: ValidationResult, *, epoch: int, iteration: int, model: nn.Module, optimizer: torch.optim.Optimizer
    ) -> GuardDecision:
        """Take one validation result into account; snapshot on a new best, act on a collapse (both
        judged by the result's :attr:`~ValidationResult.score`)."""
        score = result.score
        if self.best_score is None or score > self.best_score:
            self.best_accuracy, self.best_robust_accuracy = result.accuracy, result.robust_accuracy
            self.best_certified_accuracy, self.best_score = result.certified_accuracy, score
            self.best_epoch, self.best_iteration = epoch, iteration
            self.best_model = _state_copy(model)
            self.best_optimizer = copy.deepcopy(optimizer.state_dict())
            self.collapsed = False
            return GuardDecision()
        if self.best_score - score <= self.drop:
            self.collapsed = False
            return GuardDecision()
        if self.collapsed:
            return GuardDecision()
        self.collapsed = True
        event = {
            "epoch": epoch,
            "iteration": iteration,
            "val_robust_accuracy": result.robust_accuracy,
            "best_val_robust_accuracy": self.best_robust_accuracy,
            "best_epoch": self.best_epoch,
            "action": self.action,
        }
        if result.certified_accuracy is not None:
            event.update(val_certified_accuracy=result.certified_accuracy,
                         best_val_certified_accuracy=self.best_certified_accuracy)
        stop = ON_COLLAPSE.get(self.action)(self, model, optimizer)
        if self.lr_scale != 1.0:
            event["lr_scale"] = self.lr_scale
        self.events.append(event)
        return GuardDecision(event, stop)

    def restore_best(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Put the best weights and optimizer state back."""
        if self.best_model is None or self.best_optimizer is None:
            return
        model.load_state_dict(self.best_model)
        optimizer.load_state_dict(copy.deepcopy(self.best_optimizer))
        self.collapsed = False

    def holds(self, model: nn.Module) -> bool:
        """Whether `model` currently has exactly the best weights."""
        if self.best_model is None:
            return False
        current = model.state_dict()
        return all(torch.equal(current[key], value) for key, value in self.best_model.items())

    def record(self) -> dict[str, Any]:
        """The JSON-able part of the guard's state (the snapshots are tensors, saved apart)."""
        record = {
            "best_epoch": self.best_epoch,
            "best_iteration": self.best_iteration,
            "best_val_accuracy": self.best_accuracy,
            "best_val_robust_accuracy": self.best_robust_accuracy,
            "events": [dict(event) for event in self.events],
            "lr_scale": self.lr_scale,
            "collapsed": self.collapsed,
        }
        if self.best_certified_accuracy is not None:
            record["best_val_certified_accuracy"] = self.best_certified_accuracy
        return record

    def load_record(self, record: dict[str, Any]) -> None:
        """Restore what :meth:`record` returned (snapshots are restored separately)."""
        self.best_epoch = record["best_epoch"]
        self.best_iteration = record["best_iteration"]
        self.best_accuracy = record["best_val_accuracy"]
        self.best_robust_accuracy = record["best_val_robust_accuracy"]
        self.best_certified_accuracy = record.get("best_val_certified_accuracy")
        self.best_score = (self.best_robust_accuracy if self.best_certified_accuracy is None
                           else self.best_certified_accuracy)
        self.events = [dict(event) for event in record["events"]]
        self.lr_scale = record["lr_scale"]
        self.collapsed = record["collapsed"]
