"""Auto-PGD (Croce & Hein, 2020): PGD with momentum and a step size that adapts itself.

The step starts at 2·eps and is halved at checkpoints (after 22%, 41%, 57%, ... of the iterations)
for every sample whose loss rose in at most rho = 75% of the steps since the last checkpoint, or
whose best loss did not improve since then without a halving; a halved sample restarts from its
best point. As in the reference implementation (fra31/auto-attack), the first step's loss is
compared with 0, not with the starting loss, when counting rises for the first checkpoint. Steps
use momentum 0.75. Each sample keeps its best point: the first successful one, else its
highest-loss one. Losses: cross-entropy (``ce``) or the difference of logits ratio
(``dlr``), which is invariant to shifting and rescaling the logits; both have targeted forms.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import AttackError
from ...runtime.execution import attack_mode, by_chunks
from ...threat import ThreatModel, l2_norms
from ..core import best_of_restarts, check_inputs, check_targets, judged_scores, renamed_arguments, validate_attack_args

LossFn = Callable[[torch.Tensor, torch.Tensor, Optional[torch.Tensor]], torch.Tensor]

MOMENTUM = 0.75
RHO = 0.75


def ce_loss(logits: torch.Tensor, y: torch.Tensor, target: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Per-sample cross-entropy of the label, or minus that of the target (both to be maximised)."""
    if target is None:
        return F.cross_entropy(logits, y, reduction="none")
    return -F.cross_entropy(logits, target, reduction="none")


def dlr_loss(logits: torch.Tensor, y: torch.Tensor, target: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Difference of logits ratio, to be maximised.

    Untargeted: -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3); targeted: -(z_y - z_t) / (z_pi1 -
    (z_pi3 + z_pi4) / 2), with z_pi the logits sorted in decreasing order.
    """
    ordered = logits.sort(dim=1, descending=True).values
    true = logits.gather(1, y[:, None]).squeeze(1)
    if target is None:
        others = logits.scatter(1, y[:, None], float("-inf")).max(1).values
        return -(true - others) / (ordered[:, 0] - ordered[:, 2] + 1e-12)
    chosen = logits.gather(1, target[:, None]).squeeze(1)
    return -(true - chosen) / (ordered[:, 0] - 0.5 * (ordered[:, 2] + ordered[:, 3]) + 1e-12)


LOSSES: dict[str, LossFn] = {"ce": ce_loss, "dlr": dlr_loss}


def _loss_and_gradient(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: Optional[torch.Tensor], loss_fn: LossFn
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample losses, their input gradients and the logits, taken chunk by chunk (see
    :func:`advcli.runtime.by_chunks`)."""
    return by_chunks(lambda xs, ys, ts: _loss_and_gradient_once(model, xs, ys, ts, loss_fn), x, y, target)


def _loss_and_gradient_once(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: Optional[torch.Tensor], loss_fn: LossFn
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        loss = loss_fn(logits.float(), y, target)
        (grad,) = torch.autograd.grad(loss.sum(), x)
    return loss.detach(), grad, logits.detach()


def _surface_start(x: torch.Tensor, threat: ThreatModel, generator: Optional[torch.Generator]) -> torch.Tensor:
    """The paper's random start: a uniformly drawn direction scaled onto the ball's surface."""
    if threat.norm == "linf":
        noise = 2 * torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) - 1
        noise = noise / noise.flatten(1).abs().amax(1).clamp_min(1e-12).view(-1, *([1] * (x.ndim - 1)))
    else:
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        noise = noise / l2_norms(noise).clamp_min(1e-12)
    return threat.project(x, x + threat.eps * noise)


class _Checkpoints:
    """When to halve each sample's step: at checkpoints after 22%, then ever shorter intervals (at least
    6%) of the iterations, for samples whose loss rose in at most RHO of the steps since the last
    checkpoint, or whose best loss did not improve since then without a halving."""

    def __init__(self, n: int, iters: int, loss_best: torch.Tensor, device: torch.device) -> None:
        self.increases = torch.zeros(n, device=device)
        self.loss_best_at_check = loss_best.clone()
        self.reduced_at_check = torch.ones(n, dtype=torch.bool, device=device)
        self.interval, self.since_check = max(int(0.22 * iters), 1), 0
        self.min_interval, self.decrease = max(int(0.06 * iters), 1), max(int(0.03 * iters), 1)

    def count(self, active: torch.Tensor, rose: torch.Tensor, loss_best: torch.Tensor) -> Optional[torch.Tensor]:
        """Count a step's loss rises (`rose`, for the `active` samples); at a checkpoint, return the
        samples whose step halves (and restart from their best point)."""
        self.increases[active] += rose.float()
        self.since_check += 1
        if self.since_check != self.interval:
            return None
        oscillating = self.increases <= self.interval * RHO
        stalled = ~self.reduced_at_check & (self.loss_best_at_check >= loss_best)
        reduce = oscillating | stalled
        self.reduced_at_check, self.loss_best_at_check = reduce, loss_best.clone()
        self.increases.zero_()
        self.since_check, self.interval = 0, max(self.interval - self.decrease, self.min_interval)
        return reduce


