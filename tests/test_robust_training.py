"""Robust-training contracts: methods within their bounds, schedules, the collapse guard,
validation on training data only, and resume giving the same result as an uninterrupted run.

The runs use the tiny digits pooled down to 7x7 pixels, so every training here takes a second or less.
"""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from advcli.data import Dataset, load_dataset
from advcli.errors import AdvcliError, CheckpointError, OutputError
from advcli.io.runs import load_run
from advcli.training import (
    LR_SCHEDULES,
    METHODS,
    CollapseGuard,
    TrainConfig,
    ValidationResult,
    resume_training,
    robust_validation,
    save_training,
    split_validation,
    train_model,
)
from advcli.training.methods.n_fgsm import NFGSM_NOISE

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def small_spec(tiny_dataset, tmp_path_factory) -> str:
    """The tiny digits pooled to 1x7x7, as an npz spec (so resuming can reload it by name)."""
    path = tmp_path_factory.mktemp("small") / "small.npz"
    np.savez(path, x_train=F.avg_pool2d(tiny_dataset.x_train, 4).numpy(), y_train=tiny_dataset.y_train.numpy(),
             x_test=F.avg_pool2d(tiny_dataset.x_test, 4).numpy(), y_test=tiny_dataset.y_test.numpy())
    return f"npz:{path}"


@pytest.fixture(scope="module")
def small(small_spec) -> Dataset:
    return load_dataset(small_spec)


def _config(spec: str, **overrides) -> TrainConfig:
    base = dict(data=spec, device="cpu", epochs=2, batch_size=50, method="fgsm-rs", eps=0.1, val_iters=3)
    return TrainConfig.of(**{**base, **overrides})


def _weights(model) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


def _same_weights(first, second) -> bool:
    return first.keys() == second.keys() and all(torch.equal(first[key], second[key]) for key in first)


