"""Certified-training losses: differentiable, batch norm on the batch's statistics, and effective."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from verification_zoo import TRAIN_EPS, SmallCertifiable, certified_model, margins, quadrant_data

from advcli.errors import AdvcliError
from advcli.verification import crown_ibp_loss, ibp_loss, margin_bounds


def _certified_accuracy(model, x, y, eps):
    with torch.no_grad():
        return float((margin_bounds(model, x, y, eps, method="ibp").worst() > 0).float().mean())


def test_ibp_training_raises_certified_accuracy_from_nothing(one_thread):
    torch.manual_seed(0)
    untrained = SmallCertifiable().eval()
    model, x_test, y_test = certified_model()
    assert _certified_accuracy(untrained, x_test, y_test, TRAIN_EPS) <= 0.05
    assert _certified_accuracy(model, x_test, y_test, TRAIN_EPS) >= 0.5


@pytest.mark.parametrize("loss_fn", [ibp_loss, crown_ibp_loss])
def test_losses_are_differentiable_in_every_parameter(one_thread, loss_fn):
    torch.manual_seed(1)
    model = SmallCertifiable().train()
    x, y = quadrant_data(32, 2)
    result = loss_fn(model, x, y, 0.05)
    result.loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and bool(parameter.grad.abs().sum() > 0), name
    assert result.margin_lower.shape == (32, 4) and not result.margin_lower.requires_grad


def test_loss_is_the_weighted_cross_entropies_of_clean_and_worst_case_logits(one_thread):
    torch.manual_seed(2)
    model = SmallCertifiable().eval()
    x, y = quadrant_data(16, 3)
    result = ibp_loss(model, x, y, 0.05, kappa=0.25)
    with torch.no_grad():
        worst = -margin_bounds(model, x, y, 0.05, method="ibp").lower
        expected = 0.25 * F.cross_entropy(model(x), y) + 0.75 * F.cross_entropy(worst, y)
    torch.testing.assert_close(result.loss.detach(), expected, atol=1e-5, rtol=1e-5)


def test_crown_ibp_mixes_the_two_lower_bounds_by_beta(one_thread):
    torch.manual_seed(3)
    model = SmallCertifiable().eval()
    x, y = quadrant_data(16, 4)
    pure_ibp = crown_ibp_loss(model, x, y, 0.05, beta=0.0).margin_lower
    pure_crown = crown_ibp_loss(model, x, y, 0.05, beta=1.0).margin_lower
    half = crown_ibp_loss(model, x, y, 0.05, beta=0.5).margin_lower
    torch.testing.assert_close(half, (pure_ibp + pure_crown) / 2, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(pure_ibp, pure_crown)


def test_training_mode_bounds_use_the_batch_statistics(one_thread):
    torch.manual_seed(4)
    model = SmallCertifiable().train()
    batch_norm = model.features[1]
    x, y = quadrant_data(32, 5)
    before = batch_norm.running_mean.clone()
    result = ibp_loss(model, x, y, 0.0)
    assert int(batch_norm.num_batches_tracked) == 1 and not torch.equal(before, batch_norm.running_mean)
    # At eps 0 the bounds are the clean margins computed with this batch's statistics, not the running ones.
    torch.testing.assert_close(result.margin_lower, margins(result.clean_logits, y), atol=1e-5, rtol=0)
    reference = SmallCertifiable()
    reference.load_state_dict(model.state_dict())
    reference.train()
    with torch.no_grad():
        torch.testing.assert_close(result.clean_logits, reference(x), atol=1e-5, rtol=1e-5)


def test_invalid_weights_are_refused():
    model = SmallCertifiable().eval()
    x, y = quadrant_data(4, 6)
    with pytest.raises(AdvcliError, match="kappa"):
        ibp_loss(model, x, y, 0.1, kappa=1.5)
    with pytest.raises(AdvcliError, match="eps"):
        crown_ibp_loss(model, x, y, -0.1)
