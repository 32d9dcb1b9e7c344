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

from .attacks import (
    _check_inputs, _check_targets, attack_mode, best_of_restarts, by_chunks, judged_scores, l2_norms, project_l2,
    validate_attack_args,
)
from .errors import AttackError

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
    :func:`advcli.attacks.by_chunks`)."""
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


def _apgd_once(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    target: Optional[torch.Tensor],
    *,
    eps: float,
    alpha: float,
    steps: int,
    random_start: bool,
    norm: str,
    loss_fn: LossFn,
    clip: bool,
    generator: Optional[torch.Generator],
) -> torch.Tensor:
    """One APGD run from one start; samples stop as soon as the attack succeeds on them."""
    n = x.shape[0]
    low, high = (0.0, 1.0) if clip else (float("-inf"), float("inf"))

    def project(x0: torch.Tensor, point: torch.Tensor) -> torch.Tensor:
        delta = (point - x0).clamp(-eps, eps) if norm == "linf" else project_l2(point - x0, eps)
        return (x0 + delta).clamp(low, high)

    def direction(grad: torch.Tensor) -> torch.Tensor:
        return grad.sign() if norm == "linf" else grad / l2_norms(grad).clamp_min(1e-12)

    if random_start:
        if norm == "linf":
            noise = 2 * torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) - 1
            noise = noise / noise.flatten(1).abs().amax(1).clamp_min(1e-12).view(-1, *([1] * (x.ndim - 1)))
        else:
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            noise = noise / l2_norms(noise).clamp_min(1e-12)
        x_adv = project(x, x + eps * noise)
    else:
        x_adv = x.clone()

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
    increases = torch.zeros(n, device=x.device)
    loss_best_at_check = loss_best.clone()
    reduced_at_check = torch.ones(n, dtype=torch.bool, device=x.device)
    interval, since_check = max(int(0.22 * steps), 1), 0
    min_interval, interval_decrease = max(int(0.06 * steps), 1), max(int(0.03 * steps), 1)

    for i in range(steps):
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
        increases[active] += (loss_a > loss_previous[active]).float()
        loss_previous[active] = loss_a
        better = loss_a > loss_best[active]
        x_best[active[better]] = moved[better]
        grad_best[active[better]] = grad_a[better]
        loss_best[active[better]] = loss_a[better]

        since_check += 1
        if since_check == interval:
            oscillating = increases <= interval * RHO
            stalled = ~reduced_at_check & (loss_best_at_check >= loss_best)
            reduce = oscillating | stalled
            reduced_at_check, loss_best_at_check = reduce, loss_best.clone()
            step[reduce] /= 2
            x_adv[reduce] = x_best[reduce]
            grad[reduce] = grad_best[reduce]
            increases.zero_()
            since_check, interval = 0, max(interval - interval_decrease, min_interval)

    unsuccessful = result_score == 0
    result[unsuccessful] = x_best[unsuccessful]
    return result


def apgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    loss: str = "ce",
    alpha: Optional[float] = None,
    steps: int = 100,
    random_start: bool = True,
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
        raise AttackError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    alpha = 2 * eps if alpha is None else alpha
    validate_attack_args(eps=eps, alpha=alpha, steps=steps, restarts=restarts, norm=norm)
    _check_inputs(x, y)
    _check_targets(y, target)
    if restarts > 1 and not random_start:
        raise AttackError("restarts > 1 need a random start: identical zero starts give identical results")
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
            return _apgd_once(
                model, x[todo].detach(), y[todo], None if target is None else target[todo], eps=eps, alpha=alpha,
                steps=steps, random_start=random_start, norm=norm, loss_fn=LOSSES[loss], clip=clip, generator=generator,
            )

        return best_of_restarts(model, x, y, target, restarts, run_once)


def apgd_ce(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    alpha: Optional[float] = None,
    steps: int = 100,
    random_start: bool = True,
    restarts: int = 1,
    clip: bool = True,
    generator: Optional[torch.Generator] = None,
    norm: str = "linf",
    target: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """APGD on the cross-entropy loss (targeted: minus the target's cross-entropy)."""
    return apgd(model, x, y, eps=eps, loss="ce", alpha=alpha, steps=steps, random_start=random_start,
                restarts=restarts, clip=clip, generator=generator, norm=norm, target=target)


def apgd_dlr(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    alpha: Optional[float] = None,
    steps: int = 100,
    random_start: bool = True,
    restarts: int = 1,
    clip: bool = True,
    generator: Optional[torch.Generator] = None,
    norm: str = "linf",
    target: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """APGD on the DLR loss (needs 3 classes; the targeted form needs 4)."""
    return apgd(model, x, y, eps=eps, loss="dlr", alpha=alpha, steps=steps, random_start=random_start,
                restarts=restarts, clip=clip, generator=generator, norm=norm, target=target)
