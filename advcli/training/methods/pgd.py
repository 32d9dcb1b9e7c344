"""``pgd``: PGD-k adversarial training from a random start (Madry et al., 2018)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...attacks.core import perturb
from ...threat import ThreatModel
from ..config import StepSettings
from ..noise import keyed_start
from . import METHODS, TrainingMethodSpec


def pgd_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, settings: StepSettings,
             generator: torch.Generator, carry: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy on `iters` signed-gradient steps projected on the eps-ball (Madry et al., 2018);
    FGSM-RS (Wong et al., 2020) is its one-step case with alpha 1.25·eps."""
    x_adv = perturb(model, x, y, ThreatModel(settings.eps, "linf", settings.clip), alpha=settings.alpha,
                    iters=settings.iters, init=settings.init, generator=generator, start=keyed_start(x, settings))
    logits = model(x_adv).float()
    return F.cross_entropy(logits, y), logits


METHODS.register("pgd", TrainingMethodSpec(
    pgd_step, "PGD-k from a random start, step 2.5·eps/k (Madry et al., 2018)",
    default_alpha=lambda eps, iters: 2.5 * eps / iters, default_iters=10, multi_step=True, inits=("random", "zero"),
))
