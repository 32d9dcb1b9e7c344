"""``free``: free adversarial training (Shafahi et al., 2019)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import StepSettings
from . import METHODS, TrainingMethodSpec


def free_step(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, settings: StepSettings,
    generator: torch.Generator, carry: dict[str, torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Free adversarial training (Shafahi et al., 2019): one perturbation, carried over from
    update to update and from mini-batch to mini-batch, moved by a signed step of alpha
    (default eps) along the input gradient of the previous update and kept in the eps-ball.

    The loop's own backward pass fills that input gradient (``carry["delta"].grad``), so each
    replay costs one forward and one backward pass. With `clip`, ``x + delta`` stays in [0, 1].
    """
    rows = max(settings.batch_size, x.shape[0])
    delta = carry.get("delta")
    with torch.no_grad():
        if delta is None or tuple(delta.shape[1:]) != tuple(x.shape[1:]) or delta.shape[0] < rows:
            delta = torch.zeros((rows, *x.shape[1:]), device=x.device, dtype=x.dtype)
        else:
            grad = delta.grad
            delta = delta.detach().clone()
            if grad is not None:
                delta += settings.alpha * grad.sign()
            delta.clamp_(-settings.eps, settings.eps)
        if settings.clip:
            used = delta[:x.shape[0]]
            used.copy_(torch.maximum(torch.minimum(used, 1 - x), -x))
    delta.requires_grad_(True)
    carry["delta"] = delta
    x_adv = x + delta[:x.shape[0]]
    logits = model(x_adv.clamp(0, 1) if settings.clip else x_adv).float()
    return F.cross_entropy(logits, y), logits


METHODS.register("free", TrainingMethodSpec(
    free_step, "each mini-batch replayed m times, perturbation carried over (Shafahi et al., 2019)",
    default_alpha=lambda eps, iters: eps, default_replays=4,
))
