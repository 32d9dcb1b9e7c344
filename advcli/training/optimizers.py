"""Optimizers and learning-rate schedules (registries; torch is imported only to build an optimizer)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from ..registry import Registry

if TYPE_CHECKING:
    import torch

    from .config import Optimization


def sgd(params: Any, settings: "Optimization") -> "torch.optim.Optimizer":
    """SGD with momentum, the reference's; `momentum` applies to it only."""
    import torch

    return torch.optim.SGD(params, lr=settings.lr, momentum=settings.momentum)


def adam(params: Any, settings: "Optimization") -> "torch.optim.Optimizer":
    import torch

    return torch.optim.Adam(params, lr=settings.lr)


OPTIMIZERS: Registry[Callable[[Any, "Optimization"], "torch.optim.Optimizer"]] = Registry(
    "optimizer", param="optimizer", order=("sgd", "adam"), entries={"sgd": sgd, "adam": adam})


def constant_lr(progress: float) -> float:
    """The reference's fixed learning rate."""
    return 1.0


def cyclic_lr(progress: float) -> float:
    """One triangular cycle: from 0 up to `lr` at 2/5 of training, then down to 0 (Wong et al., 2020)."""
    return progress / 0.4 if progress <= 0.4 else (1.0 - progress) / 0.6


def multistep_lr(progress: float) -> float:
    """`lr`, times 0.1 after half of training and again after three quarters."""
    return 0.1 ** ((progress > 0.5) + (progress > 0.75))


# Factor of `lr` for an update, given the share of training done once it is applied (0, 1].
LR_SCHEDULES: Registry[Callable[[float], float]] = Registry(
    "lr schedule", param="lr_schedule", order=("constant", "cyclic", "multistep"),
    entries={"constant": constant_lr, "cyclic": cyclic_lr, "multistep": multistep_lr})
