"""``trades``: clean loss plus beta·KL to the logits of a PGD adversary (Zhang et al., 2019)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...runtime.execution import attack_mode
from ...threat import ThreatModel
from ..config import StepSettings
from ..noise import normal_noise
from . import METHODS, TrainingMethodSpec

# TRADES starts its adversary this close to the clean input (Zhang et al., 2019).
TRADES_START_STD = 0.001


def trades_step(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, settings: StepSettings,
    generator: torch.Generator, carry: dict[str, torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """TRADES (Zhang et al., 2019): clean cross-entropy + beta·KL(clean ‖ adversarial) logits.

    The adversary maximises the KL term with `iters` signed steps projected on the eps-ball,
    from a Gaussian start of std 0.001, with the model in eval mode as in the paper's code.
    """
    threat = ThreatModel(settings.eps, "linf", settings.clip)
    with attack_mode(model):
        with torch.no_grad():
            clean_probs = F.softmax(model(x).float(), dim=1)
        noise = normal_noise(x, settings, generator)
        x_adv = x + TRADES_START_STD * noise
        x_adv = x_adv.clamp(0, 1) if settings.clip else x_adv
        for _ in range(settings.iters):
            x_adv = x_adv.detach().requires_grad_(True)
            with torch.enable_grad():
                divergence = F.kl_div(F.log_softmax(model(x_adv).float(), dim=1), clean_probs, reduction="sum")
                (grad,) = torch.autograd.grad(divergence, x_adv)
            x_adv = threat.step(x, x_adv.detach(), grad, settings.alpha)
    logits = model(x).float()
    adversarial = F.kl_div(F.log_softmax(model(x_adv).float(), dim=1), F.softmax(logits, dim=1), reduction="batchmean")
    return F.cross_entropy(logits, y) + settings.beta * adversarial, logits


METHODS.register("trades", TrainingMethodSpec(
    trades_step, "clean loss + beta·KL to PGD-k logits (Zhang et al., 2019)",
    default_alpha=lambda eps, iters: 2.5 * eps / iters, default_iters=10, multi_step=True,
))
