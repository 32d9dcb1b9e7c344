"""``crown-ibp``: certified training on CROWN-IBP bounds (Zhang et al., 2020)."""

from __future__ import annotations

import torch
from torch import nn

from ...verification.losses import certified_loss
from ..config import StepSettings
from . import METHODS, TrainingMethodSpec
from .ibp import kappa


def beta(settings: StepSettings) -> float:
    """The CROWN-IBP bound's weight at this update: 1 at the start of the eps ramp, 0 (pure IBP) from its end on."""
    return 1.0 - settings.ramp_progress


def crown_ibp_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, settings: StepSettings,
                   generator: torch.Generator, carry: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``kappa * CE(clean) + (1 - kappa) * CE(-m)`` with ``m = beta * m_CROWN-IBP + (1 - beta) * m_IBP``
    at this update's eps (Zhang et al., 2020); kappa as in :mod:`.ibp`."""
    result = certified_loss(model, x, y, settings.eps, kappa=kappa(settings), beta=beta(settings))
    return result.loss, result.clean_logits


METHODS.register("crown-ibp", TrainingMethodSpec(
    crown_ibp_step, "CROWN-IBP bounds, beta 1 -> 0 and kappa 1 -> 0.5 over the eps ramp (Zhang et al., 2020)",
    certified=True,
))
