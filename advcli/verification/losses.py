"""Certified-training losses: pure functions of one mini-batch, differentiable in the parameters.

Both train against the worst case the bounds allow: the logits ``-m`` built from the margin lower
bounds m (``m_y = 0``), whose cross-entropy is small only when every margin is certified large.

* IBP (Gowal et al., 2018): ``kappa * CE(clean logits) + (1 - kappa) * CE(-m_IBP)``;
* CROWN-IBP (Zhang et al., 2020): the same with ``m = beta * m_CROWN-IBP + (1 - beta) * m_IBP``,
  where CROWN-IBP is the backward (CROWN) pass of the margins over the interval bounds of every
  layer; ``beta`` is usually ramped from 1 to 0 during training.

In training mode, batch norm takes the statistics of the clean batch (from the clean pass, which
also updates its running statistics once per call) and uses them, differentiably, in the bounds,
as the references do; in eval mode it uses its running statistics.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import AdvcliError
from ..runtime.distributed import unwrap_model
from .bounds import check_eps, input_box, margin_spec
from .coeffs import Dense
from .crown import Sides, backward
from .graph import BoundGraph, build_graph
from .intermediate import layer_bounds


@dataclass
class CertifiedLoss:
    """The loss (a differentiable scalar), with the clean logits and the margin lower bounds
    [N, K] (both detached) for the training loop's statistics."""

    loss: torch.Tensor
    clean_logits: torch.Tensor
    margin_lower: torch.Tensor
    labels: torch.Tensor

    @property
    def certified(self) -> torch.Tensor:
        """Samples whose every margin lower bound is positive, [N] bool (a training statistic: it
        ignores the float rounding margin that :func:`advcli.verification.verify` applies)."""
        masked = self.margin_lower.scatter(1, self.labels[:, None], float("inf"))
        return masked.min(1).values > 0


def _check_weights(kappa: float, beta: float) -> None:
    for name, value in (("kappa", kappa), ("beta", beta)):
        if not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise AdvcliError(f"{name} must be a number in [0, 1], got {value!r}")


def certified_loss(model: nn.Module | BoundGraph, x: torch.Tensor, y: torch.Tensor, eps: float, *,
                   kappa: float = 0.5, beta: float = 0.0) -> CertifiedLoss:
    """``kappa * CE(clean) + (1 - kappa) * CE(-m)`` with ``m = beta * m_CROWN-IBP + (1 - beta) * m_IBP``
    (`model` may be wrapped in DistributedDataParallel)."""
    check_eps(eps)
    _check_weights(kappa, beta)
    inner = unwrap_model(model) if isinstance(model, nn.Module) else model
    graph = build_graph(inner, tuple(x.shape[1:]))
    ctx = graph.context(x.dtype, x.device)
    # Under DistributedDataParallel the clean logits come through the wrapper, whose forward readies
    # the gradient exchange; the bounds go through the module inside it, on the same parameters.
    clean = model(x) if inner is not model else graph.forward(x, ctx)
    num_classes = clean.shape[1]
    spec, others = margin_spec(y, num_classes, x.dtype)
    bounds = layer_bounds(graph, ctx, input_box(x, eps), intermediate="ibp")
    lower = 0.0
    if beta < 1:
        interval_lower, _ = backward(graph, ctx, graph.output, Sides(Dense(spec), None), bounds,
                                     stop=graph.activations())
        lower = (1 - beta) * interval_lower
    if beta > 0:
        crown_lower, _ = backward(graph, ctx, graph.output, Sides(Dense(spec), None), bounds)
        lower = lower + beta * crown_lower
    margins = torch.zeros_like(clean).scatter(1, others, lower)
    loss = kappa * F.cross_entropy(clean, y) + (1 - kappa) * F.cross_entropy(-margins, y)
    return CertifiedLoss(loss, clean.detach(), margins.detach(), y)


def ibp_loss(model: nn.Module | BoundGraph, x: torch.Tensor, y: torch.Tensor, eps: float, *,
             kappa: float = 0.5) -> CertifiedLoss:
    """The IBP loss of Gowal et al. (2018) on one mini-batch."""
    return certified_loss(model, x, y, eps, kappa=kappa, beta=0.0)


def crown_ibp_loss(model: nn.Module | BoundGraph, x: torch.Tensor, y: torch.Tensor, eps: float, *,
                   kappa: float = 0.5, beta: float = 1.0) -> CertifiedLoss:
    """The CROWN-IBP loss of Zhang et al. (2020) on one mini-batch."""
    return certified_loss(model, x, y, eps, kappa=kappa, beta=beta)
