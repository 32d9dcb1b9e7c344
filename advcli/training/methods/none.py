"""``none``: plain training on clean inputs (the reference example's first model)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import StepSettings
from . import METHODS, TrainingMethodSpec


def standard_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, settings: StepSettings,
                  generator: torch.Generator, carry: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy on the clean mini-batch."""
    logits = model(x).float()
    return F.cross_entropy(logits, y), logits


METHODS.register("none", TrainingMethodSpec(standard_step, "plain training on clean inputs", adversarial=False))
