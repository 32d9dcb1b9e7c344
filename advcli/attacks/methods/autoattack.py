"""``autoattack``: AutoAttack's standard set (Croce & Hein, 2020), with its defaults.

APGD-CE (100 iterations), APGD-T (targeted DLR loss, 100 iterations) towards each of the clean
input's 9 most likely wrong classes, FAB-T (100 iterations) towards the same 9, then Square with
5,000 queries, all in the same norm and each only on the samples every member before it failed on;
fewer targets when the model has fewer classes (targeted cross-entropy instead of DLR below 4). Its
figures are comparable to AutoAttack's standard evaluation, at several times the cost of ``auto``.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..config import AttackConfig, AttackSpec, resolve_attack
from ..sequence import run_composite
from . import ATTACKS
from ._fab import ALPHA_MAX

AUTOATTACK_TARGETS = 9
AUTOATTACK_QUERIES = 5000


def autoattack_members(config: AttackConfig, num_classes: int) -> list[AttackConfig]:
    """The attacks ``autoattack`` runs, in order, for a model with `num_classes` classes."""
    apgd = {"threat": config.threat, "alpha": config.alpha, "iters": config.iters, "restarts": config.restarts,
            "init": config.init}
    targets = [f"top-{rank}" for rank in range(1, min(AUTOATTACK_TARGETS, num_classes - 1) + 1)]
    targeted_loss = "apgd-dlr" if num_classes >= 4 else "apgd-ce"
    return [
        AttackConfig("apgd-ce", **apgd),
        *(AttackConfig(targeted_loss, **apgd, target=target) for target in targets),
        *(AttackConfig("fab", config.threat, alpha=ALPHA_MAX, iters=config.iters, target=target) for target in targets),
        resolve_attack("square", eps=config.eps, clip=config.clip, queries=config.queries, norm=config.norm),
    ]


def autoattack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    alpha: Optional[float] = None,
    iters: int = 100,
    init: str = "random",
    restarts: int = 1,
    queries: int = AUTOATTACK_QUERIES,
    clip: bool = True,
    generator: Optional[torch.Generator] = None,
    norm: str = "linf",
) -> torch.Tensor:
    """AutoAttack's standard worst case (see the module docstring) in `norm`; `alpha`, `iters`, `init`
    and `restarts` set its APGD members (`iters` its FAB members too), `queries` its Square member."""
    config = resolve_attack("autoattack", eps=eps, alpha=alpha, iters=iters, restarts=restarts, init=init, clip=clip,
                            norm=norm, queries=queries)
    return run_composite(config, model, x, y, generator)


ATTACKS.register("autoattack", AttackSpec(
    autoattack, kind="ensemble", targeted=False, untargeted_reason="it picks its own", queries=True,
    members=autoattack_members, default_queries=AUTOATTACK_QUERIES,
    options=lambda config: {"alpha": config.alpha, "iters": config.iters, "init": config.init,
                            "restarts": config.restarts, "queries": config.queries},
    defaults=lambda eps, iters, norm: {"alpha": 2 * eps, "iters": 100, "init": "random"},
))
