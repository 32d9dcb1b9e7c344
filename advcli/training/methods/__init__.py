"""Training methods: one file per method, each registering a :class:`TrainingMethodSpec` under its
file's name (``fgsm_rs.py`` is ``fgsm-rs``).

A method is a step function that turns a mini-batch into a loss (the loop does the backward pass and
the update) plus the defaults it brings. To add one, add ``advcli/training/methods/<name>.py`` and
call ``METHODS.register("<name>", TrainingMethodSpec(...))``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from ...registry import Registry

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ..config import StepSettings

# A step turns a mini-batch into (loss, logits). `carry` is the method's own state between steps
# (kept by the loop and saved with a resume state); `settings` holds this step's eps and alpha.
# Under several processes a step sees this process's share of the global batch (its rows strided
# out of it), `settings.batch_size` is that share of a full batch, and carried tensors are indexed by
# row in their first dimension (the loop gathers and splits them so). Random draws go through
# advcli.training.noise, which keys them per sample when `settings.keys` is set.
StepFn = Callable[
    ["nn.Module", "torch.Tensor", "torch.Tensor", "StepSettings", "torch.Generator", "dict[str, torch.Tensor]"],
    "tuple[torch.Tensor, torch.Tensor]",
]


def no_step(eps: float, iters: int) -> float:
    """The step size of a method without an attack."""
    return 0.0


@dataclass(frozen=True)
class TrainingMethodSpec:
    """A training method: its step function and the defaults it brings."""

    step: StepFn
    summary: str
    adversarial: bool = True
    default_alpha: Callable[[float, int], float] = no_step  # (eps, iters) -> alpha
    default_iters: int = 1
    multi_step: bool = False  # accepts iters > 1
    inits: tuple[str, ...] = ()  # starting points it offers; the first is the default
    default_replays: int = 1
    certified: bool = False  # trains on certified bounds (no attack); validated by certified accuracy too


METHODS: Registry[TrainingMethodSpec] = Registry("method", param="method", package=__name__,
                                                 order=("none", "fgsm-rs", "pgd", "trades", "free", "n-fgsm", "ibp",
                                                        "crown-ibp"))
