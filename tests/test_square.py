"""Square attack contracts: bounds, range, query budget, identities, invalid arguments, success."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from advcli.attacks import ATTACKS, auto_members, resolve_attack
from advcli.attacks.methods._square import l2_square_side, meta_pseudo_gaussian, square_attack
from advcli.cli import app
from advcli.errors import AttackError
from advcli.evaluation import evaluate, evaluate_model
from advcli.io.runs import load_run
from advcli.runtime import predict, torch_logits


class CountingLogits:
    """A logits function that records how many inputs it was asked about."""

    def __init__(self, fn):
        self.fn, self.rows = fn, 0

    def __call__(self, x):
        self.rows += len(x)
        return self.fn(x)


@pytest.mark.parametrize("eps", [0.03, 0.1, 0.3])
def test_stays_in_eps_ball_and_pixel_range(eps, linear_model, linear_batch):
    x, y = linear_batch
    x_adv, used = square_attack(torch_logits(linear_model), x, y, eps=eps, queries=50,
                                generator=torch.Generator().manual_seed(0))
    assert x_adv.shape == x.shape and torch.isfinite(x_adv).all()
    assert (x_adv - x).abs().max() <= eps + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert used.shape == (len(x),) and used.min() >= 1


def test_unclipped_keeps_the_bound_but_may_leave_the_pixel_range(linear_model):
    x = torch.full((8, 1, 8, 8), 0.98)
    y = predict(linear_model, x)
    x_adv, _ = square_attack(torch_logits(linear_model), x, y, eps=0.1, queries=5, clip=False)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6
    assert x_adv.max() > 1.0


def test_query_budget_is_honoured_per_sample(linear_model, linear_batch):
    x, y = linear_batch
    logits = CountingLogits(torch_logits(linear_model))
    _, used = square_attack(logits, x, y, eps=0.05, queries=30, generator=torch.Generator().manual_seed(0))
    assert used.max() <= 30
    assert logits.rows == int(used.sum())


def test_a_model_that_cannot_be_fooled_gets_exactly_the_budget():
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.zeros(6, dtype=torch.long)
    logits = CountingLogits(lambda inputs: torch.tensor([[5.0, 0.0, 0.0]]).expand(len(inputs), 3))
    x_adv, used = square_attack(logits, x, y, eps=0.1, queries=25)
    assert used.tolist() == [25] * 6 and logits.rows == 6 * 25
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6


def test_misclassified_samples_stop_after_the_first_query():
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.ones(6, dtype=torch.long)
    logits = CountingLogits(lambda inputs: torch.tensor([[5.0, 0.0, 0.0]]).expand(len(inputs), 3))
    _, used = square_attack(logits, x, y, eps=0.1, queries=40)
    assert used.tolist() == [1] * 6 and logits.rows == 6


def test_eps_zero_returns_the_inputs_without_queries(linear_model, linear_batch):
    x, y = linear_batch
    logits = CountingLogits(torch_logits(linear_model))
    x_adv, used = square_attack(logits, x, y, eps=0.0, queries=100)
    assert torch.equal(x_adv, x) and int(used.sum()) == 0 and logits.rows == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"eps": -0.1}, {"eps": float("nan")}, {"eps": 1.5},
        {"eps": 0.1, "queries": 0}, {"eps": 0.1, "queries": -5}, {"eps": 0.1, "queries": 2.5},
        {"eps": 0.1, "queries": True}, {"eps": 0.1, "p_init": 0.0}, {"eps": 0.1, "p_init": 1.5},
    ],
)
def test_invalid_arguments_raise(kwargs, linear_model, linear_batch):
    x, y = linear_batch
    with pytest.raises(AttackError):
        square_attack(torch_logits(linear_model), x, y, **kwargs)


def test_invalid_inputs_raise(linear_model, linear_batch):
    x, y = linear_batch
    logits = torch_logits(linear_model)
    for bad_x, bad_y in ((x * 2, y), (x[0], y), (x, y[:-1])):
        with pytest.raises(AttackError):
            square_attack(logits, bad_x, bad_y, eps=0.1, queries=5)


def test_resolve_square_validates_eagerly():
    assert resolve_attack("square", eps=0.1, queries=10).queries == 10
    for kwargs in ({"eps": -1}, {"queries": 0}):
        with pytest.raises(AttackError):
            resolve_attack("square", **kwargs)
    with pytest.raises(AttackError):
        resolve_attack("nope")
    assert {name for name, spec in ATTACKS.items() if spec.kind == "black-box"} == {"square"}


def test_torch_models_keep_their_mode_and_parameters(linear_model, linear_batch):
    linear_model.train()
    before = [p.detach().clone() for p in linear_model.parameters()]
    square_attack(torch_logits(linear_model), *linear_batch, eps=0.1, queries=10)
    assert linear_model.training
    assert all(p.requires_grad and p.grad is None for p in linear_model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, linear_model.parameters()))


def test_square_breaks_a_standard_model(trained_run, tiny_dataset):
    """With outputs only and 100 queries per sample, Square cuts a weak model's accuracy at eps 0.3."""
    run = load_run(trained_run)
    x, y = tiny_dataset.x_test[:100], tiny_dataset.y_test[:100]
    clean = float((predict(run.model, x) == y).float().mean())
    x_adv, used = square_attack(torch_logits(run.model), x, y, eps=0.3, queries=100,
                                generator=torch.Generator().manual_seed(0))
    robust = float((predict(run.model, x_adv) == y).float().mean())
    assert clean >= 0.7, clean
    assert robust <= clean - 0.4, (clean, robust)
    assert used.max() <= 100


