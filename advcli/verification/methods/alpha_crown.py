"""``alpha-crown``: CROWN with the ReLU lower slopes of the margin pass optimised by a few gradient
steps (Xu et al., 2021; sound for any slope in [0, 1], the best bound of every step kept)."""

from __future__ import annotations

from typing import Optional

import torch

from ..alpha import optimise_slopes
from ..graph import BoundGraph
from ..ops import Context, Interval
from . import BOUND_METHODS, BoundMethod
from .crown import crown_bounds


def alpha_crown_bounds(graph: BoundGraph, ctx: Context, box: Interval, spec: torch.Tensor, *,
                       intermediate: str = "crown", upper: bool = False,
                       alpha_steps: int = 20) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """:func:`crown_bounds` with `alpha_steps` slope updates on the margin pass's lower bounds."""

    def refine(graph, ctx, start, bounds, lower):
        return optimise_slopes(graph, ctx, graph.output, start, bounds, lower, steps=alpha_steps)

    return crown_bounds(graph, ctx, box, spec, intermediate=intermediate, upper=upper, refine=refine)


BOUND_METHODS.register("alpha-crown", BoundMethod(
    alpha_crown_bounds, "CROWN with optimised ReLU slopes (Xu et al., 2021): tightest, slowest"))