def _apgd_once(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    target: Optional[torch.Tensor],
    *,
    threat: ThreatModel,
    alpha: float,
    iters: int,
    init: str,
    loss_fn: LossFn,
    generator: Optional[torch.Generator],
) -> torch.Tensor:
    """One APGD run from one start; samples stop as soon as the attack succeeds on them."""
    n = x.shape[0]
    project, direction = threat.project, threat.geometry.direction
    x_adv = _surface_start(x, threat, generator) if init == "random" else x.clone()

    def pick(t: Optional[torch.Tensor], index: torch.Tensor) -> Optional[torch.Tensor]:
        return None if t is None else t[index]

    loss, grad, logits = _loss_and_gradient(model, x_adv, y, target, loss_fn)
    nothing = torch.zeros(n, dtype=torch.long, device=x.device)
    result, result_score = x_adv.clone(), judged_scores(model, x_adv, logits, y, target, nothing)
    x_best, loss_best, grad_best = x_adv.clone(), loss.clone(), grad.clone()
    # The loss each step is compared with when counting increases. The reference implementation
    # keeps the losses in a zero-initialised buffer and compares the first step's loss with it
    # (not with the starting loss); doing the same halves the step at the first checkpoint exactly
    # as AutoAttack does (for DLR, negative while correct, the first step never counts as a rise).
    x_previous, loss_previous = x_adv.clone(), torch.zeros_like(loss)
    step = torch.full((n,) + (1,) * (x.ndim - 1), float(alpha), device=x.device, dtype=x.dtype)
    checkpoints = _Checkpoints(n, iters, loss_best, x.device)

    for i in range(iters):
        active = (result_score < 2).nonzero().squeeze(1)
        if active.numel() == 0:
            break
        momentum = MOMENTUM if i > 0 else 1.0
        x0, current = x[active], x_adv[active]
        z = project(x0, current + step[active] * direction(grad[active]))
        moved = project(x0, current + momentum * (z - current) + (1 - momentum) * (current - x_previous[active]))
        x_previous[active] = current
        x_adv[active] = moved

        loss_a, grad_a, logits_a = _loss_and_gradient(model, moved, y[active], pick(target, active), loss_fn)
        grad[active] = grad_a
        score = judged_scores(model, moved, logits_a, y[active], pick(target, active), result_score[active])
        improved = score > result_score[active]
        result[active[improved]] = moved[improved]
        result_score[active[improved]] = score[improved]
        rose = loss_a > loss_previous[active]
        loss_previous[active] = loss_a
        better = loss_a > loss_best[active]
        x_best[active[better]] = moved[better]
        grad_best[active[better]] = grad_a[better]
        loss_best[active[better]] = loss_a[better]

        reduce = checkpoints.count(active, rose, loss_best)
        if reduce is not None:
            step[reduce] /= 2
            x_adv[reduce] = x_best[reduce]
            grad[reduce] = grad_best[reduce]

    unsuccessful = result_score == 0
    result[unsuccessful] = x_best[unsuccessful]
    return result


@renamed_arguments
def apgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    loss: str = "ce",
    alpha: Optional[float] = None,
    iters: int = 100,
    init: str = "random",
    restarts: int = 1,
    clip: bool = True,
    generator: Optional[torch.Generator] = None,
    norm: str = "linf",
    target: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """APGD with the `loss` ``ce`` or ``dlr`` under the L-inf or the L2 norm.

    `alpha` is the initial step (default 2·eps). The random start is the paper's: a point on the
    ball's surface. Restarts run only on samples not yet successfully attacked. ``eps == 0``
    returns `x` unchanged.
    """
    if loss not in LOSSES:
        raise AttackError(f"`loss` must be one of {', '.join(LOSSES)}, got {loss!r}", param="loss")
    threat = ThreatModel(eps, norm, clip)
    alpha = 2 * eps if alpha is None else alpha
    validate_attack_args(threat=threat, alpha=alpha, iters=iters, restarts=restarts, init=init)
    check_inputs(x, y)
    check_targets(y, target)
    if eps == 0 or x.shape[0] == 0:
        return x.detach().clone()
    with attack_mode(model):
        with torch.no_grad():
            classes = model(x[:1]).shape[1]
        needed = 3 if target is None else 4
        if loss == "dlr" and classes < needed:
            raise AttackError(f"the {'targeted ' if target is not None else ''}DLR loss needs at least "
                              f"{needed} classes, the model has {classes}")

        def run_once(todo: torch.Tensor) -> torch.Tensor:
            return _apgd_once(model, x[todo].detach(), y[todo], None if target is None else target[todo],
                              threat=threat, alpha=alpha, iters=iters, init=init, loss_fn=LOSSES[loss],
                              generator=generator)

        return best_of_restarts(model, x, y, target, restarts, run_once)
