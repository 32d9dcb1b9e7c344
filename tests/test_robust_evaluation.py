"""Evaluation semantics, eps curves, per-class figures and sanity checks, in the library and the CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from advcli.attacks import resolve_attack
from advcli.cli import app
from advcli.errors import AdvcliError, AttackError
from advcli.evaluation import evaluate_model, parse_eps
from advcli.runtime import predict

runner = CliRunner()


def fired(report) -> set[str]:
    return {check.name for check in report.sanity if check.fired}


class QuantisingNet(nn.Module):
    """A linear classifier behind a rounding input layer: every input gradient is exactly zero."""

    def __init__(self, linear: nn.Module) -> None:
        super().__init__()
        self.linear = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.round(x * 4) / 4)


class SoftmaxNet(nn.Module):
    """A linear classifier that outputs probabilities instead of logits."""

    def __init__(self, linear: nn.Module) -> None:
        super().__init__()
        self.linear = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.linear(x), dim=1)


class PeriodicNet(nn.Module):
    """Two classes with margin cos(s) + 0.2 of a linear score s whose period is one FGSM step of
    size `period_eps`: FGSM lands where it started, small PGD steps find the wrong class."""

    def __init__(self, period_eps: float = 0.1) -> None:
        super().__init__()
        signs = torch.randint(0, 2, (64,), generator=torch.Generator().manual_seed(0)) * 2 - 1
        self.register_buffer("w", signs.float() * (2 * math.pi / period_eps) / 64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        margin = torch.cos((x.flatten(1) - 0.5) @ self.w) + 0.2
        return torch.stack([margin, -margin], 1)


class NoisyNet(nn.Module):
    """Outputs that change from one call to the next (as with dropout left on)."""

    def __init__(self, linear: nn.Module) -> None:
        super().__init__()
        self.linear = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.linear(x)
        return logits + 20 * torch.randn(logits.shape)


def own_labels(model, x):
    return predict(model, x)


@pytest.fixture
def quantised_batch(linear_model):
    model = QuantisingNet(linear_model)
    x = torch.rand(48, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    return model, x, own_labels(model, x)


def periodic_batch():
    model = PeriodicNet(0.1)
    x = 0.5 + 0.01 * (torch.rand(40, 1, 8, 8, generator=torch.Generator().manual_seed(1)) - 0.5)
    return model, x, torch.zeros(40, dtype=torch.long)


# Semantics -----------------------------------------------------------------------------------


def test_curve_is_monotone_reuses_earlier_adversarials_and_matches_single_runs(linear_model, linear_batch):
    x, y = linear_batch
    y = y.clone()
    y[:4] = (y[:4] + 1) % 4  # four clean errors: never robust, never attacked
    report = evaluate_model(linear_model, x, y, attacks=("bim", "pgd"), eps=(0.05, 0, 0.02, 0.1), sanity_samples=0)
    eps = [point.eps for point in report.curve]
    assert eps == [0.0, 0.02, 0.05, 0.1]
    accuracies = [point.robust_accuracy for point in report.curve]
    assert accuracies[0] == report.clean_accuracy == pytest.approx(28 / 32)
    assert all(later <= earlier for earlier, later in zip(accuracies, accuracies[1:]))
    assert accuracies[-1] == report.robust_accuracy < accuracies[1]
    for a in range(2):
        results = [point.attacks[a] for point in report.curve]
        assert results[0].attacked == 0
        for before, now in zip(results[1:], results[2:]):
            robust_before = round(before.robust_accuracy * 32)
            assert now.carried == 28 - robust_before and now.attacked == robust_before
        assert results[1].attacked == 28
    # BIM starts from zero, so per sample it is deterministic: carrying adversarials over can only help.
    single = evaluate_model(linear_model, x, y, attacks=("bim",), eps=0.05, sanity_samples=0)
    assert report.curve[2].attacks[0].robust_accuracy <= single.robust_accuracy
    worst = min(result.robust_accuracy for result in report.attacks)
    assert report.robust_accuracy <= worst


def test_targeted_evaluation_counts_any_misclassification(linear_model, linear_batch):
    x, y = linear_batch
    report = evaluate_model(linear_model, x, y, attacks=("pgd",), eps=0.3, target="least-likely", sanity_samples=0)
    (result,) = report.attacks
    assert result.target_hit_rate >= 0.9 and result.untargetable == 0
    assert report.robust_accuracy <= 1 - result.target_hit_rate
    fixed = evaluate_model(linear_model, x, y, attacks=("pgd",), eps=0.3, target="1", sanity_samples=0)
    assert fixed.attacks[0].untargetable == int((y == 1).sum()) > 0
    assert fixed.to_dict()["attacks"][0]["target"] == "1"


def test_l2_report_checks_the_l2_bound(linear_model, linear_batch):
    x, y = linear_batch
    report = evaluate_model(linear_model, x, y, attacks=("pgd", "apgd-ce"), eps=0.5, norm="l2", iters=10,
                            sanity_samples=0)
    assert report.to_dict()["norm"] == "l2"
    assert all(0 < result.max_perturbation <= 0.5 + 1e-4 for result in report.attacks)
    config = resolve_attack("pgd", eps=0.5, norm="l2")
    inside = x + 0.5 / 8 * torch.ones_like(x).clamp(max=1 - x)  # L2 norm at most 0.5
    assert config.threat.check(x, inside.clamp(0, 1), config.name) <= 0.5
    with pytest.raises(AttackError, match="eps-ball"):
        config.threat.check(x * 0.5, x * 0.5 + 0.1, config.name)  # L-inf 0.1 but L2 0.8


def test_recheck_disagreement_fails_loudly(linear_model, linear_batch):
    x, y = linear_batch
    torch.manual_seed(0)
    with pytest.raises(AttackError, match="disagrees"):
        evaluate_model(NoisyNet(linear_model), x, y, attacks=("pgd",), eps=0.05, iters=3, sanity_samples=0)


def test_per_class_figures_add_up(linear_model, linear_batch):
    x, y = linear_batch
    report = evaluate_model(linear_model, x, y, attacks=("fgsm", "pgd"), eps=(0.02, 0.05), per_class=True,
                            classes=["a", "b", "c", "d"], sanity_samples=0)
    rows = report.per_class
    assert [row.name for row in rows] == ["a", "b", "c", "d"] and sum(row.samples for row in rows) == 32
    present = [row for row in rows if row.samples]
    assert sum(row.robust_accuracy * row.samples for row in present) == pytest.approx(report.robust_accuracy * 32)
    assert all(row.robust_accuracy <= min(row.attacks.values()) for row in present)
    assert all(row.curve[-1] == row.robust_accuracy for row in present)
    assert all(row.clean_accuracy is None for row in rows if not row.samples)
    assert "per_class" in report.to_dict() and "per_class" not in evaluate_model(
        linear_model, x, y, eps=0.02, iters=2, sanity_samples=0).to_dict()


def test_parse_eps():
    assert parse_eps("0.1") == 0.1
    assert parse_eps("0,0.02, 0.05") == (0.0, 0.02, 0.05)
    with pytest.raises(Exception, match="eps"):
        parse_eps("0.1,x")


# Sanity checks -------------------------------------------------------------------------------


def test_sanity_checks_stay_quiet_on_a_normal_model(linear_model, linear_batch):
    x, y = linear_batch
    report = evaluate_model(linear_model, x, y, attacks=("fgsm", "pgd", "square"), eps=(0.02, 0.05), queries=100)
    assert len(report.sanity) == 8 and all(check.checked for check in report.sanity)
    assert fired(report) == set(), [check.detail for check in report.sanity if check.fired]
    payload = report.to_dict()["sanity"]
    assert {entry["name"] for entry in payload} == {
        "finite-outputs", "probability-outputs", "zero-gradients", "non-differentiable-operators",
        "above-chance-unbounded", "accuracy-increases-with-eps", "fgsm-far-above-pgd", "black-box-beats-white-box"}
    assert all(isinstance(entry["detail"], str) and entry["detail"] for entry in payload)


def test_sanity_checks_fire_on_a_quantising_input_layer(quantised_batch):
    model, x, y = quantised_batch
    report = evaluate_model(model, x, y, attacks=("pgd", "square"), eps=0.3, queries=100)
    assert {"zero-gradients", "above-chance-unbounded", "black-box-beats-white-box"} <= fired(report)
    assert "probability-outputs" not in fired(report)
    auto = evaluate_model(model, x, y, attacks=("auto",), eps=0.3, iters=5, queries=100)
    assert "black-box-beats-white-box" in fired(auto)  # auto's own Square finds what its APGD runs miss


def test_sanity_check_fires_on_probability_outputs(linear_model, linear_batch):
    x, y = linear_batch
    report = evaluate_model(SoftmaxNet(linear_model), x, y, attacks=("pgd",), eps=0.05, iters=5)
    assert "probability-outputs" in fired(report)


class NaNAwayFromData(nn.Module):
    """`inner`, with NaN outputs wherever a pixel leaves [0.25, 0.75] (where its data lie)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.inner(x)
        outside = ((x < 0.25) | (x > 0.75)).flatten(1).any(1)
        return torch.where(outside[:, None], torch.full_like(logits, math.nan), logits)


