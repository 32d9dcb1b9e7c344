"""Bounds against the exact extremes of tiny ReLU networks, found by enumeration.

A network with one hidden ReLU layer is continuous and affine on each cell of the arrangement of
its hidden hyperplanes (cut by the box's faces), so each margin's minimum and maximum over the box
are attained at a vertex of that arrangement: a point where d of those hyperplanes and faces meet
(d = input dimension). Enumerating every such intersection inside the box gives the exact extremes.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from advcli.verification import margin_bounds

METHOD_VARIANTS = [("ibp", "ibp"), ("crown", "ibp"), ("crown", "crown"), ("alpha-crown", "crown")]


def _network(inputs: int, hidden: int, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, 3)).double()
    with torch.no_grad():
        model[0].weight.mul_(4)  # hyperplanes that cross the boxes, so the relaxation is exercised
    return model.eval()


def _exact_extremes(model: nn.Sequential, lower: torch.Tensor, upper: torch.Tensor, label: int):
    """Exact min and max over the box of every margin z_label - z_j (float64)."""
    first = model[0]
    weight, bias = first.weight.detach(), first.bias.detach()
    dimension = lower.numel()
    planes = [(weight[i], -bias[i]) for i in range(first.out_features)]
    eye = torch.eye(dimension, dtype=torch.float64)
    planes += [(eye[k], lower[k]) for k in range(dimension)] + [(eye[k], upper[k]) for k in range(dimension)]
    vertices = []
    for chosen in itertools.combinations(planes, dimension):
        matrix = torch.stack([normal for normal, _ in chosen])
        if abs(float(torch.linalg.det(matrix))) < 1e-12:
            continue
        point = torch.linalg.solve(matrix, torch.stack([offset for _, offset in chosen]))
        if bool((point >= lower - 1e-12).all() and (point <= upper + 1e-12).all()):
            vertices.append(point.clamp(lower, upper))
    with torch.no_grad():
        logits = model(torch.stack(vertices))
    values = logits[:, label:label + 1] - logits
    return values.min(0).values, values.max(0).values


@pytest.mark.parametrize("method,intermediate", METHOD_VARIANTS)
@pytest.mark.parametrize("inputs,hidden,seed", [(2, 4, 0), (2, 6, 1), (3, 5, 2), (3, 6, 3)])
def test_bounds_contain_the_exact_extremes(one_thread, inputs, hidden, seed, method, intermediate):
    model = _network(inputs, hidden, seed)
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(4, inputs, generator=generator, dtype=torch.float64)
    eps = 0.3
    with torch.no_grad():
        y = model(x).argmax(1)
        bounds = margin_bounds(model, x, y, eps, method=method, intermediate=intermediate, upper=True)
    unstable_somewhere = False
    for row in range(len(x)):
        lower, upper = (x[row] - eps).clamp(0, 1), (x[row] + eps).clamp(0, 1)
        low, high = _exact_extremes(model, lower, upper, int(y[row]))
        assert bool((bounds.lower[row] <= low + 1e-9).all()), "lower bound above the true minimum"
        assert bool((bounds.upper[row] >= high - 1e-9).all()), "upper bound below the true maximum"
        pre = model[0](torch.stack([lower, upper]))
        unstable_somewhere |= bool(((model[0].weight.abs() @ ((upper - lower) / 2)) > pre.mean(0).abs()).any())
    assert unstable_somewhere, "the case must exercise the ReLU relaxation"


@pytest.mark.parametrize("method", ["crown", "alpha-crown"])
def test_crown_is_exact_when_every_relu_is_stable(one_thread, method):
    """With every hidden neuron stable the network is affine on the box, and CROWN's bound is its exact minimum."""
    model = _network(3, 6, 4)
    x = torch.rand(3, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    eps = 1e-4
    with torch.no_grad():
        y = model(x).argmax(1)
        pre_lower = model[0](x) - model[0].weight.abs().sum(1) * eps
        pre_upper = model[0](x) + model[0].weight.abs().sum(1) * eps
        assert bool(((pre_lower > 0) | (pre_upper < 0)).all())
        bounds = margin_bounds(model, x, y, eps, method=method, upper=True)
    for row in range(len(x)):
        low, high = _exact_extremes(model, (x[row] - eps).clamp(0, 1), (x[row] + eps).clamp(0, 1), int(y[row]))
        torch.testing.assert_close(bounds.lower[row], low, atol=1e-10, rtol=0)
        torch.testing.assert_close(bounds.upper[row], high, atol=1e-10, rtol=0)
