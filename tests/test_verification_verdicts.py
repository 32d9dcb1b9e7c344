"""Verdicts: verified samples withstand strong attacks, violated ones come with re-checkable
counterexamples, near-zero margins are not verified on float32 rounding, radii carry violations."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from verification_zoo import TRAIN_EPS, certified_model, zoo_model

import advcli
from advcli.errors import AdvcliError
from advcli.verification import Verdict, VerifyConfig, verify_batch, verify_radii
from advcli.verification.verdicts import CLEAN_ERROR, NOT_VIOLATED


@pytest.mark.parametrize("method,intermediate", [("crown", "ibp"), ("crown", "crown"), ("alpha-crown", "crown")])
def test_every_verified_sample_resists_apgd(one_thread, method, intermediate):
    model, x, y = certified_model()
    eps = 2 * TRAIN_EPS  # beyond the training radius: a few samples verified, most not
    result = verify_batch(model, x, y, eps, method=method, intermediate=intermediate, attacks=())
    verified = result.verified.nonzero().squeeze(1)
    assert len(verified) > 0
    generator = torch.Generator().manual_seed(0)
    for loss in ("ce", "dlr"):
        adversarial = advcli.apgd(model, x[verified], y[verified], eps=eps, loss=loss, iters=50, restarts=3,
                                  generator=generator)
        assert float((adversarial - x[verified]).abs().max()) <= eps + 1e-6
        with torch.no_grad():
            assert bool((model(adversarial).argmax(1) == y[verified]).all()), f"APGD-{loss} broke a verified sample"


def test_counterexamples_are_inside_the_ball_and_misclassified(one_thread):
    model, x, y = certified_model()
    eps = 0.3
    result = verify_batch(model, x, y, eps, seed=1, iters=20)
    assert result.counts()["violated"] > 0
    index = result.counterexample_indices
    assert torch.equal((result.violated_by > CLEAN_ERROR).nonzero().squeeze(1), index)
    assert torch.equal(result.violated, result.violated_by != NOT_VIOLATED)
    points = result.counterexamples
    assert float((points.double() - x[index].double()).abs().max()) <= eps
    assert bool((points >= 0).all() and (points <= 1).all())
    with torch.no_grad():
        assert bool((model(points).argmax(1) != y[index]).all())
    # PGD runs before the bounds (its finds are not bounded); the APGD attacks only on what they left unproven
    first = result.violated_by <= 1
    assert bool(torch.isnan(result.margin_lower[result.violated & first]).all())
    assert not bool(torch.isnan(result.margin_lower[~(result.violated & first)]).any())
    assert not bool(result.verified[result.violated_by > 1].any())


def test_a_clean_error_is_violated_at_eps_zero_and_the_rest_verified(one_thread):
    model, x, y = certified_model()
    wrong = y.clone()
    wrong[:3] = (y[:3] + 1) % 4
    result = verify_batch(model, x, wrong, 0.0)
    assert result.verdicts[:3].tolist() == [Verdict.VIOLATED] * 3
    assert result.violated_by[:3].tolist() == [CLEAN_ERROR] * 3
    assert bool(result.verified[3:].all())
    assert len(result.counterexample_indices) == 0  # the samples themselves are the counterexamples


class _TwoLogits(nn.Module):
    """Logits (s, s + gap) for s = the mean pixel: class 1 wins by exactly `gap` everywhere."""

    def __init__(self, gap: float) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 2)
        with torch.no_grad():
            self.linear.weight.fill_(0.25)
            self.linear.bias.copy_(torch.tensor([0.0, gap]))

    def forward(self, x):
        return self.linear(x.flatten(1))


@pytest.mark.parametrize("gap,verdict", [(1e-6, Verdict.UNPROVEN), (1e-4, Verdict.VERIFIED), (0.1, Verdict.VERIFIED)])
def test_margins_near_zero_are_recomputed_in_float64_and_not_verified_on_rounding(gap, verdict):
    model = _TwoLogits(gap).eval()
    x = torch.full((2, 1, 2, 2), 0.5)
    result = verify_batch(model, x, torch.ones(2, dtype=torch.long), 0.01, attacks=())
    assert result.verdicts.tolist() == [verdict] * 2
    assert result.recomputed.tolist() == [gap < 0.01] * 2


def test_eps_list_carries_violations_to_larger_radii(one_thread):
    model, x, y = certified_model()
    radii = [0.05, 0.2, 0.4]
    results = verify_radii(model, x[:32], y[:32], eps=tuple(reversed(radii)), seed=2, iters=20)
    violated = [result.violated for result in results]
    for smaller, larger in zip(violated, violated[1:]):
        assert bool((larger | ~smaller).all())
    assert [result.eps for result in results] == radii
    assert results[-1].counts()["violated"] > results[0].counts()["violated"]


def test_verification_leaves_the_models_mode_alone(one_thread):
    model, _ = zoo_model("norm")
    model.train()
    x = torch.rand(4, 1, 6, 6, generator=torch.Generator().manual_seed(3))
    verify_batch(model, x, torch.zeros(4, dtype=torch.long), 0.01, attacks=())
    assert all(module.training for module in model.modules())


@pytest.mark.parametrize("settings,match", [
    (dict(eps=-0.1), "`eps`"), (dict(eps=(0.1, 2.0)), "`eps`"), (dict(method="lp"), "bound method"),
    (dict(intermediate="exact"), "intermediate"), (dict(method="ibp", intermediate="crown"), "does not apply"),
    (dict(iters=0), "`iters`"), (dict(attacks=("magic",)), "unknown attack"), (dict(alpha_steps=-1), "alpha_steps"),
    (dict(batch_size=0), "batch_size"), (dict(min_certified_accuracy=1.5), "min_certified_accuracy"),
])
def test_invalid_settings_are_refused(settings, match):
    model, shape = zoo_model("conv")
    with pytest.raises(AdvcliError, match=match):
        verify_radii(model, torch.rand(1, *shape), torch.zeros(1, dtype=torch.long), VerifyConfig.of(**settings))


def test_inputs_outside_the_pixel_range_and_bad_labels_are_refused():
    model, shape = zoo_model("conv")
    with pytest.raises(AdvcliError, match=r"\[0, 1\]"):
        verify_batch(model, torch.full((1, *shape), 1.5), torch.zeros(1, dtype=torch.long), 0.1)
    with pytest.raises(AdvcliError, match="labels"):
        verify_batch(model, torch.rand(1, *shape), torch.full((1,), 99, dtype=torch.long), 0.1)
