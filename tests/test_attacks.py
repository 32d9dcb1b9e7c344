"""Attack contracts: bounds, range, identities, invalid arguments, success, side effects."""

from __future__ import annotations

import pytest
import torch

from advcli.attacks import ATTACKS, bim, fgsm, perturb, pgd, resolve_attack
from advcli.errors import AttackError
from advcli.io.runs import load_run
from advcli.runtime import crafting_model, predict
from advcli.threat import ThreatModel


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("name", sorted(ATTACKS))
@pytest.mark.parametrize("eps", [0.03, 0.1, 0.3])
def test_perturbation_stays_in_eps_ball_and_pixel_range(name, eps, precision, linear_model, linear_batch):
    x, y = linear_batch
    config = resolve_attack(name, eps=eps, queries=100 if ATTACKS[name].queries else None)  # any budget will do
    model = crafting_model(linear_model, precision, torch.device("cpu"))
    x_adv = config.run(model, x, y, generator=torch.Generator().manual_seed(0))
    assert x_adv.shape == x.shape
    assert (x_adv - x).abs().max() <= eps + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert torch.isfinite(x_adv).all()


def test_unclipped_attack_keeps_the_bound_but_may_leave_the_pixel_range(linear_model):
    x = torch.full((8, 1, 8, 8), 0.98)
    with torch.no_grad():
        y = linear_model(x).argmax(1)
    x_adv = bim(linear_model, x, y, eps=0.1, alpha=0.05, iters=5, clip=False)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6
    assert x_adv.max() > 1.0


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_eps_zero_returns_the_inputs(name, linear_model, linear_batch):
    x, y = linear_batch
    x_adv = ATTACKS[name].run(linear_model, x, y, eps=0.0)
    assert torch.equal(x_adv, x)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"eps": -0.1, "alpha": 0.01, "iters": 5},
        {"eps": float("nan"), "alpha": 0.01, "iters": 5},
        {"eps": 1.5, "alpha": 0.01, "iters": 5},
        {"eps": 0.1, "alpha": 0.0, "iters": 5},
        {"eps": 0.1, "alpha": -0.01, "iters": 5},
        {"eps": 0.1, "alpha": 0.01, "iters": 0},
        {"eps": 0.1, "alpha": 0.01, "iters": 5, "restarts": 0},
        {"eps": 0.1, "alpha": 0.01, "iters": 5, "restarts": 2, "init": "zero"},
    ],
)
def test_invalid_arguments_raise(kwargs, linear_model, linear_batch):
    x, y = linear_batch
    with pytest.raises(AttackError):
        pgd(linear_model, x, y, **kwargs)


def test_fgsm_rejects_several_steps(linear_model, linear_batch):
    with pytest.raises(AttackError):
        fgsm(linear_model, *linear_batch, eps=0.1, iters=3)
    with pytest.raises(AttackError):
        resolve_attack("fgsm", eps=0.1, iters=20)


def test_inputs_outside_pixel_range_are_rejected(linear_model, linear_batch):
    x, y = linear_batch
    with pytest.raises(AttackError):
        pgd(linear_model, x * 2, y, eps=0.1, alpha=0.01, iters=2)
    with pytest.raises(AttackError):
        pgd(linear_model, x, y[:-1], eps=0.1, alpha=0.01, iters=2)


def test_resolve_attack_defaults_follow_the_reference_example():
    config = resolve_attack("bim", eps=0.1)
    assert (config.alpha, config.iters, config.init, config.clip) == (0.01, 20, "zero", True)
    assert resolve_attack("fgsm", eps=0.2).alpha == 0.2
    assert resolve_attack("pgd", eps=0.1).init == "random"
    with pytest.raises(AttackError):
        resolve_attack("nope")
    with pytest.raises(AttackError):
        resolve_attack("bim", restarts=3)


def test_fgsm_is_one_signed_step_of_size_eps(linear_model, linear_batch):
    x, y = linear_batch
    x = x * 0.5 + 0.25  # keep away from the borders so clipping does not interfere
    x_adv = fgsm(linear_model, x, y, eps=0.1)
    delta = (x_adv - x).abs()
    changed = delta > 0
    assert torch.allclose(delta[changed], torch.full_like(delta[changed], 0.1), atol=1e-6)


