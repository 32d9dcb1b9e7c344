"""Properties of the bounds beyond soundness: exact at eps 0, the same in float64, the same whichever
internal path (per-neuron windows, the fused ReLU-convolution step, dense rows) computes them."""

from __future__ import annotations

import pytest
import torch
from verification_zoo import ZOO, margins, zoo_model

import advcli.verification.intermediate as intermediate_module
from advcli.verification import BoundGraph, input_box, margin_bounds

VARIANTS = [("ibp", "ibp"), ("crown", "ibp"), ("crown", "crown"), ("alpha-crown", "crown")]


def _batch(shape, count=3):
    return torch.rand(count, *shape, generator=torch.Generator().manual_seed(7))


@pytest.mark.parametrize("method,intermediate", VARIANTS)
@pytest.mark.parametrize("name", list(ZOO))
def test_eps_zero_gives_the_clean_margins(one_thread, name, method, intermediate):
    model, shape = zoo_model(name)
    x = _batch(shape)
    with torch.no_grad():
        logits = model(x)
        y = logits.argmax(1)
        bounds = margin_bounds(model, x, y, 0.0, method=method, intermediate=intermediate, upper=True)
    clean = margins(logits, y)
    tolerance = 1e-5 * (1 + float(clean.abs().max()))
    torch.testing.assert_close(bounds.lower, clean, atol=tolerance, rtol=0)
    torch.testing.assert_close(bounds.upper, clean, atol=tolerance, rtol=0)


@pytest.mark.parametrize("method,intermediate", VARIANTS)
@pytest.mark.parametrize("name", ["conv", "pool", "norm", "residual", "seed-cnn", "mnist-small"])
def test_float64_and_float32_bounds_agree(one_thread, name, method, intermediate):
    model, shape = zoo_model(name)
    x = _batch(shape)
    with torch.no_grad():
        y = model(x).argmax(1)
        single = margin_bounds(model, x, y, 0.03, method=method, intermediate=intermediate, upper=True)
        double = margin_bounds(model, x, y, 0.03, method=method, intermediate=intermediate, upper=True,
                               dtype=torch.float64)
    assert double.lower.dtype == torch.float64
    tolerance = 1e-4 * (1 + float(double.lower.abs().max()))
    torch.testing.assert_close(single.lower.double(), double.lower, atol=tolerance, rtol=0)
    torch.testing.assert_close(single.upper.double(), double.upper, atol=tolerance, rtol=0)


@pytest.mark.parametrize("path", ["unfused", "dense"])
@pytest.mark.parametrize("name", ["seed-cnn", "mnist-small", "pool", "avg", "residual", "norm"])
def test_window_fused_and_dense_paths_give_the_same_bounds(one_thread, monkeypatch, name, path):
    model, shape = zoo_model(name)
    x = _batch(shape, count=2)
    with torch.no_grad():
        y = model(x).argmax(1)
        fast = margin_bounds(model, x, y, 0.03, upper=True)
        if path == "unfused":
            original = intermediate_module.backward
            monkeypatch.setattr(intermediate_module, "backward", lambda *a, **k: original(*a, **{**k, "fuse": False}))
        else:
            monkeypatch.setattr(BoundGraph, "patchable", lambda self, index: False)
        slow = margin_bounds(model, x, y, 0.03, upper=True)
    tolerance = 1e-5 * (1 + float(fast.lower.abs().max()))
    torch.testing.assert_close(fast.lower, slow.lower, atol=tolerance, rtol=0)
    torch.testing.assert_close(fast.upper, slow.upper, atol=tolerance, rtol=0)


def test_input_box_contains_the_exact_ball_within_the_pixel_range():
    x = torch.rand(64, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    x[0, 0, 0, :2] = torch.tensor([0.0, 1.0])
    for eps in (0.1, 1 / 3, 0.3, 0.0):
        lower, upper = input_box(x, eps)
        wide = x.double()
        assert lower.dtype == x.dtype
        assert bool((lower.double() <= (wide - eps).clamp(0, 1)).all())
        assert bool((upper.double() >= (wide + eps).clamp(0, 1)).all())
        assert bool((lower >= 0).all() and (upper <= 1).all())
        assert float((upper - lower).max()) <= 2 * eps + 1e-6
    lower, upper = input_box(x, 0.0)
    assert torch.equal(lower, x) and torch.equal(upper, x)


def test_alpha_crown_is_never_looser_than_crown(one_thread):
    model, shape = zoo_model("seed-cnn")
    x = _batch(shape, count=4)
    with torch.no_grad():
        y = model(x).argmax(1)
        crown = margin_bounds(model, x, y, 0.02)
        alpha = margin_bounds(model, x, y, 0.02, method="alpha-crown")
    assert bool((alpha.lower >= crown.lower - 1e-6).all())
    assert bool((alpha.worst() > crown.worst() + 1e-5).any()), "optimising the slopes should gain somewhere"
