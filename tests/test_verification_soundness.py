"""Soundness contracts of the bounds: every point of the ball (within [0, 1]) lies inside them, at
every layer and on the margins, for every layer type, method and advcli architecture."""

from __future__ import annotations

import pytest
import torch
from verification_zoo import ZOO, box_points, margins, zoo_model

import advcli
from advcli.verification import build_graph, input_box, margin_bounds
from advcli.verification.intermediate import layer_bounds

METHOD_VARIANTS = [("ibp", "ibp"), ("crown", "ibp"), ("crown", "crown"), ("alpha-crown", "crown")]
EPS = 0.05


def _node_values(graph, x):
    """Every node's value at `x` (through the bound graph's own operations)."""
    ctx = graph.context(x.dtype, x.device)
    values = [x]
    for node in graph.nodes[1:]:
        values.append(node.op.forward(ctx, *(values[i] for i in node.inputs)))
    return values


def _inputs(shape, count=3, seed=1):
    return torch.rand(count, *shape, generator=torch.Generator().manual_seed(seed))


def _tolerance(values: torch.Tensor) -> float:
    return 1e-5 * (1 + float(values.abs().max()))


def _pgd_points(model, x, y, eps):
    generator = torch.Generator().manual_seed(3)
    return torch.stack([advcli.pgd(model, x, y, eps=eps, iters=10, generator=generator),
                        advcli.pgd(model, x, (y + 1) % 4, eps=eps, iters=10, generator=generator)])


@pytest.mark.parametrize("method,intermediate", METHOD_VARIANTS)
@pytest.mark.parametrize("name", list(ZOO))
def test_sampled_points_lie_inside_the_margin_bounds(one_thread, name, method, intermediate):
    model, shape = zoo_model(name)
    x = _inputs(shape)
    with torch.no_grad():
        y = model(x).argmax(1)
    bounds = margin_bounds(model, x, y, EPS, method=method, intermediate=intermediate, upper=True)
    points = torch.cat([box_points(x, EPS, 64, torch.Generator().manual_seed(2)), _pgd_points(model, x, y, EPS)])
    with torch.no_grad():
        observed = torch.stack([margins(model(p), y) for p in points])
    tolerance = _tolerance(observed)
    assert bool((observed >= bounds.lower - tolerance).all()), f"{name}: a point is below the lower bound"
    assert bool((observed <= bounds.upper + tolerance).all()), f"{name}: a point is above the upper bound"
    assert bool((bounds.lower <= bounds.upper + tolerance).all())


@pytest.mark.parametrize("intermediate", ["ibp", "crown"])
@pytest.mark.parametrize("name", list(ZOO))
def test_sampled_points_lie_inside_every_layers_bounds(one_thread, name, intermediate):
    model, shape = zoo_model(name)
    x = _inputs(shape)
    graph = build_graph(model, shape)
    ctx = graph.context()
    with torch.no_grad():
        bounds = layer_bounds(graph, ctx, input_box(x, EPS), intermediate=intermediate)
        for point in box_points(x, EPS, 32, torch.Generator().manual_seed(4)):
            for node, value in zip(graph.nodes[:graph.output], _node_values(graph, point)):
                lower, upper = bounds[node.index]
                tolerance = _tolerance(value)
                assert bool((value >= lower - tolerance).all()), f"{name}: node {node.name} below its lower bound"
                assert bool((value <= upper + tolerance).all()), f"{name}: node {node.name} above its upper bound"


@pytest.mark.parametrize("name", list(ZOO))
def test_crown_is_never_looser_than_ibp(one_thread, name):
    model, shape = zoo_model(name)
    x = _inputs(shape, count=4)
    with torch.no_grad():
        y = model(x).argmax(1)
        ibp = margin_bounds(model, x, y, EPS, method="ibp", upper=True)
        for method, intermediate in METHOD_VARIANTS[1:]:
            crown = margin_bounds(model, x, y, EPS, method=method, intermediate=intermediate, upper=True)
            tolerance = _tolerance(ibp.lower)
            assert bool((crown.lower >= ibp.lower - tolerance).all()), f"{method}/{intermediate} looser than IBP"
            assert bool((crown.upper <= ibp.upper + tolerance).all()), f"{method}/{intermediate} looser than IBP"


def test_crown_is_strictly_tighter_than_ibp_somewhere(one_thread):
    """On an untrained convolutional network intervals are loose; CROWN must do better, not only as well."""
    model, shape = zoo_model("seed-cnn")
    x = _inputs(shape, count=4)
    with torch.no_grad():
        y = model(x).argmax(1)
        ibp = margin_bounds(model, x, y, 0.01, method="ibp").worst()
        crown = margin_bounds(model, x, y, 0.01, method="crown").worst()
    assert bool((crown > ibp + 1e-3).all())


@pytest.mark.parametrize("method,intermediate", [("ibp", "ibp"), ("crown", "ibp")])
def test_preact_resnet18_bounds_contain_sampled_points(one_thread, method, intermediate):
    """On an untrained ResNet intervals grow by orders of magnitude from block to block, so the
    margins alone would be a weak check: every layer's bounds are checked too (the first blocks'
    are tight), and at eps 0 the bounds must be the clean margins exactly."""
    torch.manual_seed(0)
    model = advcli.build_model("preact-resnet18", (3, 32, 32), 10).eval()
    x = _inputs((3, 32, 32), count=1)
    eps = 1e-4
    graph = build_graph(model, (3, 32, 32))
    with torch.no_grad():
        logits = model(x)
        y = logits.argmax(1)
        exact = margin_bounds(model, x, y, 0.0, method=method, intermediate=intermediate, upper=True)
        tolerance = _tolerance(logits)
        torch.testing.assert_close(exact.lower, margins(logits, y), atol=tolerance, rtol=0)
        torch.testing.assert_close(exact.upper, margins(logits, y), atol=tolerance, rtol=0)
        bounds = margin_bounds(model, x, y, eps, method=method, intermediate=intermediate, upper=True)
        layers = layer_bounds(graph, graph.context(), input_box(x, eps), intermediate="ibp")
        points = box_points(x, eps, 4, torch.Generator().manual_seed(5))
    attacked = advcli.pgd(model, x, y, eps=eps, iters=3, generator=torch.Generator().manual_seed(6))
    points = torch.cat([points, attacked[None]])
    with torch.no_grad():
        for point in points:
            observed = margins(model(point), y)
            assert bool((observed >= bounds.lower - _tolerance(observed)).all())
            assert bool((observed <= bounds.upper + _tolerance(observed)).all())
            for node, value in zip(graph.nodes[:graph.output], _node_values(graph, point)):
                lower, upper = layers[node.index]
                assert bool((value >= lower - _tolerance(value)).all()), f"node {node.name} below its lower bound"
                assert bool((value <= upper + _tolerance(value)).all()), f"node {node.name} above its upper bound"
    first_block = layers[graph.nodes[10].index]
    assert float((first_block[1] - first_block[0]).max()) < 1.0, "the first block's bounds should be informative"
