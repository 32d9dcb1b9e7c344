"""FAB, the fast adaptive boundary attack (Croce & Hein, 2020), under the L-inf or the L2 norm.

FAB looks for the smallest adversarial perturbation. Each step linearises the decision boundary at
the current point: between the label and the target class (FAB-T), or between the label and the
class whose linearised boundary is nearest (untargeted). Both the current point and the original
input are projected onto that hyperplane, inside the pixel box when clipping (the smallest change in
the norm that reaches it, :func:`boundary_projection`); the next point is their convex combination,
each projection overshot by `eta`, weighted towards the original's by the ratio of their lengths but
at most `alpha_max`. Whenever the point is misclassified it is kept if it is the smallest found so far
and pulled back towards the original by `beta`. Defaults are the paper's and AutoAttack's: alpha_max
0.1, eta 1.05, beta 0.9, 100 iterations. A sample succeeds when a misclassified point within eps is
found; it then stops (searching on would only shrink a perturbation that already counts).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ...runtime.autocast import deciding_model
from ...runtime.execution import by_chunks, predict
from ...threat import ThreatModel

ALPHA_MAX = 0.1
ETA = 1.05
BETA = 0.9
_UNBOUNDED = 1e6  # room of an unclipped coordinate: far beyond any radius in pixel space


def boundary_projection(w: torch.Tensor, c: torch.Tensor, low: torch.Tensor, high: torch.Tensor, norm: str
                        ) -> torch.Tensor:
    """Per row, the perturbation `d` of smallest norm with ``w·d = c`` and ``low <= d <= high``
    (``low <= 0 <= high``); where no `d` in the box reaches the hyperplane, the box's corner that comes
    closest. Rows are flattened inputs.

    Moving along the signs of ``w`` (times the sign of ``c``), coordinate i gives ``|w_i| min(t q_i,
    room_i)`` towards ``c`` at a scale ``t`` (``q_i = 1`` under L-inf, ``|w_i|`` under L2: the KKT
    conditions of each problem), which grows piecewise linearly in ``t``; sorting the coordinates by the
    scale at which each runs out of room finds the piece where it equals ``|c|``.
    """
    sign = torch.where(c >= 0, 1.0, -1.0).to(w.dtype)
    v = w * sign[:, None]
    room = torch.where(v > 0, high, -low).clamp(0, _UNBOUNDED)
    weight = v.abs()
    q = torch.ones_like(weight) if norm == "linf" else weight
    moving = weight > 0
    breaks = torch.where(moving, room / q.clamp_min(1e-30), torch.zeros_like(room))
    order = breaks.argsort(dim=1)
    breaks = breaks.gather(1, order)
    saturated = (weight * room * moving).gather(1, order).cumsum(1)  # what the coordinates out of room give
    slope = weight * q
    rest = slope.sum(1, keepdim=True) - slope.gather(1, order).cumsum(1)  # d(reach)/dt of those still moving
    reach = (saturated + breaks * rest).cummax(1).values
    need = c.abs()
    piece = torch.searchsorted(reach, need[:, None]).squeeze(1).clamp(max=w.shape[1] - 1)
    before = (piece - 1).clamp_min(0)[:, None]
    first = piece == 0
    given = torch.where(first, torch.zeros_like(need), saturated.gather(1, before).squeeze(1))
    pace = torch.where(first, slope.sum(1), rest.gather(1, before).squeeze(1))
    scale = ((need - given) / pace.clamp_min(1e-30)).clamp_min(0)
    move = torch.where((reach[:, -1] >= need)[:, None], torch.minimum(scale[:, None] * q, room), room)
    return v.sign() * move


def _norms(delta: torch.Tensor, norm: str) -> torch.Tensor:
    flat = delta.flatten(1)
    return flat.abs().amax(1) if norm == "linf" else flat.norm(dim=1)


def _boundary_once(model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: Optional[torch.Tensor],
                   dual: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The boundary FAB steps towards at `x`: the value of ``z_k - z_y`` and its input gradient, for
    the target ``k`` or, untargeted, the class whose linearised boundary is nearest."""
    x = x.detach().requires_grad_(True)
    rows = torch.arange(len(x), device=x.device)
    with torch.enable_grad():
        logits = model(x).float()
        if target is not None:
            gap = logits[rows, target] - logits[rows, y]
            (grad,) = torch.autograd.grad(gap.sum(), x)
            return gap.detach(), grad
        grads = torch.stack([torch.autograd.grad(logits[:, k].sum(), x, retain_graph=k < logits.shape[1] - 1)[0]
                             for k in range(logits.shape[1])], 1)
    gaps = (logits - logits[rows, y][:, None]).detach()
    grads = grads - grads[rows, y][:, None]
    distance = gaps.abs() / (grads.flatten(2).norm(p=dual, dim=2) + 1e-12)
    distance[rows, y] = float("inf")
    nearest = distance.argmin(1)
    return gaps[rows, nearest], grads[rows, nearest]


def fab_run(model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: Optional[torch.Tensor], *,
            threat: ThreatModel, iters: int, start: torch.Tensor, alpha_max: float = ALPHA_MAX, eta: float = ETA,
            beta: float = BETA) -> tuple[torch.Tensor, torch.Tensor]:
    """One FAB run from `start`; returns the smallest misclassified point found per sample (the input
    where none was) and its size in the norm (inf where none was)."""
    norm, dual = threat.norm, 1.0 if threat.norm == "linf" else 2.0
    judge = deciding_model(model)
    shape = (-1, *[1] * (x.ndim - 1))
    low, high = (0.0, 1.0) if threat.clip else (-_UNBOUNDED, _UNBOUNDED)
    best, best_size = x.clone(), torch.full((len(x),), float("inf"), device=x.device)
    point = start.clone()
    for _ in range(iters):
        active = (best_size > threat.eps).nonzero().squeeze(1)
        if active.numel() == 0:
            break
        x0, x1, ya = x[active], point[active], y[active]
        gap, grad = by_chunks(lambda xs, ys, ts: _boundary_once(model, xs, ys, ts, dual), x1, ya,
                              None if target is None else target[active])
        w = grad.flatten(1)
        towards = (w * (x1 - x0).flatten(1)).sum(1) - gap  # w·d the original needs to reach the hyperplane
        d1 = boundary_projection(w, -gap, (low - x1).flatten(1), (high - x1).flatten(1), norm).view_as(x1)
        d2 = boundary_projection(w, towards, (low - x0).flatten(1), (high - x0).flatten(1), norm).view_as(x0)
        a1, a2 = _norms(d1, norm).clamp_min(1e-8), _norms(d2, norm).clamp_min(1e-8)
        alpha = (a1 / (a1 + a2)).clamp(0, alpha_max).view(shape)
        moved = (x1 + eta * d1) * (1 - alpha) + (x0 + eta * d2) * alpha
        moved = moved.clamp(0, 1) if threat.clip else moved
        fooled = predict(judge, moved) != ya
        size = _norms(moved - x0, norm)
        better = fooled & (size < best_size[active])
        best[active[better]], best_size[active[better]] = moved[better], size[better]
        moved[fooled] = x0[fooled] + (moved[fooled] - x0[fooled]) * beta
        point[active] = moved
    return best, best_size
