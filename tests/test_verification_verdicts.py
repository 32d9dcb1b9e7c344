"""Verdicts: verified samples withstand strong attacks, violated ones come with re-checkable
counterexamples, near-zero margins are not verified on float32 rounding."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import advcli
from advcli.errors import AdvcliError
from advcli.verification import Verdict, VerifySettings, verify, verify_batch, verify_eps_list
from verification_zoo import TRAIN_EPS, certified_model, zoo_model


@pytest.mark.parametrize("method,intermediate", [("crown", "ibp"), ("crown", "crown"), ("alpha-crown", "crown")])
def test_every_verified_sample_resists_apgd(one_thread, method, intermediate):
    model, x, y = certified_model()
    eps = 2 * TRAIN_EPS  # beyond the training radius: a few samples verified, most not
    result = verify_batch(model, x, y, eps, method=method, intermediate=intermediate, attack=False)
    verified = result.verified.nonzero().squeeze(1)
    assert len(verified) > 0
    generator = torch.Generator().manual_seed(0)
    for loss in ("ce", "dlr"):
        adversarial = advcli.apgd(model, x[verified], y[verified], eps=eps, loss=loss, steps=50, restarts=3,
                                  generator=generator)
        assert float((adversarial - x[verified]).abs().max()) <= eps + 1e-6
        with torch.no_grad():
            assert bool((model(adversarial).argmax(1) == y[verified]).all()), f"APGD-{loss} broke a verified sample"


def test_counterexamples_are_inside_the_ball_and_misclassified(one_thread):
    model, x, y = certified_model()
    eps = 0.3
    result = verify_batch(model, x, y, eps, generator=torch.Generator().manual_seed(1), attack_steps=20)
    assert result.counts()["violated"] > 0
    index = result.counterexample_indices
    assert torch.equal(result.violated.nonzero().squeeze(1), index)
    points = result.counterexamples
    assert float((points.double() - x[index].double()).abs().max()) <= eps
    assert bool((points >= 0).all() and (points <= 1).all())
    with torch.no_grad():
        assert bool((model(points).argmax(1) != y[index]).all())
    assert bool(torch.isnan(result.margin_lower[index]).all())
    assert not bool(torch.isnan(result.margin_lower[~result.violated]).any())


def test_a_clean_error_is_violated_at_eps_zero_and_the_rest_verified(one_thread):
    model, x, y = certified_model()
    wrong = y.clone()
    wrong[:3] = (y[:3] + 1) % 4
    result = verify_batch(model, x, wrong, 0.0)
    assert result.verdicts[:3].tolist() == [Verdict.VIOLATED] * 3
    assert torch.equal(result.counterexamples[:3], x[:3])
    assert bool(result.verified[3:].all())


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
    result = verify_batch(model, x, torch.ones(2, dtype=torch.long), 0.01, attack=False)
    assert result.verdicts.tolist() == [verdict] * 2
    assert result.recomputed.tolist() == [gap < 0.01] * 2


def test_eps_list_carries_violations_to_larger_radii(one_thread):
    model, x, y = certified_model()
    radii = [0.05, 0.2, 0.4]
    results = verify_eps_list(model, x[:32], y[:32], radii, generator=torch.Generator().manual_seed(2),
                              attack_steps=20)
    violated = [result.violated for result in results]
    for smaller, larger in zip(violated, violated[1:]):
        assert bool((larger | ~smaller).all())
    assert [result.settings.eps for result in results] == radii
    assert results[-1].counts()["violated"] > results[0].counts()["violated"]


def test_verification_leaves_the_models_mode_alone(one_thread):
    model, _ = zoo_model("norm")
    model.train()
    x = torch.rand(4, 1, 6, 6, generator=torch.Generator().manual_seed(3))
    verify_batch(model, x, torch.zeros(4, dtype=torch.long), 0.01, attack=False)
    assert all(module.training for module in model.modules())


@pytest.mark.parametrize("settings,match", [
    (VerifySettings(eps=-0.1), "eps"), (VerifySettings(eps=0.1, method="lp"), "bound method"),
    (VerifySettings(eps=0.1, intermediate="exact"), "intermediate"),
    (VerifySettings(eps=0.1, attack_steps=0), "attack steps"),
])
def test_invalid_settings_are_refused(settings, match):
    model, shape = zoo_model("conv")
    with pytest.raises(AdvcliError, match=match):
        verify(model, torch.rand(1, *shape), torch.zeros(1, dtype=torch.long), settings)
