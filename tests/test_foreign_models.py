"""Evaluating models advcli did not train: ONNX files attacked white-box through their conversion,
the input contract options, Python modules, the pickled formats, and the fallbacks when the
conversion is refused. Every figure is judged by the model itself (onnxruntime on an ONNX file)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import helper
from onnx_import_helpers import export_legacy
from torch import nn
from typer.testing import CliRunner

import advcli
from advcli.cli import app
from advcli.errors import AdvcliError
from advcli.export import export_onnx
from advcli.io.runs import load_run

runner = CliRunner()
COMMON = ("--samples", 40, "--device", "cpu", "--precision", "fp32", "--sanity-samples", 0, "--json")


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_line(text: str) -> bool:
    return len(text.strip().splitlines()) == 1


def report_of(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


class ThirdParty(nn.Module):
    """How another framework ships the run's classifier: NHWC pixels in 0..255, (x - 127.5) / 127.5 at
    the front, a BatchNorm mapping that to [0, 1], and a trailing Softmax."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.norm = nn.BatchNorm2d(1)
        with torch.no_grad():
            self.norm.running_mean.fill_(-1.0)
            self.norm.running_var.fill_(4.0 - self.norm.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x.permute(0, 3, 1, 2) - 127.5) / 127.5
        return torch.softmax(self.inner(self.norm(x)), 1)


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory) -> Path:
    return export_onnx(load_run(trained_run), tmp_path_factory.mktemp("foreign") / "model.onnx", parity_samples=16).path


@pytest.fixture(scope="module")
def third_party(trained_run, tmp_path_factory) -> Path:
    model = ThirdParty(load_run(trained_run).model.cpu()).eval()
    path = tmp_path_factory.mktemp("third") / "keras-like.onnx"
    path.write_bytes(export_legacy(model, torch.rand(1, 28, 28, 1) * 255, 13))
    ops = [node.op_type for node in onnx.load(str(path)).graph.node]
    assert {"Transpose", "Sub", "Div", "BatchNormalization", "Softmax"} <= set(ops)
    return path


def _without_source(path: Path, out: Path) -> Path:
    """A copy whose advcli metadata names no reachable source run (a file shipped on its own)."""
    proto = onnx.load(str(path))
    for entry in proto.metadata_props:
        if entry.key == "advcli.source_run":
            entry.value = str(out.parent / "gone")
    onnx.save(proto, str(out))
    return out


def _with_einsum(path: Path, out: Path) -> Path:
    """The file with an identity Einsum on its logits: onnxruntime runs it, the converter does not."""
    proto = onnx.load(str(path))
    final = proto.graph.output[0].name
    for node in proto.graph.node:
        node.output[:] = [f"{name}_pre" if name == final else name for name in node.output]
    proto.graph.node.append(helper.make_node("Einsum", [f"{final}_pre"], [final], equation="ij->ij"))
    onnx.save(proto, str(out))
    return out


# White-box on the file itself ---------------------------------------------------------------------


@pytest.mark.slow
def test_an_exported_model_is_attacked_white_box_to_the_same_figure(exported, trained_run):
    attacks = ("--attack", "pgd", "--attack", "auto", "--iters", 5, "--queries", 20, "--eps", 0.1)
    on_file = report_of(invoke("eval", "--model", exported, *attacks, *COMMON))
    on_run = report_of(invoke("eval", "--model", trained_run, *attacks, *COMMON))
    assert on_file["white_box"]["mode"] == "converted" and on_file["white_box"]["parity"]["passed"]
    assert on_file["white_box"]["parity"]["relative_diff"] <= 1e-4
    assert on_file["backend"] == "onnxruntime" and on_run["white_box"]["mode"] == "native"
    assert on_file["clean_accuracy"] == on_run["clean_accuracy"]
    for mine, theirs in zip(on_file["attacks"], on_run["attacks"]):
        assert mine["transfer_from"] is None and mine["robust_accuracy"] == theirs["robust_accuracy"]
    assert on_file["robust_accuracy"] == on_run["robust_accuracy"] < on_file["clean_accuracy"]


