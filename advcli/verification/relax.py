"""Sound linear relaxations of the piecewise-linear operations: ReLU and max pooling.

Given bounds ``l <= x <= u`` on the input, each operation's output is bounded by linear functions
of its input. ReLU (CROWN, Zhang et al. 2018): the chord ``u (x - l) / (u - l)`` above an unstable
neuron, and below it ``a x`` for any slope ``a`` in [0, 1] (CROWN's adaptive choice: 1 where
``u > -l``, else 0; alpha-CROWN optimises it); stable neurons are the identity or zero. Max pooling
(as auto_LiRPA): below, the window's input with the largest lower bound; above, that same input
when its lower bound beats every other upper bound (the max is then exactly that input), else the
constant largest upper bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from .ops import Context, Interval, Op


class ReLU(Op):
    label = "ReLU"
    patchable = True

    def forward(self, ctx: Context, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x)

    def interval(self, ctx: Context, bound: Interval) -> Interval:
        return bound[0].clamp(min=0), bound[1].clamp(min=0)


@dataclass
class ReluRelaxation:
    """``lower_slope * x <= relu(x) <= upper_slope * x + upper_intercept`` on the input's bounds."""

    lower_slope: torch.Tensor
    upper_slope: torch.Tensor
    upper_intercept: torch.Tensor
    unstable: torch.Tensor


def relu_relaxation(lower: torch.Tensor, upper: torch.Tensor,
                    lower_slope: Optional[torch.Tensor] = None) -> ReluRelaxation:
    """The relaxation for input bounds `lower` <= `upper`; `lower_slope` (clamped to [0, 1]) replaces
    the adaptive slope on unstable neurons when given."""
    active, dead = lower >= 0, upper <= 0
    unstable = ~(active | dead)
    one, zero = torch.ones_like(lower), torch.zeros_like(lower)
    chord = upper / (upper - lower).clamp_min(torch.finfo(lower.dtype).tiny)
    upper_slope = torch.where(active, one, torch.where(unstable, chord, zero))
    upper_intercept = torch.where(unstable, -lower * upper_slope, zero)
    if lower_slope is None:
        lower_slope = (upper > -lower).to(lower.dtype)
    else:
        lower_slope = lower_slope.clamp(0, 1)
    lower_slope = torch.where(active, one, torch.where(unstable, lower_slope, zero))
    return ReluRelaxation(lower_slope, upper_slope, upper_intercept, unstable)


class MaxPool(Op):
    """Max pooling (no dilation, floor mode) over 2-D windows."""

    label = "MaxPool2d"
    mixing = True
    patchable = True

    def __init__(self, in_shape, out_shape, kernel, stride, padding) -> None:
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)
        self.kernel, self.stride, self.padding = tuple(kernel), tuple(stride), tuple(padding)

    def forward(self, ctx: Context, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(x, self.kernel, self.stride, self.padding)

    def interval(self, ctx: Context, bound: Interval) -> Interval:
        return self.forward(ctx, bound[0]), self.forward(ctx, bound[1])

    def windows(self, values: torch.Tensor) -> torch.Tensor:
        """Each output position's window of `values` [N, C, H, W], padded with -inf: [N, C, Ho, Wo, k1, k2]."""
        (p1, p2), (k1, k2), (s1, s2) = self.padding, self.kernel, self.stride
        if p1 or p2:
            values = F.pad(values, (p2, p2, p1, p1), value=float("-inf"))
        windows = values.unfold(2, k1, s1).unfold(3, k2, s2)
        return windows[:, :, :self.out_shape[1], :self.out_shape[2]]


@dataclass
class MaxPoolRelaxation:
    """``lower_weights · window <= max(window) <= upper_weights · window + upper_bias`` per output."""

    lower_weights: torch.Tensor
    upper_weights: torch.Tensor
    upper_bias: torch.Tensor


def maxpool_relaxation(op: MaxPool, lower: torch.Tensor, upper: torch.Tensor) -> MaxPoolRelaxation:
    low, high = op.windows(lower), op.windows(upper)
    shape = low.shape
    low, high = low.flatten(-2), high.flatten(-2)
    best_lower, chosen = low.max(-1)
    pick = F.one_hot(chosen, low.shape[-1]).to(lower.dtype)
    others_upper = high.masked_fill(pick.bool(), float("-inf")).max(-1).values
    exact = best_lower >= others_upper  # the max is the chosen input all over the box
    upper_weights = pick * exact.unsqueeze(-1).to(lower.dtype)
    upper_bias = torch.where(exact, torch.zeros_like(best_lower), high.max(-1).values)
    return MaxPoolRelaxation(pick.view(shape), upper_weights.view(shape), upper_bias)
