"""Contracts of the strong attacks: L2 and L-inf bounds, targets, restarts, APGD, Square, auto."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advcli.attacks import (
    ATTACKS,
    auto_members,
    choose_targets,
    dlr_loss,
    parse_target,
    pgd,
    resolve_attack,
    run_sequence,
)
from advcli.errors import AttackError
from advcli.runtime import predict
from advcli.threat import ThreatModel

L2_EPS = 0.5


class SmallMLP(nn.Module):
    """A fixed, deterministic non-linear classifier with 10 classes on 1x8x8 inputs."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.hidden = nn.Linear(64, 32)
        self.out = nn.Linear(32, 10)
        with torch.no_grad():
            for layer in (self.hidden, self.out):
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) / layer.weight.shape[1] ** 0.5 * 3)
                layer.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.hidden(x.flatten(1) - 0.5)))


@pytest.fixture
def mlp_batch():
    model = SmallMLP()
    x = torch.rand(40, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


def sizes(x, x_adv, norm):
    delta = (x_adv - x).flatten(1)
    return delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)


@pytest.mark.parametrize("norm, eps", [("linf", 0.1), ("l2", L2_EPS)])
@pytest.mark.parametrize("name", sorted(ATTACKS))
@pytest.mark.parametrize("clip", [True, False])
def test_every_attack_keeps_its_bound_and_range(name, norm, eps, clip, linear_model, linear_batch):
    x, y = linear_batch
    if not clip:
        x = x * 0.9 + 0.05
        y = predict(linear_model, x)
    config = resolve_attack(name, eps=eps, norm=norm, iters=None if name == "fgsm" else 10, queries=60, clip=clip)
    x_adv = config.run(linear_model, x, y, generator=torch.Generator().manual_seed(0))
    assert x_adv.shape == x.shape and torch.isfinite(x_adv).all()
    assert sizes(x, x_adv, norm).max() <= eps * (1 + 1e-5) + 1e-6
    if clip:
        assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (predict(linear_model, x_adv) != y).any(), "the attack should fool some samples at this radius"


def test_l2_step_moves_alpha_along_the_gradient_and_projects():
    x = torch.full((1, 1, 2, 2), 0.5)
    grad = torch.tensor([[[[3.0, 4.0], [0.0, 0.0]]]])
    stepped = ThreatModel(1.0, "l2", True).step(x, x, grad, 0.1)
    assert torch.allclose(stepped - x, torch.tensor([[[[0.06, 0.08], [0.0, 0.0]]]]), atol=1e-6)
    projected = ThreatModel(0.05, "l2", False).step(x, x, grad, 0.1)
    assert torch.allclose((projected - x).norm(), torch.tensor(0.05), atol=1e-6)
    assert torch.equal(ThreatModel(1.0, "l2", True).step(x, x, torch.zeros_like(grad), 0.1), x)


def test_l2_random_start_lies_inside_the_ball():
    x = torch.full((200, 1, 4, 4), 0.5)
    start = ThreatModel(0.3, "l2", False).random_point(x, torch.Generator().manual_seed(0))
    radii = (start - x).flatten(1).norm(dim=1)
    assert radii.max() <= 0.3 + 1e-6 and radii.min() > 0
    assert radii.std() > 0  # inside the ball, not only on its surface


def test_fgsm_l2_takes_one_step_of_length_eps(linear_model, linear_batch):
    x = linear_batch[0] * 0.2 + 0.4  # far from the borders: no clipping
    y = predict(linear_model, x)
    x_adv = resolve_attack("fgsm", eps=0.3, norm="l2").run(linear_model, x, y)
    assert torch.allclose(sizes(x, x_adv, "l2"), torch.full((len(x),), 0.3), atol=1e-5)


@pytest.mark.parametrize("name, norm, eps", [("pgd", "linf", 0.05), ("pgd", "l2", 0.4), ("apgd-ce", "linf", 0.05),
                                              ("apgd-dlr", "l2", 0.4), ("square", "linf", 0.05)])
def test_restarts_are_never_weaker_than_one_start(name, norm, eps, mlp_batch):
    model, x, y = mlp_batch

    def robust(restarts):
        config = resolve_attack(name, eps=eps, norm=norm, iters=None if name == "square" else 5, queries=30,
                                restarts=restarts, init="random")
        return predict(model, config.run(model, x, y, generator=torch.Generator().manual_seed(4))) == y

    single, several = robust(1), robust(3)
    assert 0 < int(single.sum()) < len(y), "pick a radius where one start fools some samples but not all"
    assert not bool((several & ~single).any())  # every sample one start fools, three starts fool too
    assert int(several.sum()) <= int(single.sum())


