"""``auto``: an AutoAttack-style sequence (Croce & Hein, 2020).

APGD-CE, then targeted APGD-DLR towards each of the clean input's top-k most likely wrong classes
(k = 3, fewer when the model has fewer classes; targeted cross-entropy below 4 classes), then
Square with 1,000 queries, all in the same norm (L-inf or L2): a cheaper cut of AutoAttack's
standard set (``autoattack``: 9 targets, FAB-T, 5,000 queries). Each member attacks only the
samples that every member before it failed on.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..config import AttackConfig, AttackSpec, resolve_attack
from ..core import renamed_arguments
from ..sequence import run_composite
from . import ATTACKS

AUTO_TARGETS = 3


def auto_members(config: AttackConfig, num_classes: int) -> list[AttackConfig]:
    """The attacks ``auto`` runs, in order, for a model with `num_classes` classes."""
    apgd = {"threat": config.threat, "alpha": config.alpha, "iters": config.iters, "restarts": config.restarts,
            "init": config.init}
    members = [AttackConfig("apgd-ce", **apgd)]
    targeted_loss = "apgd-dlr" if num_classes >= 4 else "apgd-ce"
    for rank in range(1, min(AUTO_TARGETS, num_classes - 1) + 1):
        members.append(AttackConfig(targeted_loss, **apgd, target=f"top-{rank}"))
    members.append(resolve_attack("square", eps=config.eps, clip=config.clip, queries=config.queries, norm=config.norm))
    return members


@renamed_arguments
def auto(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    alpha: Optional[float] = None,
    iters: int = 100,
    init: str = "random",
    restarts: int = 1,
    queries: int = 1000,
    clip: bool = True,
    generator: Optional[torch.Generator] = None,
    norm: str = "linf",
) -> torch.Tensor:
    """AutoAttack-style worst case: APGD-CE, targeted APGD-DLR on the top-3 wrong classes, then
    Square, all in `norm`, each only on the samples still correctly classified. Clean errors are left as
    they are. Handed a reduced-precision wrapper, the gradient members craft on it while its float32
    model decides which samples are fooled (and answers Square's queries)."""
    config = resolve_attack("auto", eps=eps, alpha=alpha, iters=iters, restarts=restarts, init=init, clip=clip,
                            norm=norm, queries=queries)
    return run_composite(config, model, x, y, generator)


ATTACKS.register("auto", AttackSpec(
    auto, kind="ensemble", targeted=False, untargeted_reason="it picks its own", queries=True, members=auto_members,
    options=lambda config: {"alpha": config.alpha, "iters": config.iters, "init": config.init,
                            "restarts": config.restarts, "queries": config.queries},
    defaults=lambda eps, iters, norm: {"alpha": 2 * eps, "iters": 100, "init": "random"},
))
