"""Certified training (``ibp``, ``crown-ibp``) through the shared loop: the schedules follow the eps
ramp, the guard validates and selects by certified accuracy, bad settings are refused, and the
methods raise certified accuracy far above plain training's."""

from __future__ import annotations

import json

import pytest
import torch

from advcli.errors import AdvcliError
from advcli.training import METHODS, TrainConfig, ValidationResult, robust_validation, save_training, train_model
from advcli.training.methods.crown_ibp import beta
from advcli.training.methods.ibp import kappa
from advcli.verification import certified_loss, verify_batch

pytestmark = pytest.mark.usefixtures("one_thread")


def _config(spec: str, **overrides) -> TrainConfig:
    base = dict(data=spec, device="cpu", epochs=2, batch_size=50, method="ibp", eps=0.05, val_iters=2,
                optimizer="adam", lr=0.005)
    return TrainConfig.of(**{**base, **overrides})


def test_ramp_progress_is_the_share_of_the_eps_ramp_done():
    config = TrainConfig.of(method="crown-ibp", eps=0.2)
    settings = [config.step_settings(step, 4) for step in range(6)]
    assert [s.ramp_progress for s in settings] == pytest.approx([0.25, 0.5, 0.75, 1, 1, 1])
    assert [s.eps for s in settings] == pytest.approx([0.05, 0.1, 0.15, 0.2, 0.2, 0.2])
    assert config.step_settings(0, 0).ramp_progress == 1.0
    assert [kappa(s) for s in settings[:4]] == pytest.approx([0.875, 0.75, 0.625, 0.5])
    assert [beta(s) for s in settings[:4]] == pytest.approx([0.75, 0.5, 0.25, 0.0])


@pytest.mark.parametrize("method", ["ibp", "crown-ibp"])
def test_each_step_is_the_certified_loss_with_its_schedule(method, linear_model, linear_batch):
    x, y = linear_batch
    settings = TrainConfig.of(method=method, eps=0.1).step_settings(1, 4)
    loss, logits = METHODS[method].step(linear_model, x, y, settings, torch.Generator(), {})
    weights = dict(kappa=0.75, beta=0.5 if method == "crown-ibp" else 0.0)
    expected = certified_loss(linear_model, x, y, 0.05, **weights)
    torch.testing.assert_close(loss, expected.loss)
    torch.testing.assert_close(logits, linear_model(x))
    assert loss.requires_grad and not logits.requires_grad


@pytest.mark.parametrize("overrides, message", [
    ({"alpha": 0.1}, "`alpha` does not apply"), ({"iters": 3}, "`iters` does not apply"),
    ({"init": "zero"}, "`init` does not apply"), ({"eps": 0.0}, "needs `eps` > 0"),
])
def test_attack_settings_and_a_zero_eps_are_refused(overrides, message):
    with pytest.raises(AdvcliError, match=message):
        TrainConfig.of(**{"method": "crown-ibp", "eps": 0.1, **overrides}).validate()


def test_validation_measures_certified_accuracy_for_certified_methods_only(pooled_spec):
    from advcli.data import load_dataset
    from advcli.models import build_model

    x, y = load_dataset(pooled_spec).split("train")
    torch.manual_seed(0)
    model = build_model("seed-cnn", (1, 7, 7), 10)
    certified = robust_validation(model, x[:40], y[:40], _config(pooled_spec))
    expected = verify_batch(model, x[:40], y[:40], 0.05, method="crown", intermediate="ibp", attacks=())
    assert certified.certified_accuracy == pytest.approx(float(expected.verified.double().mean()))
    assert certified.score == certified.certified_accuracy
    plain = robust_validation(model, x[:40], y[:40], _config(pooled_spec, method="fgsm-rs"))
    assert plain.certified_accuracy is None and plain.score == plain.robust_accuracy


class ScriptedValidator:
    """Scripted (robust, certified) validation accuracies; keeps the weights it was shown each time."""

    def __init__(self, script: list[tuple[float, float]]) -> None:
        self.script, self.weights = script, []

    def __call__(self, model, x, y, config) -> ValidationResult:
        self.weights.append({key: value.clone() for key, value in model.state_dict().items()})
        robust, certified = self.script[len(self.weights) - 1]
        return ValidationResult(0.9, robust, certified)


def test_the_guard_keeps_the_best_certified_weights_and_records_both_measures(pooled_spec, tmp_path):
    script = ScriptedValidator([(0.5, 0.30), (0.6, 0.45), (0.7, 0.40)])  # PGD keeps rising, certified peaks
    result = train_model(_config(pooled_spec, epochs=3), validator=script)
    kept = result.model.state_dict()
    assert all(torch.equal(kept[key], value) for key, value in script.weights[1].items())
    assert result.guard["best_epoch"] == 2 and result.guard["kept"] == "best"
    assert result.guard["best_val_certified_accuracy"] == 0.45 and result.guard["best_val_robust_accuracy"] == 0.6
    assert "certified accuracy" in result.guard["selection"]
    assert result.guard["validation"]["certified"] == {"method": "crown", "intermediate": "ibp", "eps": 0.05}
    assert [row["val_certified_accuracy"] for row in result.history if "val_certified_accuracy" in row] == \
        [0.3, 0.45, 0.4]
    meta = json.loads((save_training(result, tmp_path / "run") / "model.json").read_text())
    assert meta["metrics"]["val_certified_accuracy"] == 0.45 and meta["training"]["alpha"] is None


def test_a_certified_collapse_is_caught_on_certified_accuracy(pooled_spec):
    script = ScriptedValidator([(0.5, 0.6), (0.55, 0.1)])  # PGD accuracy holds, certified accuracy collapses
    warnings = []
    result = train_model(_config(pooled_spec, epochs=3), validator=script,
                         on_progress=lambda p: p.warning and warnings.append(p.warning))
    assert result.metrics["stopped_by_guard"] and len(script.weights) == 2
    (event,) = result.guard["events"]
    assert event["val_certified_accuracy"] == 0.1 and event["best_val_certified_accuracy"] == 0.6
    assert len(warnings) == 1 and warnings[0].startswith("certified validation accuracy collapsed")


@pytest.mark.slow
def test_certified_training_certifies_what_plain_training_does_not(pooled_spec, tmp_path):
    from typer.testing import CliRunner

    from advcli.cli import app
    from advcli.data import load_dataset
    from advcli.io.runs import load_run

    x, y = load_dataset(pooled_spec).split("test")
    certified = {}
    for method in ("none", "crown-ibp"):
        args = ["robust-train", "--data", pooled_spec, "--method", method, "--eps", "0.03" if method != "none" else "0",
                "--eps-ramp", "2", "--epochs", "6", "--optimizer", "adam", "--lr", "0.005", "--batch-size", "50",
                "--val-iters", "2", "--device", "cpu", "--out", str(tmp_path / method), "--json"]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        model = load_run(tmp_path / method).model
        verdicts = verify_batch(model, x, y, 0.03, method="crown", attacks=())
        certified[method] = float(verdicts.verified.double().mean())
    meta = json.loads((tmp_path / "crown-ibp" / "model.json").read_text())
    assert meta["training"]["method"] == "crown-ibp" and meta["guard"]["best_val_certified_accuracy"] > 0
    assert certified["crown-ibp"] > certified["none"] + 0.1, certified