def test_square_in_an_evaluation_of_a_torch_run(trained_run):
    report = evaluate(model=str(trained_run), attacks=("square",), eps=0.3, queries=20, samples=30, device="cpu")
    (result,) = report.attacks
    payload = result.to_dict()
    assert payload["name"] == "square" and payload["queries"] == 20 and payload["transfer_from"] is None
    assert 1 <= payload["queries_mean"] <= 20
    assert report.backend == "torch" and report.execution_providers is None
    assert result.robust_accuracy <= report.clean_accuracy and result.max_perturbation <= 0.3 + 1e-5


def test_attack_command_crafts_square_examples(trained_run, tmp_path):
    out = tmp_path / "square.npz"
    result = CliRunner().invoke(app, ["attack", "--model", str(trained_run), "--attack", "square", "--queries", "10",
                                      "--eps", "0.2", "--samples", "16", "--device", "cpu", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    attack = json.loads(result.stdout)["attack"]
    assert attack["name"] == "square" and attack["eps"] == 0.2 and attack["queries"] == 10
    assert attack["alpha"] == 0.8 and attack["clip"] is True  # alpha is Square's p_init
    with np.load(out, allow_pickle=False) as saved:
        assert np.abs(saved["adversarials"] - saved["originals"]).max() <= 0.2 + 1e-6


# L2 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("eps", [0.3, 1.0, 3.0])
def test_l2_stays_in_eps_ball_and_pixel_range(eps, linear_model, linear_batch):
    x, y = linear_batch
    x_adv, used = square_attack(torch_logits(linear_model), x, y, eps=eps, queries=50, norm="l2",
                                generator=torch.Generator().manual_seed(0))
    assert x_adv.shape == x.shape and torch.isfinite(x_adv).all()
    assert (x_adv - x).flatten(1).norm(dim=1).max() <= eps + 1e-5
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert used.shape == (len(x),) and 1 <= used.min() and used.max() <= 50


def test_l2_spends_the_whole_radius_when_unclipped(linear_model):
    """Without clipping every point Square tries lies on the L2 sphere of radius eps."""
    x = torch.full((8, 1, 8, 8), 0.5)
    y = predict(linear_model, x)
    x_adv, _ = square_attack(torch_logits(linear_model), x, y, eps=2.0, queries=20, clip=False, norm="l2",
                             generator=torch.Generator().manual_seed(0))
    norms = (x_adv - x).flatten(1).norm(dim=1)
    assert torch.allclose(norms, torch.full_like(norms, 2.0), atol=1e-5)
    assert (x_adv - x).abs().max() < 2.0  # spread out, unlike an L-inf ball's corners


def test_l2_query_budget_is_honoured_per_sample(linear_model, linear_batch):
    x, y = linear_batch
    logits = CountingLogits(torch_logits(linear_model))
    _, used = square_attack(logits, x, y, eps=0.5, queries=30, norm="l2", generator=torch.Generator().manual_seed(0))
    assert used.max() <= 30
    assert logits.rows == int(used.sum())
    robust = CountingLogits(lambda inputs: torch.tensor([[5.0, 0.0, 0.0]]).expand(len(inputs), 3))
    _, used = square_attack(robust, x[:6], torch.zeros(6, dtype=torch.long), eps=0.5, queries=25, norm="l2")
    assert used.tolist() == [25] * 6 and robust.rows == 6 * 25


def test_l2_window_pattern_is_a_signed_unit_bump():
    bump = meta_pseudo_gaussian(7)
    assert bump.shape == (7, 7) and torch.isclose(bump.norm(), torch.tensor(1.0, dtype=bump.dtype))
    assert (bump[:3] > 0).all() and (bump[3:] < 0).all()
    assert bump[1, 3] == bump[:3].max() and bump[5, 3] == bump[3:].min()  # peaks at the halves' centres
    assert torch.equal(bump, bump.flip(1))  # symmetric left to right


def test_l2_rejects_what_l2_forbids(linear_model, linear_batch):
    x, y = linear_batch
    with pytest.raises(AttackError):
        square_attack(torch_logits(linear_model), x, y, eps=-1.0, queries=5, norm="l2")
    with pytest.raises(AttackError, match="norm"):
        square_attack(torch_logits(linear_model), x, y, eps=0.5, queries=5, norm="l1")
    assert resolve_attack("square", eps=2.0, norm="l2").norm == "l2"  # L2 radii may exceed 1


def test_l2_square_breaks_a_standard_model(trained_run, tiny_dataset):
    """With outputs only and 300 queries per sample, L2 Square fools most of what a weak model
    classifies correctly at eps 3 (28x28 inputs)."""
    run = load_run(trained_run)
    x, y = tiny_dataset.x_test[:100], tiny_dataset.y_test[:100]
    correct = predict(run.model, x) == y
    x, y = x[correct], y[correct]
    x_adv, used = square_attack(torch_logits(run.model), x, y, eps=3.0, queries=300, norm="l2",
                                generator=torch.Generator().manual_seed(0))
    robust = float((predict(run.model, x_adv) == y).float().mean())
    assert (x_adv - x).flatten(1).norm(dim=1).max() <= 3.0 + 1e-5
    assert len(y) >= 70, len(y)
    assert robust <= 0.5, robust
    assert used.max() <= 300


def test_l2_window_side_is_odd_and_rounded_up():
    assert l2_square_side(0.8, 28, 28) == 25
    assert l2_square_side(0.025, 28, 28) == 5  # sqrt(19.6) ~ 4.4 -> 4 -> 5
    assert l2_square_side(0.001, 28, 28) == 3  # never below 3
    assert l2_square_side(0.8, 8, 8) == 7
    assert l2_square_side(0.8, 4, 4) == 3  # 4 -> 5 does not fit: the largest odd side that does
    assert l2_square_side(0.8, 2, 2) == 1


def test_the_first_try_changes_a_square_of_p_init_of_the_image():
    """L-inf: the try after the initial stripes covers p_init of the image (7x7 of 8x8 at 0.8),
    as the schedule starts at p_init whatever the budget."""
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.1
    y = torch.zeros(16, dtype=torch.long)
    seen = []

    def logits(inputs):
        seen.append(inputs.clone())
        return torch.tensor([[5.0, 0.0, 0.0]]).expand(len(inputs), 3)

    square_attack(logits, x, y, eps=0.05, queries=2, generator=torch.Generator().manual_seed(0))
    start, first_try = seen
    changed = ((first_try - start).abs() > 1e-7).any(0).any(0)
    rows, cols = changed.any(1).nonzero(), changed.any(0).nonzero()
    assert int(rows.max() - rows.min()) + 1 == 7 and int(cols.max() - cols.min()) + 1 == 7


def test_auto_under_l2_ends_with_l2_square(linear_model, linear_batch):
    x, y = linear_batch
    config = resolve_attack("auto", eps=1.0, norm="l2", iters=5, queries=30)
    members = auto_members(config, 4)
    assert [(m.name, m.norm) for m in members][-1] == ("square", "l2")
    assert all(m.norm == "l2" for m in members) and members[-1].queries == 30
    report = evaluate_model(linear_model, x, y, attacks=("auto",), eps=1.0, norm="l2", iters=5, queries=30,
                            sanity_samples=0)
    (result,) = report.attacks
    assert [member["name"] for member in result.members][-1] == "square"
    assert result.max_perturbation <= 1.0 + 1e-5


def test_square_l2_in_an_evaluation_of_a_torch_run(trained_run):
    report = evaluate(model=str(trained_run), attacks=("square",), eps=2.0, norm="l2", queries=20, samples=30,
                      device="cpu", sanity_samples=0)
    (result,) = report.attacks
    payload = result.to_dict()
    assert payload["name"] == "square" and payload["norm"] == "l2" and 1 <= payload["queries_mean"] <= 20
    assert result.robust_accuracy <= report.clean_accuracy and result.max_perturbation <= 2.0 + 1e-5
