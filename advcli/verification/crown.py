"""Backward linear bound propagation (CROWN, Zhang et al. 2018) over a bound graph.

:func:`backward` carries the coefficients of linear bounds on some target (the margins, or one
layer's neurons) from that target back to the input, node by node in reverse topological order:
affine operations transpose them exactly, ReLU and max pooling replace themselves by their
relaxations (:mod:`.relax`) using bounds on their inputs, and whatever reaches the input is
minimised (or maximised) over the input box. :func:`layer_bounds` provides those input bounds:
interval propagation for every node, refined by CROWN itself (``intermediate="crown"``) on the
inputs of ReLU and max pooling, where only unstable neurons (or, before a max pooling, all) are
recomputed and each convolutional layer's neurons carry only their own input windows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

import torch

from .coeffs import SCALED_CONV_LIMIT, Coefficients, Patches, route_dense, scaled_through_conv
from .graph import BoundGraph
from .ops import Add, AffineOp, Context, Conv, Interval
from .relax import MaxPool, ReLU, maxpool_relaxation, relu_relaxation

MEMORY_BUDGET = 1 << 23
"""Elements per coefficient tensor (32 MiB in float32) that chunking aims to stay under."""

Bias = Union[torch.Tensor, float]


@dataclass
class Sides:
    """Coefficients of a lower and of an upper bound (either may be None: not wanted). The same
    object for both until the first relaxation, where the two part ways."""

    lower: Optional[Coefficients]
    upper: Optional[Coefficients]

    @property
    def shared(self) -> bool:
        return self.lower is not None and self.lower is self.upper

    def map(self, transform: Callable[[Coefficients], Coefficients]) -> "Sides":
        if self.shared:
            moved = transform(self.lower)
            return Sides(moved, moved)
        return Sides(None if self.lower is None else transform(self.lower),
                     None if self.upper is None else transform(self.upper))

    def __add__(self, other: "Sides") -> "Sides":
        if self.shared and other.shared:
            total = self.lower + other.lower
            return Sides(total, total)
        return Sides(_plus(self.lower, other.lower), _plus(self.upper, other.upper))


def _plus(first: Optional[Coefficients], second: Optional[Coefficients]) -> Optional[Coefficients]:
    return None if first is None or second is None else first + second


class _Totals:
    """The constant parts of the lower and upper bounds, accumulated along the way."""

    def __init__(self) -> None:
        self.lower: Bias = 0.0
        self.upper: Bias = 0.0

    def add(self, lower: Optional[Bias], upper: Optional[Bias]) -> None:
        if lower is not None:
            self.lower = self.lower + lower
        if upper is not None:
            self.upper = self.upper + upper

    def add_dot(self, sides: Sides, values: torch.Tensor) -> None:
        if sides.shared:
            value = sides.lower.dot(values)
            self.add(value, value)
        else:
            self.add(None if sides.lower is None else sides.lower.dot(values),
                     None if sides.upper is None else sides.upper.dot(values))


def _relaxation(graph: BoundGraph, bounds: dict[int, Interval], index: int, cache: dict[int, Any],
                slopes: Optional[dict[int, torch.Tensor]]) -> Any:
    """The relaxation of ReLU or max-pooling node `index` from its input's bounds (cached unless
    alpha-CROWN slopes replace the adaptive ones)."""
    op, source_bounds = graph.nodes[index].op, bounds[graph.nodes[index].inputs[0]]
    if slopes is not None and index in slopes:
        return relu_relaxation(*source_bounds, slopes[index])
    if index not in cache:
        cache[index] = (maxpool_relaxation(op, *source_bounds) if isinstance(op, MaxPool)
                        else relu_relaxation(*source_bounds))
    return cache[index]


def backward(graph: BoundGraph, ctx: Context, target: int, start: Sides, bounds: dict[int, Interval], *,
             stop: frozenset[int] = frozenset(), slopes: Optional[dict[int, torch.Tensor]] = None,
             relaxations: Optional[dict[int, Any]] = None, fuse: bool = True) -> tuple[Optional[Bias], Optional[Bias]]:
    """Lower and upper bounds (None where `start` has no such side) of ``start · value(target)``.

    `bounds` holds the box of node 0 and bounds on every relaxed node's input; the pass stops and
    concretises at node 0 and at the nodes in `stop` (whose bounds must be in `bounds` too). `slopes`
    maps ReLU nodes to lower slopes that replace CROWN's adaptive ones (alpha-CROWN).
    `relaxations` caches the relaxations made from `bounds`, across the passes that share them."""
    cache = {} if relaxations is None else relaxations
    pending: dict[int, Sides] = {target: start}
    totals = _Totals()

    def give(index: int, sides: Sides) -> None:
        pending[index] = sides if index not in pending else pending[index] + sides

    for index in range(target, -1, -1):
        sides = pending.pop(index, None)
        if sides is None:
            continue
        if index == 0 or index in stop:
            lower, upper = bounds[index]
            totals.add(None if sides.lower is None else sides.lower.minimum(lower, upper),
                       None if sides.upper is None else sides.upper.maximum(lower, upper))
            continue
        node = graph.nodes[index]
        op, source = node.op, node.inputs[0]
        if isinstance(op, Add):
            give(source, sides)
            give(node.inputs[1], sides if op.sign > 0 else sides.map(lambda c: -c))
        elif isinstance(op, AffineOp):
            offset = op.offset(ctx)
            if offset is not None:
                totals.add_dot(sides, offset)
            give(source, sides.map(lambda c: op.transpose(ctx, c)))
        elif isinstance(op, ReLU):
            relaxed = _relaxation(graph, bounds, index, cache, slopes)
            fused = _relu_into_conv(graph, ctx, source, sides, relaxed, totals) if fuse else None
            give(*(fused if fused is not None else (source, _through_relu(sides, relaxed, totals))))
        elif isinstance(op, MaxPool):
            relaxed = _relaxation(graph, bounds, index, cache, slopes)
            give(source, _through_maxpool(sides, relaxed, op, graph.nodes[source].shape[1:], totals))
        else:
            raise TypeError(f"no backward rule for {op.label}")
    return (None if start.lower is None else totals.lower), (None if start.upper is None else totals.upper)


def _through_relu(sides: Sides, relaxation, totals: _Totals) -> Sides:
    """Lower bound: ``A x >= A+ (a x) + A- (chord)``; upper bound the other way round."""
    low, high, intercept = relaxation.lower_slope, relaxation.upper_slope, relaxation.upper_intercept

    def lower_side(a: Coefficients, negative: Coefficients) -> Coefficients:
        return a.mul(low) + negative.mul(high - low)

    def upper_side(a: Coefficients, negative: Coefficients) -> Coefficients:
        return a.mul(high) + negative.mul(low - high)

    if sides.shared:
        negative = sides.lower.clamp(max=0)
        below, everything = negative.dot(intercept), sides.lower.dot(intercept)
        totals.add(below, everything - below)
        return Sides(lower_side(sides.lower, negative), upper_side(sides.upper, negative))
    lower = upper = None
    if sides.lower is not None:
        negative = sides.lower.clamp(max=0)
        totals.add(negative.dot(intercept), None)
        lower = lower_side(sides.lower, negative)
    if sides.upper is not None:
        totals.add(None, sides.upper.clamp(min=0).dot(intercept))
        upper = upper_side(sides.upper, sides.upper.clamp(max=0))
    return Sides(lower, upper)


def _relu_into_conv(graph: BoundGraph, ctx: Context, source: int, sides: Sides, relaxation,
                    totals: _Totals) -> Optional[tuple[int, Sides]]:
    """ReLU and the convolution before it in one step, for coefficients shared by all samples and
    positions (see :func:`advcli.verification.coeffs.scaled_through_conv`); None where that does not apply.

    With m = (a + chord slope) / 2 and e = (a - chord slope) / 2 per neuron, the lower bound's
    coefficients are ``A m + |A| e`` and the upper bound's ``A m - |A| e``: two products for both."""
    base = sides.lower
    if not (sides.shared and isinstance(base, Patches) and base.shared) or source == 0:
        return None
    conv = graph.nodes[source].op
    if not (isinstance(conv, Conv) and conv.groups == 1 and conv.dilation == (1, 1)):
        return None
    weight = ctx.cast(conv.weight())
    targets, channels, kh, kw = base.tensor.shape[-4:]
    _, in_channels, k1, k2 = weight.shape
    window = in_channels * ((kh - 1) * conv.stride[0] + k1) * ((kw - 1) * conv.stride[1] + k2)
    if channels * kh * kw * targets * window > SCALED_CONV_LIMIT:
        return None
    middle = (relaxation.lower_slope + relaxation.upper_slope) / 2
    spread = (relaxation.lower_slope - relaxation.upper_slope) / 2
    size = graph.nodes[graph.nodes[source].inputs[0]].shape[1:]
    centre = scaled_through_conv(base, middle, weight, conv.stride, conv.padding, size)
    width = scaled_through_conv(base.abs(), spread, weight, conv.stride, conv.padding, size)
    below = base.clamp(max=0).dot(relaxation.upper_intercept)
    totals.add(below, base.dot(relaxation.upper_intercept) - below)
    offset = conv.offset(ctx)
    if offset is not None:
        at_centre, at_width = base.dot(middle * offset), base.abs().dot(spread * offset)
        totals.add(at_centre + at_width, at_centre - at_width)
    upper = centre - width
    centre.tensor.add_(width.tensor)  # centre's own buffer, not needed any more, becomes the lower side
    return graph.nodes[source].inputs[0], Sides(centre, upper)


def _through_maxpool(sides: Sides, relaxation, op: MaxPool, size: tuple[int, int], totals: _Totals) -> Sides:
    """Lower bound: positive coefficients take the lower relaxation, negative ones the upper."""

    def route(a: Coefficients, weights: torch.Tensor) -> Coefficients:
        if isinstance(a, Patches):
            return a.through_pool(weights, op.stride, op.padding, size)
        return route_dense(a, weights, op.stride, op.padding, size)

    low, high, bias = relaxation.lower_weights, relaxation.upper_weights, relaxation.upper_bias
    lower = upper = None
    if sides.lower is not None:
        positive, negative = sides.lower.clamp(min=0), sides.lower.clamp(max=0)
        totals.add(negative.dot(bias), None)
        lower = route(positive, low) + route(negative, high)
    if sides.upper is not None:
        positive, negative = sides.upper.clamp(min=0), sides.upper.clamp(max=0)
        totals.add(None, positive.dot(bias))
        upper = route(positive, high) + route(negative, low)
    return Sides(lower, upper)
