"""``fab``: the fast adaptive boundary attack (Croce & Hein, 2020); targeted (FAB-T) with ``target``."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ...errors import AttackError
from ...runtime.execution import attack_mode
from ...threat import ThreatModel, l2_norms
from ..config import AttackSpec
from ..core import check_inputs, check_targets, validate_attack_args
from . import ATTACKS
from ._fab import ALPHA_MAX, fab_run


def _random_start(x: torch.Tensor, threat: ThreatModel, generator: Optional[torch.Generator]) -> torch.Tensor:
    """A restart's starting point: a random direction at half the radius (as in the paper's restarts)."""
    noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) * 2 - 1
    if threat.norm == "linf":
        noise = noise / noise.flatten(1).abs().amax(1).clamp_min(1e-12).view(-1, *[1] * (x.ndim - 1))
    else:
        noise = noise / l2_norms(noise).clamp_min(1e-12)
    start = x + 0.5 * threat.eps * noise
    return start.clamp(0, 1) if threat.clip else start


def fab(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    iters: int = 100,
    alpha_max: float = ALPHA_MAX,
    init: str = "zero",
    restarts: int = 1,
    clip: bool = True,
    generator: Optional[torch.Generator] = None,
    norm: str = "linf",
    target: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """FAB in `norm`: per sample, the smallest misclassified point found within `eps`, else `x`.

    With `target`, the boundary stepped towards is the one between the label and the target class
    (FAB-T, as AutoAttack runs it; success is still any misclassification); without, the nearest
    linearised boundary (one input gradient per class per step). The first run starts at `x`
    (``init="zero"``) or, like every further restart, at a random point at half the radius."""
    threat = ThreatModel(eps, norm, clip)
    validate_attack_args(threat=threat, alpha=alpha_max, iters=iters, restarts=restarts, init=init)
    if alpha_max > 1:
        raise AttackError(f"fab's `alpha` is its alpha_max, a share in (0, 1]; got {alpha_max}", param="alpha")
    check_inputs(x, y)
    check_targets(y, target)
    if eps == 0 or x.shape[0] == 0:
        return x.detach().clone()
    x = x.detach()
    result = x.clone()
    found = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    with attack_mode(model):
        for run in range(restarts):
            todo = (~found).nonzero().squeeze(1)
            if todo.numel() == 0:
                break
            start = x[todo] if init == "zero" and run == 0 else _random_start(x[todo], threat, generator)
            best, size = fab_run(model, x[todo], y[todo], None if target is None else target[todo], threat=threat,
                                 iters=iters, start=start, alpha_max=alpha_max)
            success = size <= threat.eps
            result[todo[success]] = best[success]
            found[todo[success]] = True
    return result


# FAB's alpha is its alpha_max (0.1): how far a step may lean towards the original input's projection.
ATTACKS.register("fab", AttackSpec(
    fab, kind="iterative",
    options=lambda config: {"alpha_max": config.alpha, "iters": config.iters, "init": config.init,
                            "restarts": config.restarts},
    defaults=lambda eps, iters, norm: {"alpha": ALPHA_MAX, "iters": 100, "init": "zero"},
))
