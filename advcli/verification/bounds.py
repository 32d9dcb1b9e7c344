"""Bounds on a classifier's margins over the L-inf ball of radius eps around x, within [0, 1].

The specification is the margin one (the C matrix of CROWN): for label y, lower bounds on
``z_y - z_j`` for every other class j, which is tighter than bounding the logits separately
because the final layer's weights are combined before any relaxation. The methods are the folder
registry :data:`~advcli.verification.methods.BOUND_METHODS`:

* ``ibp``: interval propagation, with the affine layers after the last activation folded into
  the margins (Gowal et al., 2018);
* ``crown``: the backward linear relaxation, its intermediate bounds by CROWN or by intervals
  (``intermediate="ibp"`` is CROWN-IBP's bound, Zhang et al., 2020), never looser than ``ibp``
  (each margin keeps the better of the CROWN bound and the interval bound over the same layers);
* ``alpha-crown``: CROWN with the ReLU lower slopes of the margin pass optimised by a few gradient
  steps (sound for any slope in [0, 1]; the best bound of every step is kept).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from ..errors import AdvcliError
from .crown import MEMORY_BUDGET
from .graph import BoundGraph, build_graph
from .methods import BOUND_METHODS, INTERMEDIATE_METHODS
from .ops import Context, Interval


def resolve_intermediate(method: str, intermediate: Optional[str]) -> str:
    """The intermediate bounds `method` runs with: `intermediate`, or the method's own default; an
    error when the method takes none (``ibp`` bounds every layer by intervals)."""
    default = BOUND_METHODS.get(BOUND_METHODS.check(method)).default_intermediate
    if intermediate is None:
        return default or "ibp"
    INTERMEDIATE_METHODS.check(intermediate)
    if default is None and intermediate != "ibp":
        raise AdvcliError(f"`intermediate` {intermediate} does not apply to method {method} (it bounds every layer "
                          "by intervals)", param="intermediate")
    return intermediate


def check_method(method: str, intermediate: Optional[str]) -> None:
    resolve_intermediate(method, intermediate)


def check_eps(eps: float) -> None:
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not 0 <= eps <= 1:
        raise AdvcliError(f"`eps` must be a number in [0, 1], got {eps!r}", param="eps")


def input_box(x: torch.Tensor, eps: float, dtype: Optional[torch.dtype] = None) -> Interval:
    """``[max(x - eps, 0), min(x + eps, 1)]`` in `dtype` (default x's), rounded outward so that it
    contains the exact ball: the corners are computed in float64 and moved one step out wherever
    the conversion rounded them inward."""
    dtype = dtype or x.dtype
    wide = x.to(torch.float64)
    lower, upper = (wide - eps).clamp(0, 1), (wide + eps).clamp(0, 1)
    if dtype == torch.float64:
        return lower, upper
    low, high = lower.to(dtype), upper.to(dtype)
    low = torch.where(low.to(torch.float64) > lower, torch.nextafter(low, torch.full_like(low, -1.0)), low)
    high = torch.where(high.to(torch.float64) < upper, torch.nextafter(high, torch.full_like(high, 2.0)), high)
    return low, high


def margin_spec(y: torch.Tensor, num_classes: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The margin rows ``e_y - e_j`` for every class j != y, [N, K-1, K], and those classes [N, K-1]."""
    classes = torch.arange(num_classes, device=y.device).expand(len(y), num_classes)
    others = classes[classes != y[:, None]].view(len(y), num_classes - 1)
    eye = torch.eye(num_classes, dtype=dtype, device=y.device)
    return eye[y].unsqueeze(1) - eye[others], others


@dataclass
class MarginBounds:
    """Per sample, bounds on ``z_y - z_j`` for every class j (exactly 0 at j = y)."""

    lower: torch.Tensor
    upper: Optional[torch.Tensor]
    labels: torch.Tensor

    def worst(self) -> torch.Tensor:
        """The smallest margin lower bound over the classes other than the label, [N]."""
        masked = self.lower.scatter(1, self.labels[:, None], float("inf"))
        return masked.min(1).values


def spec_bounds(graph: BoundGraph, ctx: Context, box: Interval, spec: torch.Tensor, *, method: str = "crown",
                intermediate: Optional[str] = None, upper: bool = False,
                alpha_steps: int = 20) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Lower (and, with `upper`, upper) bounds of ``spec · output`` over `box`, [N, S], by the
    registered bound `method` (:data:`~advcli.verification.methods.BOUND_METHODS`)."""
    intermediate = resolve_intermediate(method, intermediate)
    return BOUND_METHODS.get(method).bound(graph, ctx, box, spec, intermediate=intermediate, upper=upper,
                                           alpha_steps=alpha_steps)


def samples_per_chunk(graph: BoundGraph) -> int:
    """How many samples one bound computation takes at a time: every node's bounds and the margin
    pass's widest coefficients per sample, within a few times :data:`MEMORY_BUDGET`."""
    rows = graph.nodes[graph.output].shape_numel
    per_sample = sum(2 * node.shape_numel for node in graph.nodes) + rows * max(n.shape_numel for n in graph.nodes)
    return max(1, 4 * MEMORY_BUDGET // per_sample)


def margin_bounds(model: nn.Module | BoundGraph, x: torch.Tensor, y: torch.Tensor, eps: float, *,
                  method: str = "crown", intermediate: Optional[str] = None, upper: bool = False,
                  dtype: Optional[torch.dtype] = None, alpha_steps: int = 20) -> MarginBounds:
    """Margin bounds of `model` around each row of `x` (pixels in [0, 1]) with labels `y`.

    Computed in `dtype` (default x's) on x's device, a chunk of samples at a time, except for a
    model in training mode: its batch norms use this batch's statistics (from a clean pass on
    `x`, which also updates their running statistics, as a training step's forward pass does), so
    the whole batch is bounded at once, differentiably."""
    check_method(method, intermediate)
    check_eps(eps)
    graph = build_graph(model, tuple(x.shape[1:]))
    dtype = dtype or x.dtype
    num_classes = graph.nodes[graph.output].shape[0]
    if len(graph.nodes[graph.output].shape) != 1 or num_classes < 2:
        shape = graph.nodes[graph.output].shape
        raise AdvcliError(f"verification needs logits of at least 2 classes, the model outputs {shape}", param="model")
    if y.shape != (x.shape[0],) or (len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes)):
        raise AdvcliError(f"labels must be {x.shape[0]} classes in [0, {num_classes})", param="y")
    training = any(module.training for module in graph.root.modules())
    chunk = x.shape[0] if training else samples_per_chunk(graph)
    lowers, uppers = [], []
    for first in range(0, x.shape[0], chunk):
        xs, ys = x[first:first + chunk], y[first:first + chunk]
        ctx = graph.context(dtype, x.device)
        if training:
            graph.forward(xs.to(dtype), ctx)
        spec, others = margin_spec(ys, num_classes, dtype)
        low, high = spec_bounds(graph, ctx, input_box(xs, eps, dtype), spec, method=method,
                                intermediate=intermediate, upper=upper, alpha_steps=alpha_steps)
        lowers.append(torch.zeros(len(ys), num_classes, dtype=dtype, device=x.device).scatter(1, others, low))
        if upper:
            uppers.append(torch.zeros(len(ys), num_classes, dtype=dtype, device=x.device).scatter(1, others, high))
    empty = torch.zeros(0, num_classes, dtype=dtype, device=x.device)
    return MarginBounds(torch.cat(lowers) if lowers else empty,
                        (torch.cat(uppers) if uppers else empty) if upper else None, y)
