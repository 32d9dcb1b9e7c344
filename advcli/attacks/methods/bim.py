"""``bim``: the basic iterative method (Kurakin et al., 2017), the reference example's attack."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..config import AttackSpec
from ..core import renamed_arguments
from . import ATTACKS
from .pgd import pgd


@renamed_arguments
def bim(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    alpha: float = 0.01,
    iters: int = 20,
    init: str = "zero",
    restarts: int = 1,
    clip: bool = True,
    generator: Optional[torch.Generator] = None,
    norm: str = "linf",
    target: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Basic iterative method (Kurakin et al., 2017): PGD from a zero start by default, the
    reference's alpha 0.01 for 20 iterations."""
    return pgd(model, x, y, eps=eps, alpha=alpha, iters=iters, init=init, restarts=restarts, clip=clip,
               generator=generator, norm=norm, target=target)


# The reference example's BIM: alpha 0.01 for 20 iterations from a zero start (L2: 2.5·eps/iters).
ATTACKS.register("bim", AttackSpec(
    bim, kind="iterative",
    defaults=lambda eps, iters, norm: {"alpha": 0.01 if norm == "linf" else 2.5 * eps / (iters or 20),
                                       "iters": 20, "init": "zero"},
))