@pytest.mark.parametrize("name, norm, eps", [("pgd", "linf", 0.3), ("bim", "linf", 0.3), ("apgd-ce", "linf", 0.3),
                                              ("apgd-dlr", "linf", 0.3), ("pgd", "l2", 3.0), ("apgd-ce", "l2", 3.0)])
@pytest.mark.parametrize("target", ["least-likely", "random"])
def test_targeted_attacks_reach_the_target_on_an_easy_case(name, norm, eps, target, linear_model, linear_batch):
    x, y = linear_batch
    targets = choose_targets(linear_model, x, y, target, generator=torch.Generator().manual_seed(0))
    assert not bool((targets == y).any())
    config = resolve_attack(name, eps=eps, norm=norm, target=target, iters=40 if name == "bim" else 20)
    x_adv = config.run(linear_model, x, y, generator=torch.Generator().manual_seed(1), targets=targets)
    assert sizes(x, x_adv, norm).max() <= eps * (1 + 1e-5) + 1e-6
    assert float((predict(linear_model, x_adv) == targets).float().mean()) >= 0.9


def test_target_rules(linear_model, linear_batch):
    x, y = linear_batch
    with torch.no_grad():
        logits = linear_model(x)
    ranked = logits.argsort(1, descending=True)
    assert torch.equal(choose_targets(linear_model, x, y, "top-1"), ranked[:, 1])  # labels are the argmax
    assert torch.equal(choose_targets(linear_model, x, y, "least-likely"), ranked[:, -1])
    assert torch.equal(choose_targets(linear_model, x, y, "2"), torch.full_like(y, 2))
    for bad in ("top-0", "-1", "likely", "top-x"):
        with pytest.raises(AttackError):
            parse_target(bad)
    with pytest.raises(AttackError, match="classes"):
        choose_targets(linear_model, x, y, "7")
    with pytest.raises(AttackError, match="true label"):
        pgd(linear_model, x, y, eps=0.1, target=y)


def test_a_fixed_target_class_leaves_its_own_samples_unattacked(linear_model, linear_batch):
    x, y = linear_batch
    x_adv = resolve_attack("pgd", eps=0.3, target="1").run(linear_model, x, y, generator=torch.Generator().manual_seed(0))
    own = y == 1
    assert own.any() and torch.equal(x_adv[own], x[own])
    assert float((predict(linear_model, x_adv[~own]) == 1).float().mean()) >= 0.9


def test_dlr_loss_matches_its_definition():
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0]])
    y, target = torch.tensor([0]), torch.tensor([3])
    assert torch.allclose(dlr_loss(logits, y), torch.tensor([-(3 - 2) / (3 - 1)]))
    assert torch.allclose(dlr_loss(logits, y, target), torch.tensor([-(3 - 0) / (3 - 0.5 * (1 + 0))]))
    assert torch.allclose(dlr_loss(logits * 7 + 5, y), dlr_loss(logits, y))  # shift and scale invariant


def test_apgd_dlr_needs_enough_classes():
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
    x, y = torch.rand(4, 1, 8, 8), torch.zeros(4, dtype=torch.long)
    with pytest.raises(AttackError, match="3 classes"):
        ATTACKS["apgd-dlr"].run(model, x, y, eps=0.1)
    assert [m.name for m in auto_members(resolve_attack("auto", eps=0.1), 2)] == ["apgd-ce", "apgd-ce", "square"]


def test_auto_is_never_weaker_than_any_of_its_members(mlp_batch):
    model, x, y = mlp_batch
    auto = resolve_attack("auto", eps=0.04, iters=10, queries=40)
    members = auto_members(auto, 10)
    assert [(m.name, m.target) for m in members] == [
        ("apgd-ce", None), ("apgd-dlr", "top-1"), ("apgd-dlr", "top-2"), ("apgd-dlr", "top-3"), ("square", None)]
    outcome = run_sequence(model, x, y, members, generator=torch.Generator().manual_seed(5))
    auto_robust = predict(model, outcome.x_adv) == y
    assert torch.equal(auto_robust, outcome.fooled_by == -1)
    assert 0 < int(auto_robust.sum()) < len(y), "pick a radius where auto fools some samples but not all"
    for member in members:
        alone = predict(model, member.run(model, x, y, generator=torch.Generator().manual_seed(5))) == y
        assert int(auto_robust.sum()) <= int(alone.sum()), member
    first_alone = predict(model, members[0].run(model, x, y, generator=torch.Generator().manual_seed(5))) == y
    assert not bool((auto_robust & ~first_alone).any())  # the first member sees the same samples and seed
    via_registry = ATTACKS["auto"].run(model, x, y, eps=0.04, iters=10, queries=40,
                                   generator=torch.Generator().manual_seed(5))
    assert torch.equal(predict(model, via_registry) == y, auto_robust)


