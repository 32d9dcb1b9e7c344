"""``pgd``: projected gradient descent (Madry et al., 2018) under the L-inf or the L2 norm."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ...runtime.execution import attack_mode
from ...threat import ThreatModel
from ..config import AttackSpec
from ..core import best_of_restarts, check_inputs, check_targets, perturb, renamed_arguments, validate_attack_args
from . import ATTACKS


@renamed_arguments
def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    alpha: Optional[float] = None,
    iters: int = 20,
    init: str = "random",
    restarts: int = 1,
    clip: bool = True,
    generator: Optional[torch.Generator] = None,
    norm: str = "linf",
    target: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Projected gradient descent (Madry et al., 2018) under the L-inf or the L2 norm.

    `alpha` defaults to 2.5·eps/iters, so the steps together can cross the ball (Madry et al.).
    L-inf steps are alpha·sign(g); L2 steps are alpha·g/|g|_2 followed by projection on the L2 ball,
    and the random start is uniform inside the ball.

    Runs `restarts` independent starts and keeps, per sample, the first start that makes the model
    misclassify it (worst case by misclassification); with `target`, the first that reaches the
    target class. Returns adversarial inputs with ``|x_adv - x| <= eps`` in the chosen norm (and
    inside [0, 1] when `clip`). ``eps == 0`` returns `x` unchanged.
    """
    threat = ThreatModel(eps, norm, clip)
    if alpha is None:
        alpha = 2.5 * eps / iters if isinstance(iters, int) and iters > 0 else 0.0
    validate_attack_args(threat=threat, alpha=alpha, iters=iters, restarts=restarts, init=init)
    check_inputs(x, y)
    check_targets(y, target)
    if eps == 0 or x.shape[0] == 0:
        return x.detach().clone()

    def run_once(todo: torch.Tensor) -> torch.Tensor:
        return perturb(model, x[todo], y[todo], threat, alpha=alpha, iters=iters, init=init, generator=generator,
                       early_stop=True, target=None if target is None else target[todo])

    with attack_mode(model):
        return best_of_restarts(model, x, y, target, restarts, run_once)


ATTACKS.register("pgd", AttackSpec(
    pgd, kind="iterative",
    defaults=lambda eps, iters, norm: {"alpha": 2.5 * eps / (iters or 20), "iters": 20, "init": "random"},
))
