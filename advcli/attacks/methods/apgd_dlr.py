"""``apgd-dlr``: Auto-PGD (Croce & Hein, 2020) on the DLR loss."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..config import AttackSpec
from ..core import renamed_arguments
from . import ATTACKS
from ._apgd import apgd


@renamed_arguments
def apgd_dlr(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    alpha: Optional[float] = None,
    iters: int = 100,
    init: str = "random",
    restarts: int = 1,
    clip: bool = True,
    generator: Optional[torch.Generator] = None,
    norm: str = "linf",
    target: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """APGD on the DLR loss (needs 3 classes; the targeted form needs 4)."""
    return apgd(model, x, y, eps=eps, loss="dlr", alpha=alpha, iters=iters, init=init, restarts=restarts,
                clip=clip, generator=generator, norm=norm, target=target)


# APGD starts with step 2·eps (Croce & Hein, 2020).
ATTACKS.register("apgd-dlr", AttackSpec(
    apgd_dlr, kind="iterative", defaults=lambda eps, iters, norm: {"alpha": 2 * eps, "iters": 100, "init": "random"},
))