def test_sanity_check_fires_on_non_finite_outputs_near_the_data(linear_model, linear_batch):
    x, _ = linear_batch
    x = 0.3 + 0.4 * x
    with torch.no_grad():
        y = linear_model(x).argmax(1)
    options = dict(attacks=("pgd",), eps=0.02, iters=3, sanity_samples=0)
    report = evaluate_model(NaNAwayFromData(linear_model), x, y, **options)
    assert "finite-outputs" in fired(report)
    assert "0 of 32 samples" in next(check.detail for check in report.sanity if check.name == "finite-outputs")
    assert "finite-outputs" not in fired(evaluate_model(linear_model, x, y, **options))


def test_non_finite_outputs_on_the_samples_are_refused_not_scored(linear_model, linear_batch):
    x, y = linear_batch  # pixels all over [0, 1]: every output is NaN
    with pytest.raises(AdvcliError, match="NaN or infinite on 32 of 32 clean samples"):
        evaluate_model(NaNAwayFromData(linear_model), x, y, attacks=("pgd",), eps=0.02, iters=3)


def test_sanity_checks_fire_when_fgsm_is_far_weaker_or_eps_helps():
    model, x, y = periodic_batch()
    single = evaluate_model(model, x, y, attacks=("fgsm", "pgd"), eps=0.1)
    assert single.attacks[0].robust_accuracy == 1.0 and single.attacks[1].robust_accuracy == 0.0
    assert "fgsm-far-above-pgd" in fired(single)
    without_fgsm = evaluate_model(model, x, y, attacks=("pgd",), eps=0.1)  # a cheap FGSM run on the subset
    assert "fgsm-far-above-pgd" in fired(without_fgsm)
    curve = evaluate_model(model, x, y, attacks=("fgsm",), eps=(0.05, 0.1))
    assert "accuracy-increases-with-eps" in fired(curve)
    assert "accuracy-increases-with-eps" not in fired(evaluate_model(model, x, y, attacks=("pgd",), eps=(0.05, 0.1)))


