"""``fgsm``: the fast gradient sign method (Goodfellow et al., 2015)."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ...errors import AttackError
from ..config import AttackSpec
from ..core import renamed_arguments
from . import ATTACKS
from .pgd import pgd


@renamed_arguments
def fgsm(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    alpha: Optional[float] = None,
    iters: int = 1,
    init: str = "zero",
    restarts: int = 1,
    clip: bool = True,
    generator: Optional[torch.Generator] = None,
    norm: str = "linf",
    target: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Fast gradient sign method (Goodfellow et al., 2015): one step of size `eps` (or `alpha`);
    under L2, one step of that length along the normalised gradient."""
    if iters != 1:
        raise AttackError(f"fgsm takes exactly one step, got `iters`={iters}; use bim or pgd for more", param="iters")
    return pgd(model, x, y, eps=eps, alpha=eps if alpha is None else alpha, iters=1, init=init, restarts=restarts,
               clip=clip, generator=generator, norm=norm, target=target)


ATTACKS.register("fgsm", AttackSpec(
    fgsm, kind="single-step", fixed_iters=1,
    defaults=lambda eps, iters, norm: {"alpha": eps, "iters": 1, "init": "zero"},
))
