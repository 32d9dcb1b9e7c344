"""``crown``: the backward linear relaxation of the margins (Zhang et al., 2018), never looser than
``ibp``: each margin keeps the better of the CROWN bound and the interval bound over the same layers."""

from __future__ import annotations

from typing import Callable, Optional

import torch

from ..coeffs import Dense
from ..crown import Sides, backward
from ..graph import BoundGraph
from ..intermediate import layer_bounds
from ..ops import Context, Interval
from . import BOUND_METHODS, BoundMethod

# (graph, ctx, start, layer bounds, CROWN's lower bounds) -> lower bounds at least as tight
Refinement = Callable[[BoundGraph, Context, Dense, dict, torch.Tensor], torch.Tensor]


def crown_bounds(graph: BoundGraph, ctx: Context, box: Interval, spec: torch.Tensor, *, intermediate: str = "crown",
                 upper: bool = False, alpha_steps: int = 0,
                 refine: Optional[Refinement] = None) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Lower (and, with `upper`, upper) bounds of ``spec · output`` by CROWN over the `intermediate`
    bounds of every layer, optionally tightened by `refine`."""
    start = Dense(spec)
    sides = Sides(start, start if upper else None)
    bounds = layer_bounds(graph, ctx, box, intermediate=intermediate)
    lower, high = backward(graph, ctx, graph.output, sides, bounds)
    if refine is not None:
        lower = refine(graph, ctx, start, bounds, lower)
    # Both bounds are sound, and CROWN is not tighter than intervals everywhere (notably on
    # interval-trained networks): keep the better of the two, at the cost of one interval pass.
    interval_low, interval_high = backward(graph, ctx, graph.output, sides, bounds, stop=graph.activations())
    lower = torch.maximum(lower, interval_low)
    return lower, (None if high is None else torch.minimum(high, interval_high))


BOUND_METHODS.register("crown", BoundMethod(
    crown_bounds, "CROWN's backward linear relaxation (Zhang et al., 2018), intermediate bounds by CROWN or IBP"))