def test_linf_step_projects_onto_the_ball():
    x = torch.full((1, 1, 2, 2), 0.5)
    grad = torch.tensor([[[[1.0, -1.0], [0.0, 2.0]]]])
    stepped = ThreatModel(0.05, "linf", True).step(x, x, grad, 0.2)
    assert torch.allclose(stepped, torch.tensor([[[[0.55, 0.45], [0.5, 0.55]]]]))


def test_attacks_leave_model_mode_and_parameters_untouched(linear_model, linear_batch):
    linear_model.train()
    before = [p.detach().clone() for p in linear_model.parameters()]
    pgd(linear_model, *linear_batch, eps=0.1, alpha=0.02, iters=5)
    assert linear_model.training
    assert all(p.requires_grad and p.grad is None for p in linear_model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, linear_model.parameters()))


def test_bim_breaks_a_standard_model(trained_run, tiny_dataset):
    """BIM cuts a briefly trained model's accuracy a lot at eps 0.1 and nearly to zero at 0.2."""
    run = load_run(trained_run)
    x, y = tiny_dataset.x_test[:200], tiny_dataset.y_test[:200]
    clean = float((predict(run.model, x) == y).float().mean())

    def robust(eps):
        adv = bim(run.model, x, y, eps=eps, alpha=0.01, iters=20)
        return float((predict(run.model, adv) == y).float().mean())

    assert clean >= 0.7, clean
    assert robust(0.1) < clean - 0.25
    assert robust(0.2) <= 0.15


def test_more_iterations_and_restarts_are_never_weaker(trained_run, tiny_dataset):
    run = load_run(trained_run)
    x, y = tiny_dataset.x_test[:100], tiny_dataset.y_test[:100]

    def robust(**kwargs):
        adv = pgd(run.model, x, y, eps=0.05, generator=torch.Generator().manual_seed(3), **kwargs)
        return int((predict(run.model, adv) == y).sum())

    single = robust(alpha=0.0125, iters=10, restarts=1)
    assert robust(alpha=0.0125, iters=10, restarts=3) <= single
    assert robust(alpha=0.05, iters=1, restarts=1, init="zero") >= robust(alpha=0.01, iters=20, init="zero")


def test_early_stop_keeps_the_first_adversarial_point(linear_model, linear_batch):
    x, y = linear_batch
    adv = perturb(linear_model, x, y, ThreatModel(0.5), alpha=0.1, iters=30, init="zero", early_stop=True)
    fooled = predict(linear_model, adv) != y
    assert fooled.float().mean() > 0.9
    assert (adv - x).abs().amax(dim=(1, 2, 3))[fooled].min() < 0.5


def test_chunked_gradients_and_predictions_equal_one_batch(monkeypatch, linear_model):
    import advcli.runtime.execution as execution
    from advcli.attacks import input_gradient

    x = torch.rand(300, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    y = predict(linear_model, x)
    target = (y + 1) % 4
    chunked = [input_gradient(linear_model, x, y), input_gradient(linear_model, x, y, target=target),
               predict(linear_model, x), pgd(linear_model, x, y, eps=0.1, generator=torch.Generator().manual_seed(0))]
    assert len(execution.gradient_chunks(x)) == 3
    monkeypatch.setattr(execution, "CPU_GRADIENT_CHUNK", 1000)
    assert len(execution.gradient_chunks(x)) == 1
    whole = [input_gradient(linear_model, x, y), input_gradient(linear_model, x, y, target=target),
             predict(linear_model, x), pgd(linear_model, x, y, eps=0.1, generator=torch.Generator().manual_seed(0))]
    for ours, theirs in zip(chunked[:2], whole[:2]):
        assert torch.allclose(ours[0], theirs[0], atol=1e-6) and torch.equal(ours[0].sign(), theirs[0].sign())
        assert torch.allclose(ours[1], theirs[1], atol=1e-6)
    assert torch.equal(chunked[2], whole[2]) and torch.equal(chunked[3], whole[3])


def test_the_former_argument_names_still_work_with_a_warning(linear_model, linear_batch):
    x, y = linear_batch
    with pytest.warns(DeprecationWarning, match="iters"):
        old = bim(linear_model, x, y, eps=0.1, alpha=0.02, steps=3)
    with pytest.warns(DeprecationWarning, match="init"):
        old_start = pgd(linear_model, x, y, eps=0.1, iters=3, random_start=False)
    assert torch.equal(old, bim(linear_model, x, y, eps=0.1, alpha=0.02, iters=3))
    assert torch.equal(old_start, pgd(linear_model, x, y, eps=0.1, iters=3, init="zero"))
