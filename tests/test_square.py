"""Square attack contracts: bounds, range, query budget, identities, invalid arguments, success."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from advcli.attacks import predict
from advcli.attacks import ATTACK_KINDS, resolve_attack
from advcli.cli import app
from advcli.errors import AttackError
from advcli.evaluation import evaluate
from advcli.runs import load_run
from advcli.square import square_attack, torch_logits


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
    assert {name for name, kind in ATTACK_KINDS.items() if kind == "black-box"} == {"square"}


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