def test_a_third_party_file_is_attacked_white_box_under_its_contract(third_party, trained_run):
    contract = ("--input-range", "0,255", "--layout", "nhwc")
    attacks = ("--attack", "pgd", "--iters", 5, "--eps", 0.1, "--data", f"npz:{_data_of(trained_run)}")
    result = invoke("eval", "--model", third_party, *contract, *attacks, *COMMON)
    report = report_of(result)
    on_run = report_of(invoke("eval", "--model", trained_run, *attacks, *COMMON))
    assert report["white_box"]["mode"] == "converted" and report["warnings"] == []
    assert any("trailing Softmax" in note for note in report["white_box"]["conversion_notes"])
    assert report["contract"]["input_range"] == [0.0, 255.0] and report["contract"]["layout"] == "nhwc"
    assert report["config"]["layout"] == "nhwc"
    assert report["clean_accuracy"] == on_run["clean_accuracy"]
    # The same classifier behind another front end: the same figure, to within one sample.
    assert abs(report["robust_accuracy"] - on_run["robust_accuracy"]) <= 1 / 40 + 1e-9
    assert report["attacks"][0]["max_perturbation"] <= 0.1 + 1e-6
    assert "converted to torch" in result.stderr

    square = report_of(invoke("eval", "--model", third_party, *contract, *attacks, "--no-convert", "--queries", 20,
                              *COMMON))
    assert square["white_box"]["mode"] == "black-box" and [a["name"] for a in square["attacks"]] == ["square"]
    assert report["robust_accuracy"] <= square["robust_accuracy"]


def _data_of(run: Path) -> str:
    return load_run(run).data_spec.split(":", 1)[1]


def test_wrong_contracts_are_named(third_party, trained_run):
    data = ("--data", f"npz:{_data_of(trained_run)}", "--attack", "pgd", "--iters", 2)
    layout = invoke("eval", "--model", third_party, *data, *COMMON)
    assert layout.exit_code == 2 and "--layout nhwc" in layout.stderr and one_line(layout.stderr)
    scaled = invoke("eval", "--model", third_party, "--layout", "nhwc", *data, *COMMON)
    report = report_of(scaled)
    assert any("takes 0..255 pixels, but `input_range` is 0,1" in w for w in report["warnings"])
    assert "takes 0..255 pixels, but --input-range is 0,1" in scaled.stderr
    assert any("near chance" in w for w in report["warnings"])
    units = invoke("eval", "--model", third_party, "--layout", "nhwc", "--input-range", "0,255", "--mean", 0.5,
                   "--std", 0.25, *data, *COMMON)
    assert any("[0, 1] units" in w for w in report_of(units)["warnings"])
    bad = invoke("eval", "--model", third_party, "--layout", "nhwc", "--mean", "1,2", "--std", "1", *data, *COMMON)
    assert bad.exit_code == 2 and one_line(bad.stderr) and "--mean" in bad.stderr


