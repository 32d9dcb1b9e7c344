"""Bounds on every node before the output: the inputs that ReLU and max pooling relax against.

Interval propagation gives every node's bounds; with ``intermediate="crown"`` each relaxed node's
bounds are then tightened by a CROWN pass from that node (kept where tighter than the interval, so
the result is never looser). Only what can matter is recomputed: the unstable neurons in front of
a ReLU (a stable one is relaxed exactly whatever its bounds), every neuron in front of a max
pooling whose window is not settled; nodes that are one affine map of the input keep their
interval bounds, which are then exact; and the output of a ReLU or max pooling keeps the interval
of its (refined) input, which no CROWN pass through that same relaxation can beat. A
convolutional layer's neurons are bounded through per-neuron input windows
(:class:`~advcli.verification.coeffs.Patches`) in chunks of rows, other layers through dense rows
in chunks of neurons, both sized to :data:`~advcli.verification.crown.MEMORY_BUDGET`.
"""

from __future__ import annotations

import torch

from .coeffs import Dense, Patches, route_dense
from .crown import MEMORY_BUDGET, Sides, backward
from .graph import BoundGraph
from .ops import Context, Conv, Interval
from .relax import MaxPool, ReLU, maxpool_relaxation


def layer_bounds(graph: BoundGraph, ctx: Context, box: Interval, *, intermediate: str = "crown",
                 upto: int | None = None) -> dict[int, Interval]:
    """Bounds of nodes 0 .. `upto` - 1 (default: all but the output) over the input `box`."""
    upto = graph.output if upto is None else upto
    bounds: dict[int, Interval] = {0: box}
    relaxations: dict = {}  # made from bounds that are final once computed, so shared by every pass
    for node in graph.nodes[1:upto]:
        interval = node.op.interval(ctx, *(bounds[i] for i in node.inputs))
        if (intermediate == "crown" and node.index in graph.relaxed and node.index not in graph.exact
                and not isinstance(node.op, (ReLU, MaxPool))):
            interval = _refine(graph, ctx, node.index, bounds, interval, relaxations)
        bounds[node.index] = interval
    return bounds


def _refine(graph: BoundGraph, ctx: Context, index: int, bounds: dict[int, Interval], interval: Interval,
            relaxations: dict) -> Interval:
    lower, upper = interval
    wanted = _wanted(graph, index, lower, upper)
    if not bool(wanted.any()):
        return interval
    if len(graph.nodes[index].shape) == 3 and graph.patchable(index):
        tight_lower, tight_upper = _window_bounds(graph, ctx, index, bounds, wanted, lower, relaxations)
    else:
        tight_lower, tight_upper = _row_bounds(graph, ctx, index, bounds, wanted, interval, relaxations)
    return torch.maximum(lower, tight_lower), torch.minimum(upper, tight_upper)