def _digest(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _stop_after(iterations: int):
    calls = []

    def should_stop() -> bool:
        calls.append(1)
        return len(calls) >= iterations

    return should_stop


# Methods ------------------------------------------------------------------------------------


class Recorder(torch.nn.Module):
    """Wraps a model and keeps the inputs of its forward passes (the last is the training input)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.detach().clone())
        return self.inner(x)


# (method, bound on |x_train_input - x|inf as a multiple of eps); n-fgsm is not projected.
BOUNDS = [("fgsm-rs", 1.0), ("pgd", 1.0), ("trades", 1.0), ("free", 1.0), ("n-fgsm", NFGSM_NOISE + 1.0)]


@pytest.mark.parametrize("method, bound", BOUNDS)
def test_each_method_trains_on_inputs_within_its_bound(method, bound, linear_model, linear_batch):
    x, y = linear_batch
    model = Recorder(linear_model).train()
    config = TrainConfig.of(method=method, eps=0.1, batch_size=len(x),
                            iters=3 if METHODS[method].multi_step else None).step_settings(0, 0)
    carry: dict[str, torch.Tensor] = {}
    generator = torch.Generator().manual_seed(0)
    largest = 0.0
    for _ in range(3):  # several updates, so free's carried perturbation moves
        loss, logits = METHODS[method].step(model, x, y, config, generator, carry)
        loss.backward()
        x_train = model.inputs[-1]
        assert 0 <= x_train.min() and x_train.max() <= 1
        largest = max(largest, float((x_train - x).abs().max()))
        assert largest <= bound * 0.1 + 1e-6
        assert logits.shape == (len(x), 4) and torch.isfinite(loss)
    assert largest > 0.05  # the inputs were actually perturbed
    if method == "n-fgsm":
        assert largest > 0.1 + 1e-6  # and n-fgsm's are not projected back onto the eps-ball


def test_n_fgsm_without_clipping_leaves_the_pixel_range(linear_model, linear_batch):
    x, y = linear_batch
    model = Recorder(linear_model).train()
    config = TrainConfig.of(method="n-fgsm", eps=0.1, clip=False).step_settings(0, 0)
    METHODS["n-fgsm"].step(model, x, y, config, torch.Generator().manual_seed(0), {})
    assert model.inputs[-1].min() < 0 or model.inputs[-1].max() > 1


def test_free_carries_its_perturbation_between_updates(linear_model, linear_batch):
    x, y = linear_batch
    config = TrainConfig.of(method="free", eps=0.1, batch_size=len(x)).step_settings(0, 0)
    carry: dict[str, torch.Tensor] = {}
    seen = []
    for _ in range(3):
        loss, _ = METHODS["free"].step(linear_model, x, y, config, torch.Generator(), carry)
        loss.backward()
        seen.append(carry["delta"].detach().clone())
    assert torch.count_nonzero(seen[0]) == 0  # starts at zero (Shafahi et al.)
    assert not torch.equal(seen[1], seen[0]) and not torch.equal(seen[2], seen[1])
    assert float(seen[2].abs().max()) <= 0.1 + 1e-6


def test_method_defaults_and_free_epoch_division():
    assert TrainConfig.of(method="pgd", eps=0.3).resolved().adversary.iters == 10
    assert TrainConfig.of(method="pgd", eps=0.3).step_size == pytest.approx(0.075)
    assert TrainConfig.of(method="trades", eps=0.3, iters=5).step_size == pytest.approx(0.15)
    assert TrainConfig.of(method="n-fgsm", eps=0.3).step_size == pytest.approx(0.3)
    assert TrainConfig.of(method="fgsm-rs", eps=0.3).resolved().adversary.init == "random"
    free = TrainConfig.of(method="free", eps=0.3, epochs=5)
    assert free.batch_replays == 4 and free.passes == 2
    assert free.with_flat(replays=5).passes == 1
    assert TrainConfig.of(method="fgsm-rs", eps=0.1).resolved().guard.val_split == 0.1
    assert TrainConfig.of().resolved().guard.val_split == 0.0


@pytest.mark.parametrize(
    "overrides",
    [
        {"method": "n-fgsm", "iters": 3}, {"method": "free", "iters": 2}, {"method": "trades", "init": "zero"},
        {"method": "pgd", "init": "gaussian"}, {"replays": 0}, {"beta": -1.0}, {"optimizer": "lbfgs"},
        {"lr_schedule": "cosine"}, {"eps_ramp": -1}, {"eps_ramp": 31}, {"val_split": 1.0}, {"val_split": -0.1},
        {"val_every": -1}, {"val_iters": 0}, {"collapse_drop": 0.0}, {"collapse_drop": 1.5}, {"on_collapse": "panic"},
    ],
)
def test_invalid_robust_settings_are_rejected(overrides):
    with pytest.raises(AdvcliError):
        TrainConfig.of(**{"method": "pgd", "eps": 0.1, **overrides}).validate()


# Schedules ----------------------------------------------------------------------------------


def test_lr_schedules_have_their_documented_shape():
    cyclic, multistep = LR_SCHEDULES["cyclic"], LR_SCHEDULES["multistep"]
    assert cyclic(0.0) == 0 and cyclic(0.4) == pytest.approx(1) and cyclic(1.0) == 0
    assert cyclic(0.2) == pytest.approx(0.5) and cyclic(0.7) == pytest.approx(0.5)
    assert [multistep(t) for t in (0.1, 0.5, 0.6, 0.75, 0.9)] == pytest.approx([1, 1, 0.1, 0.1, 0.01])
    assert LR_SCHEDULES["constant"](0.3) == 1


def test_loop_applies_the_lr_schedule_and_eps_ramp_per_iteration(small, small_spec):
    result = train_model(_config(small_spec, lr_schedule="cyclic", eps_ramp=1, val_split=0.0), dataset=small)
    rows = result.history
    per_epoch = len(rows) // 2
    lrs = [row["lr"] for row in rows]
    peak = max(range(len(lrs)), key=lrs.__getitem__)
    assert abs((peak + 1) / len(rows) - 0.4) < 1 / len(rows) and 0.009 < lrs[peak] <= 0.01
    assert lrs[-1] == pytest.approx(0.0)
    eps = [row["eps"] for row in rows]
    assert eps[0] == pytest.approx(0.1 / per_epoch) and eps[per_epoch - 1:] == pytest.approx([0.1] * (per_epoch + 1))
    assert all(a < b for a, b in zip(eps[:per_epoch - 1], eps[1:per_epoch]))


# Validation split and guard -----------------------------------------------------------------


def test_validation_split_is_seeded_disjoint_and_complete():
    split = split_validation(100, 0.1, seed=3)
    assert len(split.val) == 10 and len(split.train) == 90
    assert sorted(torch.cat([split.train, split.val]).tolist()) == list(range(100))
    assert torch.equal(split.val, split_validation(100, 0.1, seed=3).val)
    assert not torch.equal(split.val, split_validation(100, 0.1, seed=4).val)
    assert len(split_validation(100, 0.0, seed=3).val) == 0
    with pytest.raises(AdvcliError):
        split_validation(5, 0.01, seed=0)


def test_validation_uses_held_out_training_rows_never_the_test_split(small):
    # A test split of NaN: touching it would fail the attack's input check or poison the scores.
    poisoned = Dataset("poisoned", small.spec, small.x_train, small.y_train,
                       torch.full_like(small.x_test, float("nan")), small.y_test, small.classes, small.fingerprint)
    seen = []

    def validator(model, x, y, config):
        seen.append((x.clone(), y.clone()))
        return robust_validation(model, x, y, config)

    config = _config(small.spec, val_split=0.2, val_every=5)
    result = train_model(config, dataset=poisoned, validator=validator)
    held_out = split_validation(len(small.x_train), 0.2, config.seed + 2).val
    assert len(seen) >= 3
    for x, y in seen:
        assert torch.equal(x, small.x_train[held_out]) and torch.equal(y, small.y_train[held_out])
    assert all(0 <= row["val_robust_accuracy"] <= row["val_accuracy"] <= 1
               for row in result.history if "val_accuracy" in row)
    assert result.guard["validation"]["split"] == "train" and result.guard["validation"]["samples"] == len(held_out)


class ScriptedValidator:
    """Returns robust accuracies from a script and keeps the weights it was shown each time."""

    def __init__(self, robust: list[float]) -> None:
        self.robust = robust
        self.weights: list[dict[str, torch.Tensor]] = []

    def __call__(self, model, x, y, config) -> ValidationResult:
        self.weights.append(_weights(model))
        return ValidationResult(0.9, self.robust[len(self.weights) - 1])


def test_guard_stops_on_a_scripted_collapse_and_keeps_the_best_model(small, small_spec, tmp_path):
    script = ScriptedValidator([0.5, 0.7, 0.4, 0.9])
    warnings = []
    result = train_model(_config(small_spec, epochs=4, on_collapse="stop"), dataset=small, validator=script,
                         on_progress=lambda p: p.warning and warnings.append(p.warning))
    assert len(script.weights) == 3 and result.metrics["stopped_by_guard"]
    assert result.metrics["epochs_completed"] == 3
    assert _same_weights(_weights(result.model), script.weights[1])  # epoch 2: the best seen
    guard = result.guard
    assert guard["best_epoch"] == 2 and guard["best_val_robust_accuracy"] == 0.7 and guard["kept"] == "best"
    (event,) = guard["events"]
    assert event["epoch"] == 3 and event["action"] == "stop" and event["val_robust_accuracy"] == 0.4
    assert len(warnings) == 1 and "collapsed" in warnings[0]

    path = save_training(result, tmp_path / "guarded")
    meta = json.loads((path / "model.json").read_text())
    assert meta["guard"]["kept"] == "best" and meta["guard"]["events"] == guard["events"]
    assert "best" in meta["guard"]["selection"] and meta["metrics"]["val_robust_accuracy"] == 0.7
    assert _same_weights(_weights(load_run(path).model), script.weights[1])


def test_guard_rollback_restores_the_best_state_and_halves_the_lr(small, small_spec, monkeypatch):
    script = ScriptedValidator([0.5, 0.7, 0.45, 0.6])
    restored = []
    original = CollapseGuard.restore_best

    def restore_and_keep(self, model, optimizer):
        original(self, model, optimizer)
        restored.append(_weights(model))

    monkeypatch.setattr(CollapseGuard, "restore_best", restore_and_keep)
    result = train_model(_config(small_spec, epochs=4, on_collapse="rollback"), dataset=small, validator=script)
    assert len(script.weights) == 4 and not result.metrics["stopped_by_guard"]
    assert len(restored) == 1 and _same_weights(restored[0], script.weights[1])
    assert all(row["lr"] == pytest.approx(0.01) for row in result.history if row["epoch"] <= 3)
    assert all(row["lr"] == pytest.approx(0.005) for row in result.history if row["epoch"] == 4)
    (event,) = result.guard["events"]
    assert event["action"] == "rollback" and event["lr_scale"] == 0.5 and event["epoch"] == 3
    assert result.guard["best_epoch"] == 2 and result.guard["kept"] == "best"


def test_guard_continue_records_one_event_per_collapse_and_trains_on(small, small_spec):
    script = ScriptedValidator([0.5, 0.7, 0.3, 0.2, 0.6])
    result = train_model(_config(small_spec, epochs=5, on_collapse="continue"), dataset=small, validator=script)
    assert len(script.weights) == 5 and result.metrics["epochs_completed"] == 5
    assert [event["epoch"] for event in result.guard["events"]] == [3]
    assert _same_weights(_weights(result.model), script.weights[1])


def test_guard_keeps_the_last_model_when_it_is_the_best(small, small_spec):
    script = ScriptedValidator([0.2, 0.3])
    result = train_model(_config(small_spec), dataset=small, validator=script)
    assert result.guard["kept"] == "last" and not result.guard["events"]
    assert _same_weights(_weights(result.model), script.weights[-1])


def test_training_stuck_at_chance_is_flagged_once_and_recorded(small, small_spec, tmp_path):
    chance = 1 / small.num_classes

    def at_chance_from_the_start(model, x, y, config):
        return ValidationResult(chance, chance)

    warnings = []
    result = train_model(_config(small_spec, epochs=3), dataset=small, validator=at_chance_from_the_start,
                         on_progress=lambda p: p.warning and warnings.append((p.epoch, p.warning)))
    assert [epoch for epoch, _ in warnings] == [2]  # never after one epoch alone, and only once
    assert "chance level" in warnings[0][1] and "`eps_ramp`" in warnings[0][1]
    assert result.metrics["at_chance_epoch"] == 2
    meta = json.loads((save_training(result, tmp_path / "stuck") / "model.json").read_text())
    assert meta["metrics"]["at_chance_epoch"] == 2

    learning = train_model(_config(small_spec, epochs=3), dataset=small, validator=ScriptedValidator([0.2, 0.3, 0.4]))
    assert learning.metrics["at_chance_epoch"] is None


# Resume -------------------------------------------------------------------------------------

RESUME_CASES = {
    "fgsm-rs": dict(method="fgsm-rs", lr_schedule="cyclic", eps_ramp=1, val_every=4),
    "pgd": dict(method="pgd", iters=2, val_split=0.0),
    "trades": dict(method="trades", iters=2, optimizer="adam", lr=0.001, lr_schedule="multistep"),
    "free": dict(method="free", replays=2, epochs=4, val_every=3),
    "n-fgsm": dict(method="n-fgsm", on_collapse="rollback", collapse_drop=0.01),
    "none": dict(method="none", eps=0.0),
    "fgsm-rs-fp32": dict(method="fgsm-rs", precision="fp32", val_every=4),
    "free-bf16": dict(method="free", replays=2, epochs=2, val_every=3, precision="bf16"),
    "ibp": dict(method="ibp", eps_ramp=1, optimizer="adam", lr=0.001, val_every=4),
    "crown-ibp": dict(method="crown-ibp", eps=0.05, eps_ramp=1, val_every=5, on_collapse="rollback",
                      collapse_drop=0.01),
}


def test_resume_cases_cover_every_method():
    assert {case["method"] for case in RESUME_CASES.values()} == set(METHODS)


@pytest.mark.parametrize("case", sorted(RESUME_CASES))
def test_resume_gives_the_same_result_as_an_uninterrupted_run(case, small, small_spec, tmp_path):
    config = _config(small_spec, **RESUME_CASES[case])
    straight = train_model(config, dataset=small)
    trained_on = len(small.x_train) - (straight.guard["validation"]["samples"] if straight.guard else 0)
    per_epoch = math.ceil(trained_on / config.optimization.batch_size)
    assert straight.metrics["iterations"] == config.passes * per_epoch * config.batch_replays  # free: m updates per batch
    # Interrupt mid-epoch (an epoch has 11 or 12 iterations here), then continue from the run folder.
    stopped = train_model(config, dataset=small, should_stop=_stop_after(7))
    assert stopped.interrupted and stopped.metrics["iterations"] == 7
    first = save_training(stopped, tmp_path / "run")
    assert (first / "resume.safetensors").is_file() and (first / "resume.json").is_file()
    before = _digest(first)
    path, resumed = resume_training(first, dataset=small)

    assert path == tmp_path / "run-resumed" and _digest(first) == before
    assert _same_weights(_weights(resumed.model), _weights(straight.model))
    assert resumed.history == straight.history and resumed.guard == straight.guard
    ignore = {"train_seconds"}
    assert {k: v for k, v in resumed.metrics.items() if k not in ignore} == \
        {k: v for k, v in straight.metrics.items() if k not in ignore}
    meta = json.loads((path / "model.json").read_text())
    assert meta["resumed_from"]["iteration"] == 7 and "resume" not in meta


def test_a_resumed_run_can_be_interrupted_and_resumed_again(small, small_spec, tmp_path):
    config = _config(small_spec, method="free", replays=2, val_every=5)
    straight = train_model(config, dataset=small)
    first = save_training(train_model(config, dataset=small, should_stop=_stop_after(5)), tmp_path / "a")
    second, again = resume_training(first, out=tmp_path / "b", dataset=small, should_stop=_stop_after(9))
    assert again.interrupted and again.metrics["iterations"] == 14
    _, final = resume_training(second, out=tmp_path / "c", dataset=small)
    assert _same_weights(_weights(final.model), _weights(straight.model)) and final.history == straight.history


def test_a_resume_state_saved_before_precision_was_a_setting_resumes_in_fp32(small, small_spec, tmp_path):
    config = _config(small_spec, precision="fp32")
    straight = train_model(config, dataset=small)
    first = save_training(train_model(config, dataset=small, should_stop=_stop_after(5)), tmp_path / "old")
    info = json.loads((first / "resume.json").read_text())
    del info["config"]["precision"]
    data = (json.dumps(info, indent=1) + "\n").encode()
    (first / "resume.json").write_bytes(data)
    meta = json.loads((first / "model.json").read_text())
    meta["resume"]["info_sha256"] = "sha256:" + hashlib.sha256(data).hexdigest()
    (first / "model.json").write_text(json.dumps(meta, indent=2))
    path, resumed = resume_training(first, dataset=small)
    assert resumed.config.precision == "fp32"
    assert _same_weights(_weights(resumed.model), _weights(straight.model)) and resumed.history == straight.history


def test_resume_refuses_finished_altered_or_occupied_runs(small, small_spec, tmp_path):
    config = _config(small_spec, epochs=1)
    finished = save_training(train_model(config, dataset=small), tmp_path / "finished")
    with pytest.raises(CheckpointError, match="not interrupted"):
        resume_training(finished, dataset=small)
    stopped = save_training(train_model(config, dataset=small, should_stop=_stop_after(2)), tmp_path / "stopped")
    (tmp_path / "stopped-resumed").mkdir()
    with pytest.raises(OutputError, match="already exists"):
        resume_training(stopped, dataset=small)
    state = stopped / "resume.safetensors"
    data = bytearray(state.read_bytes())
    data[-1] ^= 0xFF
    state.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum"):
        resume_training(stopped, out=tmp_path / "elsewhere", dataset=small)
    assert not (tmp_path / "elsewhere").exists()


# Command line -------------------------------------------------------------------------------


def _invoke(*args):
    from typer.testing import CliRunner

    from advcli.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def test_robust_train_options_map_onto_the_config(small_spec, tmp_path, monkeypatch):
    import advcli.training.api

    captured = []

    def fake_train(config, **kwargs):
        captured.append(config)
        raise AdvcliError("captured")

    monkeypatch.setattr(advcli.training.api, "train", fake_train)
    result = _invoke(
        "robust-train", "--data", small_spec, "--method", "trades", "--eps", 0.3, "--alpha", 0.05, "--iters", 7,
        "--no-clip", "--beta", 3.0, "--replays", 2, "--optimizer", "adam", "--lr-schedule", "cyclic",
        "--eps-ramp", 2, "--val-split", 0.25, "--val-every", 50, "--val-iters", 5, "--collapse-drop", 0.3,
        "--on-collapse", "rollback", "--epochs", 4, "--batch-size", 64, "--lr", 0.002, "--momentum", 0.5,
        "--seed", 9, "--device", "cpu", "--out", tmp_path / "never",
    )
    assert result.exit_code == 2 and "captured" in result.stderr
    assert captured == [TrainConfig.of(
        data=small_spec, arch="seed-cnn", epochs=4, batch_size=64, lr=0.002, momentum=0.5, seed=9, device="cpu",
        method="trades", eps=0.3, alpha=0.05, init=None, iters=7, clip=False, beta=3.0, replays=2,
        optimizer="adam", lr_schedule="cyclic", eps_ramp=2, val_split=0.25, val_every=50, val_iters=5,
        collapse_drop=0.3, on_collapse="rollback",
    )]
    captured.clear()
    assert _invoke("robust-train", "--data", small_spec, "--out", tmp_path / "never").exit_code == 2
    assert captured == [TrainConfig.of(data=small_spec, method="fgsm-rs", eps=0.1)]
    captured.clear()
    assert _invoke("train", "--data", small_spec, "--optimizer", "adam", "--lr-schedule", "multistep").exit_code == 2
    assert captured == [TrainConfig.of(data=small_spec, optimizer="adam", lr_schedule="multistep")]


@pytest.mark.parametrize(
    "args, message",
    [
        (("--val-split", 1.5), "validation split"),
        (("--collapse-drop", 0), "--collapse-drop"),
        (("--eps-ramp", 40), "--eps-ramp"),
        (("--method", "n-fgsm", "--iters", 3), "single attack step"),
        (("--method", "trades", "--init", "zero"), "--init"),
        (("--replays", 0), "replays"),
        (("--val-iters", 0), "val-iters"),
        (("--beta", -1), "beta"),
        (("--resume", "/nonexistent/run"), "/nonexistent/run"),
    ],
)
def test_bad_robust_training_options_exit_2_with_one_line(args, message, small_spec, tmp_path):
    data = () if "--resume" in args else ("--data", small_spec)
    result = _invoke("robust-train", *data, *args, "--out", tmp_path / "never")
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("args", [("--method", "magic"), ("--on-collapse", "panic"), ("--optimizer", "lbfgs"),
                                  ("--lr-schedule", "cosine")])
def test_unknown_choices_exit_2(args, tmp_path):
    assert _invoke("robust-train", *args, "--out", tmp_path / "never").exit_code == 2


def test_cli_resume_continues_into_a_new_run_and_refuses_other_options(small, small_spec, tmp_path):
    config = _config(small_spec, epochs=1)
    stopped = save_training(train_model(config, dataset=small, should_stop=_stop_after(3)), tmp_path / "run")
    before = _digest(stopped)
    refused = _invoke("robust-train", "--resume", stopped, "--eps", 0.2)
    assert refused.exit_code == 2 and "--eps" in refused.stderr
    result = _invoke("robust-train", "--resume", stopped, "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["run"] == str(tmp_path / "run-resumed") and payload["iterations"] == 11
    assert _digest(stopped) == before
    again = _invoke("robust-train", "--resume", tmp_path / "run-resumed")
    assert again.exit_code == 2 and "not interrupted" in again.stderr