def test_probability_outputs_without_a_softmax_to_cut_warn(trained_run, tmp_path):
    class HandSoftmax(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            exp = torch.exp(self.inner(x))
            return exp / exp.sum(1, keepdim=True)

    path = tmp_path / "probabilities.onnx"
    path.write_bytes(export_legacy(HandSoftmax(load_run(trained_run).model.cpu()), torch.rand(1, 1, 28, 28), 13))
    data = ("--data", f"npz:{_data_of(trained_run)}", "--attack", "pgd", "--iters", 2)
    report = report_of(invoke("eval", "--model", path, *data, *COMMON))
    assert report["white_box"]["mode"] == "converted"
    assert any("no trailing Softmax" in w for w in report["warnings"])
    logits = invoke("eval", "--model", path, "--outputs", "logits", *data, *COMMON)
    assert any("`outputs` logits" in w for w in report_of(logits)["warnings"])


def test_contract_options_are_refused_for_run_folders(trained_run):
    result = invoke("eval", "--model", trained_run, "--layout", "nhwc", "--samples", 5)
    assert result.exit_code == 2 and "--layout" in result.stderr and one_line(result.stderr)


# Fallbacks -------------------------------------------------------------------------------------------


def test_a_refused_conversion_falls_back_to_transfer_then_to_square(exported, trained_run, tmp_path):
    unsupported = _with_einsum(exported, tmp_path / "einsum.onnx")
    attacks = ("--attack", "pgd", "--iters", 3, "--queries", 10)
    transfer = invoke("eval", "--model", unsupported, *attacks, *COMMON)
    report = report_of(transfer)
    assert report["white_box"]["mode"] == "transfer" and "Einsum" in report["white_box"]["reason"]
    assert report["attacks"][0]["transfer_from"] == str(trained_run) and "transfer" in transfer.stderr

    alone = _with_einsum(_without_source(exported, tmp_path / "alone.onnx"), tmp_path / "alone-einsum.onnx")
    square = invoke("eval", "--model", alone, *attacks, *COMMON)
    report = report_of(square)
    assert report["white_box"]["mode"] == "black-box" and "Einsum" in report["white_box"]["reason"]
    assert [attack["name"] for attack in report["attacks"]] == ["square"]
    assert "replaced by square" in square.stderr and "Einsum" in square.stderr


def test_a_parity_failure_is_reported_with_its_figures(exported, tmp_path, monkeypatch):
    from advcli.runtime.onnx_import import whitebox

    original = whitebox.white_box
    monkeypatch.setattr(whitebox, "white_box", lambda *a, **k: original(*a, **{**k, "tolerance": -1.0}))
    alone = _without_source(exported, tmp_path / "alone.onnx")
    report = advcli.evaluate(model=str(alone), attacks=("pgd",), iters=2, queries=5, samples=10, device="cpu",
                             sanity_samples=0)
    assert report.white_box["mode"] == "black-box" and report.white_box["parity"]["passed"] is False
    assert report.white_box["parity"]["relative_diff"] <= 1e-4  # the figures measured, whatever the verdict
    assert "differ from onnxruntime" in report.white_box["reason"]


# uint8 inputs: the integer threat model ---------------------------------------------------------------


class Bytes(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.float() / 255.0)


def test_a_uint8_file_is_attacked_on_the_grid_it_accepts(trained_run, tmp_path):
    path = tmp_path / "bytes.onnx"
    path.write_bytes(export_legacy(Bytes(load_run(trained_run).model.cpu()),
                                   torch.zeros(1, 1, 28, 28, dtype=torch.uint8), 13))
    assert onnx.load(str(path)).graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    out = tmp_path / "adv.npz"
    result = invoke("attack", "--model", path, "--data", f"npz:{_data_of(trained_run)}", "--attack", "pgd",
                    "--eps", 0.1, "--iters", 5, "--samples", 30, "--device", "cpu", "--input-range", "0,255",
                    "--out", out, "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["white_box"]["mode"] == "converted" and payload["white_box"]["integer_grid"]
    assert payload["attack"]["eps"] == pytest.approx(25 / 255) and "integer threat model" in result.stderr
    saved = np.load(out)
    for images in (saved["originals"], saved["adversarials"]):
        assert np.abs(images * 255 - np.round(images * 255)).max() < 1e-4  # on the k/255 grid
    assert np.abs(saved["adversarials"] - saved["originals"]).max() <= 25 / 255 + 1e-6
    assert payload["adversarial_accuracy"] < payload["clean_accuracy"]


# Python modules ---------------------------------------------------------------------------------------


class ChannelsLastModule(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.permute(0, 3, 1, 2) / 255.0)


def test_a_python_module_is_evaluated_and_attacked_under_its_contract(trained_run, tiny_spec, tmp_path):
    run = load_run(trained_run)
    common = dict(data=tiny_spec, attacks=("pgd",), eps=0.1, iters=5, samples=40, device="cpu", precision="fp32",
                  sanity_samples=0)
    own = advcli.evaluate(model=str(trained_run), **common)
    mine = advcli.evaluate(model=run.model, **common)
    assert mine.backend == "python" and mine.white_box["mode"] == "native"
    assert (mine.clean_accuracy, mine.robust_accuracy) == (own.clean_accuracy, own.robust_accuracy)
    assert mine.to_dict()["config"]["model"] is None and "python module" in mine.model
    keras = advcli.evaluate(model=ChannelsLastModule(run.model), layout="nhwc", input_range=(0, 255), **common)
    assert abs(keras.robust_accuracy - own.robust_accuracy) <= 1 / 40 + 1e-9
    with pytest.raises(AdvcliError, match="`layout`"):
        advcli.evaluate(model=ChannelsLastModule(run.model), input_range=(0, 255), **common)
    with pytest.raises(AdvcliError, match="`out`"):
        advcli.craft(model=run.model, data=tiny_spec, attack="pgd", samples=4, device="cpu")
    crafted = advcli.craft(model=run.model, data=tiny_spec, attack="pgd", eps=0.1, iters=5, samples=16, device="cpu",
                           out=str(tmp_path / "module.npz"))
    assert crafted.adversarial_accuracy <= crafted.clean_accuracy and (tmp_path / "module.npz").is_file()


def test_probability_outputs_of_a_module_are_attacked_through_their_log(trained_run, tiny_spec):
    model = nn.Sequential(load_run(trained_run).model, nn.Softmax(1))
    report = advcli.evaluate(model=model, data=tiny_spec, attacks=("pgd",), iters=2, samples=10, device="cpu",
                             sanity_samples=0)
    assert any("probabilities" in warning for warning in report.warnings)
    with pytest.raises(AdvcliError, match="`outputs` probabilities"):
        advcli.evaluate(model=load_run(trained_run).model, data=tiny_spec, outputs="probabilities", samples=10,
                        device="cpu", sanity_samples=0)


# Pickled formats -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pickled(trained_run, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pickled")
    model = load_run(trained_run).model.cpu().eval()
    example = torch.rand(2, 1, 28, 28)
    torch.jit.save(torch.jit.trace(model, example), str(folder / "model.pt"))
    program = torch.export.export(model, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(folder / "model.pt2"))
    torch.save(model.state_dict(), str(folder / "weights.pth"))
    return {"torchscript": folder / "model.pt", "torch-export": folder / "model.pt2", "pickle": folder / "weights.pth"}


@pytest.mark.parametrize("kind", ["torchscript", "torch-export", "pickle"])
def test_pickled_files_are_refused_before_anything_is_loaded(pickled, tiny_spec, kind, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("a pickled file was loaded")

    monkeypatch.setattr(torch.jit, "load", never)
    monkeypatch.setattr(torch.export, "load", never)
    monkeypatch.setattr(torch, "load", never)
    unsuffixed = pickled[kind].with_name(f"{kind}-file")  # told apart by content, not by name
    shutil.copy(pickled[kind], unsuffixed)
    for path in (pickled[kind], unsuffixed):
        result = invoke("eval", "--model", path, "--data", tiny_spec, "--samples", 5)
        assert result.exit_code == 2 and one_line(result.stderr) and "ONNX" in result.stderr
        assert ("--trust-pickled-model" in result.stderr) == (kind != "pickle")
    if kind == "pickle":  # holds no program: refused even when trusted
        trusted = invoke("eval", "--model", pickled[kind], "--data", tiny_spec, "--samples", 5, "--trust-pickled-model")
        assert trusted.exit_code == 2 and one_line(trusted.stderr)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["torchscript", "torch-export"])
def test_trusted_pickled_programs_are_attacked_white_box(pickled, trained_run, tiny_spec, kind):
    attacks = ("--attack", "pgd", "--iters", 5, "--eps", 0.1, "--data", tiny_spec)
    result = invoke("eval", "--model", pickled[kind], "--trust-pickled-model", *attacks, *COMMON)
    report = report_of(result)
    on_run = report_of(invoke("eval", "--model", trained_run, *attacks, *COMMON))
    assert report["backend"] == kind and report["white_box"]["mode"] == "native"
    assert "RUN CODE" in result.stderr or "runs code" in result.stderr or "running code" in result.stderr
    assert any("TRUSTED PICKLED MODEL" in note for note in report["notes"])
    assert report["clean_accuracy"] == on_run["clean_accuracy"]
    assert abs(report["robust_accuracy"] - on_run["robust_accuracy"]) <= 1 / 40 + 1e-9


# The non-differentiable-operators sanity check -------------------------------------------------------


class Rounded(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(torch.round(x * 255) / 255)


def test_non_differentiable_operators_are_reported_as_possible_masking(trained_run, tiny_spec, exported, tmp_path):
    model = load_run(trained_run).model.cpu().eval()
    path = tmp_path / "rounded.onnx"
    path.write_bytes(export_legacy(Rounded(model), torch.rand(1, 1, 28, 28), 13))
    common = dict(data=tiny_spec, attacks=("pgd",), iters=2, samples=10, device="cpu", sanity_samples=0)
    checks = {c.name: c for c in advcli.evaluate(model=str(path), **common).sanity}
    assert checks["non-differentiable-operators"].fired and "Round (1)" in checks["non-differentiable-operators"].detail
    clean = {c.name: c for c in advcli.evaluate(model=str(exported), **common).sanity}
    assert clean["non-differentiable-operators"].checked and not clean["non-differentiable-operators"].fired
    scripted = torch.jit.trace(Rounded(model), torch.rand(2, 1, 28, 28))
    from_module = {c.name: c for c in advcli.evaluate(model=scripted, **common).sanity}
    assert from_module["non-differentiable-operators"].fired
    eager = {c.name: c for c in advcli.evaluate(model=model, **common).sanity}
    assert not eager["non-differentiable-operators"].checked