def _wanted(graph: BoundGraph, index: int, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """The neurons whose tighter bounds can change a relaxation: unstable ones before a ReLU; before
    a max pooling, those in a window whose output is not settled (see :func:`_pool_demand`)."""
    wanted = torch.zeros_like(lower, dtype=torch.bool)
    for consumer in graph.consumers[index]:
        op = graph.nodes[consumer].op
        if isinstance(op, ReLU):
            wanted |= (lower < 0) & (upper > 0)
        elif isinstance(op, MaxPool):
            wanted |= _pool_demand(graph, consumer, op, lower, upper)
    return wanted


def _pool_demand(graph: BoundGraph, pool: int, op: MaxPool, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """Inputs of the windows whose pooled value still matters: all of them, unless only ReLUs read
    the pooling's output and the window is settled, its ReLU dead (pooled upper bound <= 0) or
    active with the max decided (one input's lower bound beats all the others' upper bounds, so the
    relaxation is exact): tighter bounds change neither relaxation there."""
    readers = graph.consumers[pool]
    if not readers or not all(isinstance(graph.nodes[r].op, ReLU) for r in readers):
        return torch.ones_like(lower, dtype=torch.bool)
    pooled_lower, pooled_upper = op.interval(None, (lower, upper))
    exact = maxpool_relaxation(op, lower, upper).upper_weights.flatten(-2).sum(-1) > 0
    open_windows = ~((pooled_upper <= 0) | (exact & (pooled_lower >= 0)))
    ones = torch.ones(1, *open_windows.shape[1:], *op.kernel, dtype=lower.dtype, device=lower.device)
    spread = route_dense(Dense(open_windows.to(lower.dtype).unsqueeze(1)), ones, op.stride, op.padding,
                         tuple(lower.shape[2:]))
    return spread.tensor.squeeze(1) > 0


def _row_bounds(graph, ctx, index, bounds, wanted, interval, relaxations) -> Interval:
    """CROWN bounds of the wanted neurons (any sample's), one dense row per neuron; others keep `interval`."""
    lower, upper = (bound.flatten(1).clone() for bound in interval)
    chosen = wanted.flatten(1).any(0).nonzero().squeeze(1)
    widest = max(graph.nodes[i].shape_numel for i in graph.cone(index))
    rows = max(1, MEMORY_BUDGET // (lower.shape[0] * widest))
    for first in range(0, len(chosen), rows):
        part = chosen[first:first + rows]
        start = torch.zeros(1, len(part), lower.shape[1], dtype=lower.dtype, device=lower.device)
        start[0, torch.arange(len(part), device=lower.device), part] = 1
        start = Dense(start.view(1, len(part), *graph.nodes[index].shape))
        low, high = backward(graph, ctx, index, Sides(start, start), bounds, relaxations=relaxations)
        lower[:, part], upper[:, part] = low, high
    shape = interval[0].shape
    return lower.view(shape), upper.view(shape)


def _window_bounds(graph, ctx, index, bounds, wanted, like, relaxations) -> Interval:
    """CROWN bounds of a spatial node through per-neuron input windows, a few target rows at a time
    (rows without a wanted neuron are skipped and keep their interval bounds)."""
    channels, height, width = graph.nodes[index].shape
    samples = like.shape[0]
    lower = torch.full_like(like, float("-inf"))
    upper = torch.full_like(like, float("inf"))
    positions = wanted.any(1)
    per_row = samples * width * channels * _largest_window(graph, index)
    step = max(1, MEMORY_BUDGET // per_row)
    for first in range(0, height, step):
        rows = (first, min(height, first + step))
        if not bool(wanted[:, :, rows[0]:rows[1]].any()):
            continue
        start = Patches.identity(channels, rows, (height, width), like, positions[:, rows[0]:rows[1]])
        low, high = backward(graph, ctx, index, Sides(start, start), bounds, relaxations=relaxations)
        chosen = wanted[:, :, rows[0]:rows[1]]  # the others' results may be skipped work
        lower[:, :, rows[0]:rows[1]] = torch.where(chosen, low.permute(0, 3, 1, 2), float("-inf"))
        upper[:, :, rows[0]:rows[1]] = torch.where(chosen, high.permute(0, 3, 1, 2), float("inf"))
    return lower, upper


def _largest_window(graph: BoundGraph, index: int) -> int:
    """The most coefficients one target neuron holds, per sample, at any node on the way back to the
    input. Until the first ReLU they are shared by all samples and positions (no per-sample
    memory), and a ReLU straight after a convolution is crossed together with it (never stored)."""
    order = ("shared", "fused", "explicit")
    kernels, states = {index: (1, 1)}, {index: "shared"}
    for i in reversed(graph.cone(index)):
        node = graph.nodes[i]
        if i == 0 or i not in kernels:
            continue
        (kh, kw), op, state = kernels[i], node.op, states[i]
        if isinstance(op, Conv):
            k1, k2 = op.weight().shape[2:]
            kh, kw = (kh - 1) * op.stride[0] + k1, (kw - 1) * op.stride[1] + k2
        elif isinstance(op, MaxPool):
            kh, kw = (kh - 1) * op.stride[0] + op.kernel[0], (kw - 1) * op.stride[1] + op.kernel[1]
        if isinstance(op, ReLU):
            source = graph.nodes[node.inputs[0]].op
            state = "fused" if state == "shared" and isinstance(source, Conv) and source.groups == 1 else "explicit"
        elif state == "fused":
            state = "explicit"
        for source in node.inputs:
            old = kernels.get(source, (0, 0))
            kernels[source] = (max(old[0], kh), max(old[1], kw))
            states[source] = max(states.get(source, "shared"), state, key=order.index)
    explicit = [graph.nodes[i].shape[0] * kh * kw for i, (kh, kw) in kernels.items() if states[i] == "explicit"]
    return max(explicit, default=1)
