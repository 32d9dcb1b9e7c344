"""Precision contracts: how choices resolve, that reduced precision only ever crafts while float32
decides, that fp32 is exactly the plain float32 computation, and the option end to end."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import advcli.runtime.precision as precision_module
from advcli.attacks import bim, input_gradient, judged_scores, perturb
from advcli.cli import app
from advcli.cli.options import PrecisionChoice
from advcli.errors import AdvcliError
from advcli.evaluation import evaluate_model
from advcli.io.runs import load_run
from advcli.runtime import PRECISIONS, Autocast, attack_mode, crafting_model, deciding_model, predict, resolve_precision
from advcli.threat import ThreatModel
from advcli.training import METHODS, TrainConfig, train_model

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


# Resolving ----------------------------------------------------------------------------------


def test_choices_are_the_registry_plus_auto():
    assert PRECISIONS.names() == ("auto", "fp32", "bf16", "fp16")
    assert [choice.value for choice in PrecisionChoice] == list(PRECISIONS.names())


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_on_the_cpu_is_bf16_only_where_it_is_native(native, expected, monkeypatch):
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: native)
    assert resolve_precision("auto", CPU) == expected
    assert resolve_precision("auto", CPU, training=True) == expected
    assert resolve_precision("fp32", CPU) == "fp32" and resolve_precision("bf16", CPU) == "bf16"


@pytest.mark.parametrize("bf16, attacks, training", [(True, "bf16", "bf16"), (False, "fp16", "fp32")])
def test_auto_on_cuda_follows_bf16_support_and_never_trains_in_fp16(bf16, attacks, training, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)
    cuda = torch.device("cuda")
    assert resolve_precision("auto", cuda) == attacks
    assert resolve_precision("auto", cuda, training=True) == training
    assert resolve_precision("fp16", cuda) == "fp16"


def test_impossible_choices_are_refused_with_one_line():
    with pytest.raises(AdvcliError, match="needs a CUDA device"):
        resolve_precision("fp16", CPU)
    with pytest.raises(AdvcliError, match="not supported for training"):
        resolve_precision("fp16", torch.device("cuda"), training=True)
    for bad in ("fp64", "BF16", "", "half"):
        with pytest.raises(AdvcliError, match="precision.*one of"):
            resolve_precision(bad, CPU)
    with pytest.raises(AdvcliError, match="fp16 is not supported for training"):
        TrainConfig.of(precision="fp16").validate()
    with pytest.raises(AdvcliError, match="precision.*one of"):
        TrainConfig.of(precision="double").validate()


# The wrapper --------------------------------------------------------------------------------


class TinyConv(nn.Module):
    """A small convolutional classifier on 1x8x8 inputs, with a batch norm to catch mode leaks."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.norm = nn.BatchNorm2d(8)
        self.linear = nn.Linear(8 * 4 * 4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = nn.functional.max_pool2d(torch.relu(self.norm(self.conv(x))), 2)
        return self.linear(out.flatten(1))


class TinyDense(nn.Module):
    """No convolution weights (so no copy is made), and a batch norm to catch mode leaks."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_every_precision_crafts_on_a_frozen_channels_last_copy_and_reduced_precision_wraps_it():
    model = TinyConv().eval()
    plain = crafting_model(model, "fp32", CPU)
    assert not isinstance(plain, Autocast) and plain is not model and deciding_model(plain) is plain
    assert plain.conv.weight.stride() == (9, 1, 3, 1) and not plain.conv.weight.requires_grad
    wrapper = crafting_model(model, "bf16", CPU)
    judge = deciding_model(wrapper)
    assert isinstance(wrapper, Autocast) and judge is wrapper.crafting and judge is not model
    assert judge.conv.weight.stride() == (9, 1, 3, 1)  # channels-last
    assert not any(parameter.requires_grad for parameter in judge.parameters())
    assert model.conv.weight.stride() == (9, 9, 3, 1) and model.conv.weight.requires_grad  # the original is untouched
    x = torch.rand(5, 1, 8, 8)
    logits = wrapper(x)
    assert logits.dtype == torch.float32
    with torch.no_grad():
        exact, judged, plain_logits = model(x), judge(x), plain(x)
    assert not torch.equal(logits, exact) and torch.allclose(logits, exact, atol=0.05, rtol=0.05)
    assert judged.dtype == torch.float32 and torch.allclose(judged, exact, atol=1e-5, rtol=1e-5)
    assert torch.allclose(plain_logits, exact, atol=1e-5, rtol=1e-5)
    dense = TinyDense()
    assert crafting_model(dense, "fp32", CPU) is dense  # nothing to re-lay out: no copy
    assert deciding_model(crafting_model(dense, "bf16", CPU)) is dense
    with pytest.raises(AdvcliError):
        Autocast(model, "fp32", "cpu")


class Constant(nn.Module):
    """Whatever the input, the logits of one fixed point: its prediction never changes."""

    def __init__(self, model: nn.Module, point: torch.Tensor) -> None:
        super().__init__()
        self.model, self.point = model, point

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.point).expand(len(x), -1) + 0 * x.flatten(1)[:, :1]


def test_early_stopping_waits_for_the_float32_judge(linear_model, linear_batch):
    x, y = linear_batch
    point = x[:1].expand(len(x), -1, -1, -1)
    with torch.no_grad():
        y = predict(linear_model, point)  # the constant judge classifies every sample correctly, always
    judge = Constant(linear_model, x[:1])
    # The crafting model is fooled at once, the judge never: no sample may stop early.
    agreeing = Autocast(linear_model, "bf16", "cpu")
    disputed = Autocast(linear_model, "bf16", "cpu", reference=judge)
    claims = judged_scores(agreeing, x, agreeing(x), y, None, torch.zeros(len(x), dtype=torch.long))
    assert (claims == 2).any()
    assert (judged_scores(disputed, x, disputed(x), y, None, torch.zeros(len(x), dtype=torch.long)) == 0).all()
    options = dict(alpha=0.05, iters=8, init="zero")
    with attack_mode(disputed):
        waited = perturb(disputed, x, y, ThreatModel(0.3), early_stop=True, **options)
        full = perturb(disputed, x, y, ThreatModel(0.3), early_stop=False, **options)
    with attack_mode(agreeing):
        stopped = perturb(agreeing, x, y, ThreatModel(0.3), early_stop=True, **options)
    assert torch.equal(waited, full)
    assert not torch.equal(stopped, full)


@pytest.mark.parametrize("network", [TinyConv, TinyDense])
@pytest.mark.parametrize("attack", ["bim", "pgd", "apgd-ce", "square", "auto"])
def test_reduced_precision_evaluation_leaves_the_model_as_it_was(attack, network):
    model = network().train()
    x = torch.rand(12, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad(), attack_mode(model):
        y = model(x).argmax(1)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    report = evaluate_model(model, x, y, attacks=(attack,), eps=0.1, iters=5, queries=20, sanity_samples=0,
                            precision="bf16")
    assert report.precision == "bf16" and report.clean_accuracy == 1.0
    assert model.training and all(module.training for module in model.modules())
    assert all(parameter.requires_grad for parameter in model.parameters())
    assert all(torch.equal(before[key], value) for key, value in model.state_dict().items())  # batch-norm stats too
    assert all(p.stride() == torch.empty(p.shape).stride() for p in model.parameters())


# Attacks and evaluation ---------------------------------------------------------------------


def test_fp32_evaluation_is_exactly_the_plain_float32_attack(trained_run, tiny_dataset, monkeypatch):
    run = load_run(trained_run)
    x, y = tiny_dataset.x_test[:60], tiny_dataset.y_test[:60]

    def no_autocast(*args, **kwargs):
        raise AssertionError("fp32 must not autocast")

    with monkeypatch.context() as patch:
        patch.setattr(Autocast, "forward", no_autocast)
        report = evaluate_model(run.model, x, y, attacks=("bim",), eps=0.1, sanity_samples=0, precision="fp32")
    payload = report.to_dict()
    assert payload["precision"] == "fp32" and payload["config"]["precision"] == "fp32"
    clean = predict(run.model, x) == y
    expected = clean.clone()
    expected[clean] = predict(run.model, bim(run.model, x[clean], y[clean], eps=0.1)) == y[clean]
    assert report.robust_accuracy == float(expected.float().mean())
    assert report.clean_accuracy == float(clean.float().mean())


def test_bf16_evaluation_agrees_with_fp32():
    model = TinyConv(3).eval()
    x = torch.rand(400, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    y = predict(model, x)
    reports = {p: evaluate_model(model, x, y, attacks=("bim", "pgd"), eps=(0.01, 0.02, 0.05), iters=10,
                                 sanity_samples=40, precision=p) for p in ("fp32", "bf16")}
    fp32, bf16 = reports["fp32"], reports["bf16"]
    assert bf16.to_dict()["precision"] == "bf16" and fp32.to_dict()["precision"] == "fp32"
    assert bf16.clean_accuracy == fp32.clean_accuracy == 1.0  # clean predictions are always float32
    for ours, theirs in zip(bf16.curve, fp32.curve):
        assert abs(ours.robust_accuracy - theirs.robust_accuracy) <= 0.01
        for a, b in zip(ours.attacks, theirs.attacks):
            assert abs(a.robust_accuracy - b.robust_accuracy) <= 0.01
            assert a.max_perturbation <= a.attack.eps + 1e-5
    assert 0.1 < bf16.robust_accuracy < 0.5  # the attacks did something, and not everything


# Training -----------------------------------------------------------------------------------


def _dtype_recorder(monkeypatch) -> list[torch.dtype]:
    """Record the dtype of every convolution output while the model built for training runs."""
    import advcli.training.loop as training

    seen: list[torch.dtype] = []
    build = training.build_model

    def recording_build(*args, **kwargs):
        model = build(*args, **kwargs)
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                module.register_forward_hook(lambda mod, inputs, output: seen.append(output.dtype))
        return model

    monkeypatch.setattr(training, "build_model", recording_build)
    return seen


@pytest.mark.parametrize("method", sorted(METHODS))
def test_each_method_trains_in_bf16(method, micro_dataset, micro_spec, monkeypatch):
    seen = _dtype_recorder(monkeypatch)
    config = TrainConfig.of(data=micro_spec, device="cpu", epochs=1, batch_size=60, method=method,
                            eps=0.0 if method == "none" else 0.1, iters=2 if method in ("pgd", "trades") else None,
                            val_iters=2, precision="bf16")
    result = train_model(config, dataset=micro_dataset)
    assert result.config.precision == "bf16" and result.metrics["precision"] == "bf16"
    assert torch.bfloat16 in seen  # the steps ran under autocast
    assert all(torch.isfinite(torch.tensor(row["loss"])) for row in result.history)
    assert all(p.stride() == torch.empty(p.shape).stride() for p in result.model.parameters())  # default layout
    with torch.no_grad():  # the recorded figure is the float32 accuracy of the model returned
        recomputed = float((result.model(micro_dataset.x_test).argmax(1) == micro_dataset.y_test).float().mean())
    assert result.metrics["clean_test_accuracy"] == pytest.approx(recomputed, abs=1e-6)


def test_fp32_training_never_autocasts(tiny_dataset, tiny_spec, monkeypatch):
    seen = _dtype_recorder(monkeypatch)
    config = TrainConfig.of(data=tiny_spec, device="cpu", epochs=1, batch_size=200, method="fgsm-rs", eps=0.1,
                         val_iters=2, precision="fp32")
    result = train_model(config, dataset=tiny_dataset)
    assert seen and set(seen) == {torch.float32} and result.metrics["precision"] == "fp32"


# Command line -------------------------------------------------------------------------------


def test_training_records_the_resolved_precision(micro_spec, tmp_path):
    result = invoke("robust-train", "--data", micro_spec, "--epochs", 1, "--val-iters", 2, "--device", "cpu",
                    "--precision", "bf16", "--out", tmp_path / "run", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["precision"] == "bf16"
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    assert meta["config"]["precision"] == "bf16" and meta["training"]["precision"] == "bf16"
    result = invoke("train", "--data", micro_spec, "--epochs", 1, "--device", "cpu", "--out", tmp_path / "auto", "--json")
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "auto" / "model.json").read_text())
    assert meta["config"]["precision"] == resolve_precision("auto", CPU, training=True) != "auto"


@pytest.mark.parametrize("choice", ["fp32", "bf16"])
def test_eval_and_attack_accept_the_option_and_report_it(choice, micro_run, tmp_path):
    trained_run = micro_run
    result = invoke("eval", "--model", trained_run, "--samples", 40, "--device", "cpu", "--sanity-samples", 0,
                    "--precision", choice, "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["precision"] == choice and payload["config"]["precision"] == choice
    result = invoke("eval", "--model", trained_run, "--samples", 40, "--device", "cpu", "--sanity-samples", 0,
                    "--precision", choice)
    assert result.exit_code == 0 and choice in result.stdout
    result = invoke("attack", "--model", trained_run, "--samples", 16, "--device", "cpu", "--precision", choice,
                    "--out", tmp_path / "adv.npz", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["precision"] == choice


@pytest.mark.parametrize("command", [
    ("eval", "--samples", 8), ("attack", "--samples", 8), ("robust-train", "--epochs", 1), ("train", "--epochs", 1),
])
def test_fp16_on_the_cpu_exits_2_with_one_line(command, trained_run, tiny_spec, tmp_path):
    where = ("--data", tiny_spec, "--out", tmp_path / "run") if "train" in command[0] else ("--model", trained_run)
    result = invoke(*command, *where, "--device", "cpu", "--precision", "fp16")
    assert result.exit_code == 2
    assert "fp16" in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_unknown_precision_is_a_usage_error(trained_run):
    result = invoke("eval", "--model", trained_run, "--precision", "fp64")
    assert result.exit_code == 2


class Confident(nn.Module):
    """A classifier so sure of itself that its cross-entropy gradients fall below fp16's range."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.linear = nn.Linear(4 * 8 * 8, 3)
        with torch.no_grad():
            self.linear.bias.copy_(torch.tensor([25.0, 0.0, 0.0]))  # class 0 by a margin of about 25

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.conv(x).flatten(1))


def test_fp16_gradients_of_confident_samples_do_not_underflow():
    model = Confident().eval()
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with attack_mode(model):
        y = predict(model, x)
        exact, _ = input_gradient(model, x, y)
        plain = x.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.float16):
            logits = model(plain)
        (underflowed,) = torch.autograd.grad(nn.functional.cross_entropy(logits.float(), y, reduction="sum"), plain)
        rescued, _ = input_gradient(Autocast(model, "fp16", "cpu"), x, y)
    assert (exact != 0).all() and exact.abs().max() < 1e-8  # tiny, but there in float32
    assert (underflowed == 0).all()  # plain fp16 autocast loses them
    assert (rescued != 0).float().mean() > 0.95
    assert (rescued.sign() == exact.sign()).float().mean() > 0.95
    assert torch.allclose(rescued, exact, rtol=0.05, atol=exact.abs().max().item() * 0.02)
