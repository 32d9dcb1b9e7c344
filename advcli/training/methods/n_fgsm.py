"""``n-fgsm``: FGSM from large noise without projection (de Jorge et al., 2022)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...attacks.core import input_gradient
from ..config import StepSettings
from ..noise import linf_noise
from . import METHODS, TrainingMethodSpec

# N-FGSM draws its noise from a box this many eps wide on each side (de Jorge et al., 2022).
NFGSM_NOISE = 2.0


def n_fgsm_step(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, settings: StepSettings,
    generator: torch.Generator, carry: dict[str, torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """N-FGSM (de Jorge et al., 2022): uniform noise of radius 2·eps, then one signed step of
    alpha (default eps), *not* projected back on the eps-ball: |delta|inf <= 2·eps + alpha."""
    x_noise = x + linf_noise(x, NFGSM_NOISE * settings.eps, settings, generator)
    x_noise = x_noise.clamp(0, 1) if settings.clip else x_noise
    grad, _ = input_gradient(model, x_noise, y)
    x_adv = x_noise + settings.alpha * grad.sign()
    logits = model(x_adv.clamp(0, 1) if settings.clip else x_adv).float()
    return F.cross_entropy(logits, y), logits


METHODS.register("n-fgsm", TrainingMethodSpec(
    n_fgsm_step, "FGSM from noise of radius 2·eps, step eps, no projection (de Jorge et al., 2022)",
    default_alpha=lambda eps, iters: eps,
))
