"""``ibp``: interval bound propagation (Gowal et al., 2018), the affine layers after the last
activation folded into the margins."""

from __future__ import annotations

from typing import Optional

import torch

from ..coeffs import Dense
from ..crown import Sides, backward
from ..graph import BoundGraph
from ..intermediate import layer_bounds
from ..ops import Context, Interval
from . import BOUND_METHODS, BoundMethod


def ibp_bounds(graph: BoundGraph, ctx: Context, box: Interval, spec: torch.Tensor, *, intermediate: str = "ibp",
               upper: bool = False, alpha_steps: int = 0) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Lower (and, with `upper`, upper) bounds of ``spec · output`` from every layer's interval."""
    start = Dense(spec)
    bounds = layer_bounds(graph, ctx, box, intermediate="ibp")
    return backward(graph, ctx, graph.output, Sides(start, start if upper else None), bounds, stop=graph.activations())


BOUND_METHODS.register("ibp", BoundMethod(
    ibp_bounds, "interval bound propagation (Gowal et al., 2018): fastest, loosest", default_intermediate=None))