def reference_apgd(model, x, y, x_start, *, eps, steps, loss_fn, norm):
    """APGD transcribed from the reference implementation (fra31/auto-attack, autopgd_base.py,
    attack_single_run) for one start: every sample runs all steps, losses go into a zero-initialised
    buffer, and rises are counted over the last k entries of it. Returns the highest-loss points and
    which samples some iterate misclassified."""
    n = x.shape[0]

    def normalise(t):
        return t / (t.flatten(1).norm(dim=1).view(-1, 1, 1, 1) + 1e-12)

    def project(point):
        if norm == "linf":
            return torch.min(torch.max(point, x - eps), x + eps).clamp(0, 1)
        delta = point - x
        return (x + normalise(delta) * torch.clamp(delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1), max=eps)).clamp(0, 1)

    def loss_and_grad(point):
        point = point.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = model(point)
            loss = loss_fn(logits, y)
            (grad,) = torch.autograd.grad(loss.sum(), point)
        return loss.detach(), grad, logits.detach()

    k, k_min, k_decrease = max(int(0.22 * steps), 1), max(int(0.06 * steps), 1), max(int(0.03 * steps), 1)
    x_adv = x_start.clone()
    loss_steps = torch.zeros(steps, n)
    loss, grad, logits = loss_and_grad(x_adv)
    fooled = logits.argmax(1) != y
    x_best, loss_best, grad_best = x_adv.clone(), loss.clone(), grad.clone()
    step = torch.full((n, 1, 1, 1), 2.0 * eps)
    x_old = x_adv.clone()
    counter, loss_best_last_check, reduced_last_check = 0, loss_best.clone(), torch.ones(n, dtype=torch.bool)
    for i in range(steps):
        grad2, x_old = x_adv - x_old, x_adv.clone()
        a = 0.75 if i > 0 else 1.0
        direction = grad.sign() if norm == "linf" else normalise(grad)
        x_1 = project(x_adv + step * direction)
        x_adv = project(x_adv + (x_1 - x_adv) * a + grad2 * (1 - a))
        loss, grad, logits = loss_and_grad(x_adv)
        fooled |= logits.argmax(1) != y
        loss_steps[i] = loss
        better = loss > loss_best
        x_best[better], grad_best[better], loss_best[better] = x_adv[better], grad[better], loss[better]
        counter += 1
        if counter == k:
            rises = torch.zeros(n)
            for back in range(k):
                rises += (loss_steps[i - back] > loss_steps[i - back - 1]).float()
            reduce = (rises <= k * 0.75) | (~reduced_last_check & (loss_best_last_check >= loss_best))
            reduced_last_check, loss_best_last_check = reduce.clone(), loss_best.clone()
            step[reduce] /= 2
            x_adv[reduce], grad[reduce] = x_best[reduce], grad_best[reduce]
            counter, k = 0, max(k - k_decrease, k_min)
    return x_best, fooled


@pytest.mark.parametrize("loss, norm, eps", [("dlr", "linf", 0.03), ("ce", "linf", 0.03), ("dlr", "l2", 0.25),
                                             ("ce", "l2", 0.25)])
def test_apgd_follows_the_reference_step_for_step(loss, norm, eps, mlp_batch):
    """Same start, same model: ours fools exactly the samples the reference fools and reaches, on
    the others, the same highest loss (up to float rounding), so its step-size schedule is the
    reference's."""
    from advcli.attacks.methods._apgd import LOSSES, apgd

    model, x, y = mlp_batch
    steps = 20
    ours = apgd(model, x, y, eps=eps, loss=loss, iters=steps, norm=norm, generator=torch.Generator().manual_seed(3))
    generator = torch.Generator().manual_seed(3)
    if norm == "linf":
        noise = 2 * torch.rand(x.shape, generator=generator) - 1
        noise = noise / noise.flatten(1).abs().amax(1).view(-1, 1, 1, 1)
    else:
        noise = torch.randn(x.shape, generator=generator)
        noise = noise / noise.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    x_start = (x + eps * noise).clamp(0, 1)
    theirs, theirs_fooled = reference_apgd(model, x, y, x_start, eps=eps, steps=steps, loss_fn=LOSSES[loss], norm=norm)
    ours_fooled = predict(model, ours) != y
    assert 0 < int(theirs_fooled.sum()) < len(y), "pick a radius where the attack fools some samples but not all"
    assert torch.equal(ours_fooled, theirs_fooled)
    with torch.no_grad():
        ours_loss, theirs_loss = (LOSSES[loss](model(p[~ours_fooled]), y[~ours_fooled]) for p in (ours, theirs))
    assert torch.allclose(ours_loss, theirs_loss, atol=1e-5), (ours_loss - theirs_loss).abs().max()
