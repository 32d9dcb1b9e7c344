"""What a training run tells its caller as it goes (progress after every update, and warnings when
robust validation accuracy collapses or clean validation accuracy sits at chance level) and what it
returns at the end."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from torch import nn

from ..data.dataset import Dataset
from ..io.resume import ResumeState
from .config import TrainConfig
from .guard import ValidationResult


@dataclass
class TrainProgress:
    """A snapshot handed to the progress callback after every iteration.

    `validation` and `epoch_loss` are set after an epoch (and every `val_every` iterations for
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
    resume_state: Optional[ResumeState] = None  # of an interrupted run (rank 0's, on several processes)
    resumed_from: Optional[dict[str, Any]] = None
    distributed: Optional[dict[str, Any]] = None  # how several processes trained it (None: one process)


# Clean validation accuracy at most this multiple of chance (1 / classes), from this epoch on,
# means the model has not started to learn: large-eps adversarial training from scratch can sit
# at a constant prediction for the whole run, with nothing in the loss to say so but ln(classes).
AT_CHANCE_FACTOR = 1.5
AT_CHANCE_FROM_EPOCH = 2


def at_chance(result: ValidationResult, epoch: int, num_classes: int) -> bool:
    return epoch >= AT_CHANCE_FROM_EPOCH and result.accuracy <= AT_CHANCE_FACTOR / num_classes


def chance_warning(result: ValidationResult, epoch: int) -> str:
    return (f"clean validation accuracy is {result.accuracy:.4f} after {epoch} epochs, at chance level: the model "
            "is not learning (at a large eps, ramp it up with `eps_ramp`, or lower `lr`)")


def collapse_warning(event: dict[str, Any]) -> str:
    kind = "certified" if "val_certified_accuracy" in event else "robust"
    return (f"{kind} validation accuracy collapsed to {event[f'val_{kind}_accuracy']:.4f} "
            f"(best {event[f'best_val_{kind}_accuracy']:.4f} at epoch {event['best_epoch']}); {event['action']}")