def test_sanity_samples_zero_skips_the_extra_runs(linear_model, linear_batch):
    x, y = linear_batch
    report = evaluate_model(linear_model, x, y, attacks=("pgd",), eps=0.05, sanity_samples=0)
    unchecked = {check.name for check in report.sanity if not check.checked}
    assert unchecked == {"above-chance-unbounded", "accuracy-increases-with-eps", "fgsm-far-above-pgd",
                         "black-box-beats-white-box"}


# Command line --------------------------------------------------------------------------------


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_eval_curve_per_class_plot_and_sanity_json(trained_run, tmp_path):
    plot = tmp_path / "curve.png"
    result = invoke("eval", "--model", trained_run, "--attack", "bim", "--attack", "fgsm", "--iters", 1,
                    "--alpha", 0.05, "--eps", "0.1,0,0.05", "--samples", 20, "--per-class", "--plot", plot, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["eps"] == [0.0, 0.05, 0.1]
    assert [point["eps"] for point in report["curve"]] == [0.0, 0.05, 0.1]
    assert [a["eps"] for a in report["attacks"]] == [0.1, 0.1]
    assert report["robust_accuracy"] == report["curve"][-1]["robust_accuracy"]
    assert report["curve"][0]["robust_accuracy"] == report["clean_accuracy"]
    assert len(report["per_class"]) == 10 and sum(row["samples"] for row in report["per_class"]) == 20
    assert {"name", "fired", "checked", "detail"} <= set(report["sanity"][0])
    assert report["config"]["eps"] == [0.1, 0.0, 0.05] and report["config"]["per_class"] is True
    assert plot.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("fire", [False, True])
def test_eval_table_lists_fired_sanity_checks_or_says_all_passed(trained_run, fire, monkeypatch):
    from advcli.evaluation.sanity import SANITY_CHECKS, Check, SanityCheck

    if fire:  # a check that always fires, in place of the first registered one
        name = SANITY_CHECKS.names()[0]
        monkeypatch.setitem(SANITY_CHECKS._entries, name, Check(lambda inputs: SanityCheck(name, True, "forced")))
    args = ("eval", "--model", trained_run, "--attack", "pgd", "--iters", 3, "--eps", "0.05,0.1", "--samples", 20,
            "--per-class", "--sanity-samples", 10)
    result, as_json = invoke(*args), invoke(*args, "--json")
    assert result.exit_code == 0 and as_json.exit_code == 0, result.output
    fired = [check["name"] for check in json.loads(as_json.stdout)["sanity"] if check["fired"]]
    assert fired or not fire
    text = " ".join(result.stdout.split())  # titles wrap at the table's width
    assert "Robust accuracy against eps" in text and "Per class" in text
    assert text.count("sanity check fired") == len(fired) and all(name in text for name in fired)
    assert ("all sanity checks passed" in text) == (not fired)


def test_eval_l2_and_targeted_options(trained_run):
    result = invoke("eval", "--model", trained_run, "--attack", "pgd", "--norm", "l2", "--eps", 1.5, "--iters", 5,
                    "--target", "random", "--samples", 20, "--sanity-samples", 0, "--json")
    assert result.exit_code == 0, result.output
    (attack,) = json.loads(result.stdout)["attacks"]
    assert attack["norm"] == "l2" and attack["target"] == "random" and attack["max_perturbation"] <= 1.5 + 1e-4
    # every sample that reached its target is misclassified, so those cannot count as robust
    assert attack["target_hit_rate"] > 0
    assert attack["robust_accuracy"] <= 1 - attack["target_hit_rate"] * (attack["attacked"] - attack["untargetable"]) / 20


@pytest.mark.parametrize(
    "args, message",
    [
        (("--eps", "0.1,x"), "eps"),
        (("--eps", "0.1,-0.2"), "eps"),
        (("--plot", "curve.txt"), "png"),
        (("--attack", "square", "--init", "zero"), "init"),
        (("--attack", "auto", "--target", "3"), "target"),
        (("--target", "12"), "classes"),
        (("--target", "likely"), "target"),
        (("--queries", 0, "--attack", "square"), "queries"),
        (("--sanity-samples", -1), "sanity"),
    ],
)
def test_eval_bad_new_options_exit_2_with_one_line(trained_run, tmp_path, args, message):
    result = invoke("eval", "--model", trained_run, "--samples", 10, "--iters", 1, "--runs-dir", tmp_path, *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("name", ["pgd", "auto"])
def test_attacking_rows_in_place_equals_attacking_their_copy(name, linear_model):
    from advcli.evaluation import attack_samples
    from advcli.runtime import Victim

    x = torch.rand(70, 1, 8, 8, generator=torch.Generator().manual_seed(6))
    y = predict(linear_model, x)
    rows = torch.arange(3, 70, 2)
    attack = resolve_attack(name, eps=0.1, iters=5, queries=30)
    options = dict(num_classes=4, batch_size=16, seed=3)
    victim = Victim.of(linear_model, precision="fp32")
    gathered = attack_samples(victim, x, y, attack, rows=rows, **options)
    copied = attack_samples(victim, x[rows], y[rows], attack, rows=torch.arange(len(rows)), **options)
    assert len(gathered.fooled_by) == len(rows)
    for field in ("fooled_by", "predictions", "targets"):
        assert torch.equal(getattr(gathered, field), getattr(copied, field))
    assert gathered.largest == copied.largest and gathered.queries == copied.queries
    assert 0 < int((gathered.fooled_by >= 0).sum()) < len(rows)
