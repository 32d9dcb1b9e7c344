"""alpha-CROWN (Xu et al., 2021), in its simplest form: the lower slopes of the unstable ReLUs in
the final (margin) pass become variables, optimised by a few Adam steps on the sum of the margin
lower bounds. Any slope in [0, 1] gives a sound bound, so every step's bound is valid and the best
one per margin is kept; the result is never looser than CROWN's, which is step 0. Slopes are shared
by a sample's margins, and the intermediate bounds stay CROWN's (they are not re-optimised).
"""

from __future__ import annotations

import torch

from .coeffs import Dense
from .crown import Sides, backward
from .graph import BoundGraph
from .ops import Context, Interval
from .relax import ReLU

LEARNING_RATE = 0.25


def optimise_slopes(graph: BoundGraph, ctx: Context, target: int, start: Dense, bounds: dict[int, Interval],
                    crown_lower: torch.Tensor, *, steps: int = 20) -> torch.Tensor:
    """The best lower bounds of ``start · value(target)`` over `steps` slope updates, starting from
    CROWN's adaptive slopes (whose bounds, `crown_lower`, are the starting best)."""
    fixed = {index: (low.detach(), high.detach()) for index, (low, high) in bounds.items()}
    slopes: dict[int, torch.Tensor] = {}
    for node in graph.nodes:
        if isinstance(node.op, ReLU):
            low, high = fixed[node.inputs[0]]
            slopes[node.index] = (high > -low).to(low.dtype).requires_grad_(True)
    best = crown_lower.detach()
    if not slopes or steps < 1:
        return best
    variables = list(slopes.values())
    optimiser = torch.optim.Adam(variables, lr=LEARNING_RATE)
    for _ in range(steps):
        with torch.enable_grad():
            lower, _ = backward(graph, ctx, target, Sides(start, None), fixed, slopes=slopes)
            if not lower.requires_grad:  # no unstable ReLU left: nothing to optimise
                break
            gradients = torch.autograd.grad(-lower.sum(), variables, allow_unused=True)
        for variable, gradient in zip(variables, gradients):
            variable.grad = None if gradient is None else gradient.detach()
        optimiser.step()
        with torch.no_grad():
            for variable in variables:
                variable.clamp_(0, 1)
        best = torch.maximum(best, lower.detach())
    with torch.no_grad():  # the last update's bound
        lower, _ = backward(graph, ctx, target, Sides(start, None), fixed, slopes=slopes)
    return torch.maximum(best, lower)
