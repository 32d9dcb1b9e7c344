"""``ibp``: certified training on interval bounds (Gowal et al., 2018)."""

from __future__ import annotations

import torch
from torch import nn

from ...verification.losses import certified_loss
from ..config import StepSettings
from . import METHODS, TrainingMethodSpec

# kappa, the weight of the clean loss, goes from KAPPA_START to KAPPA_END during the eps ramp.
KAPPA_START, KAPPA_END = 1.0, 0.5


def kappa(settings: StepSettings) -> float:
    """The clean loss's weight at this update: 1 at the start of the eps ramp, 0.5 from its end on."""
    return KAPPA_START + (KAPPA_END - KAPPA_START) * settings.ramp_progress


def ibp_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, settings: StepSettings,
             generator: torch.Generator, carry: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``kappa * CE(clean) + (1 - kappa) * CE(-m)``, m the interval bounds of the margins at this
    update's eps (Gowal et al., 2018)."""
    result = certified_loss(model, x, y, settings.eps, kappa=kappa(settings), beta=0.0)
    return result.loss, result.clean_logits


METHODS.register("ibp", TrainingMethodSpec(
    ibp_step, "interval bounds, kappa 1 -> 0.5 over the eps ramp (Gowal et al., 2018)", certified=True,
))
