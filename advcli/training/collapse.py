"""What to do when robust validation accuracy collapses (a registry; handlers act on the guard)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from ..registry import Registry

if TYPE_CHECKING:
    import torch
    from torch import nn

    from .guard import CollapseGuard

# A handler returns True to end training.
CollapseHandler = Callable[["CollapseGuard", "nn.Module", "torch.optim.Optimizer"], bool]


def stop_training(guard: "CollapseGuard", model: "nn.Module", optimizer: "torch.optim.Optimizer") -> bool:
    """End training; the best weights seen are the ones kept."""
    return True


def roll_back(guard: "CollapseGuard", model: "nn.Module", optimizer: "torch.optim.Optimizer") -> bool:
    """Restore the best weights and optimizer state, halve the learning rate and go on."""
    guard.restore_best(model, optimizer)
    guard.lr_scale *= 0.5
    return False


def record_only(guard: "CollapseGuard", model: "nn.Module", optimizer: "torch.optim.Optimizer") -> bool:
    """Only record the event; the best weights seen are still the ones kept."""
    return False


ON_COLLAPSE: Registry[CollapseHandler] = Registry(
    "on-collapse action", param="on_collapse", order=("stop", "rollback", "continue"),
    entries={"stop": stop_training, "rollback": roll_back, "continue": record_only})
