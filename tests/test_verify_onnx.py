"""``advcli verify`` on ONNX files: an exported run verified through its conversion gives the run's
own verdicts; an input contract (0..255, NHWC) is honoured; onnxruntime judges; a file with an
operator the bounds cannot follow is refused in one line naming it, before any work."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper
from onnx_import_helpers import export_legacy, make_model, tensor
from typer.testing import CliRunner

import advcli
from advcli.cli import app
from advcli.io.runs import load_run

pytestmark = pytest.mark.usefixtures("one_thread")

EPS = "0,0.005,0.02,0.05"
FAST = ("--samples", 24, "--iters", 5, "--device", "cpu", "--json")


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def verified_json(*args):
    result = invoke("verify", "--eps", EPS, *FAST, *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def run_report(micro_run):
    return verified_json("--model", micro_run)


@pytest.fixture(scope="module")
def exported(micro_run, tmp_path_factory):
    return advcli.export_onnx(load_run(micro_run), tmp_path_factory.mktemp("verify-onnx") / "model.onnx",
                              parity_samples=16).path


def _same_verdicts(onnx_report, run_report):
    assert onnx_report["sample_indices"] == run_report["sample_indices"]
    assert onnx_report["clean_accuracy"] == run_report["clean_accuracy"]
    for ours, theirs in zip(onnx_report["curve"], run_report["curve"], strict=True):
        assert ours["verdicts"] == theirs["verdicts"], ours["eps"]
        assert ours["certified_accuracy"] == theirs["certified_accuracy"]
        assert ours["robust_accuracy"] == theirs["robust_accuracy"]
        for mine, other in zip(ours["worst_margin_lower_bound"], theirs["worst_margin_lower_bound"]):
            assert (mine is None) == (other is None)
            assert mine is None or mine == pytest.approx(other, abs=1e-4)


def test_an_exported_run_gives_the_verdicts_of_the_run_it_came_from(exported, run_report):
    report = verified_json("--model", exported)
    _same_verdicts(report, run_report)
    kinds = {verdict for point in report["curve"] for verdict in point["verdicts"]}
    assert {"verified", "violated"} <= kinds  # the comparison covers both outcomes
    assert report["model"] == str(exported) and report["conversion"]["parity"]["passed"]
    assert report["conversion"]["parity"]["samples"] == 24
    assert any("onnxruntime on the file judges" in note for note in report["notes"])
    assert "conversion" not in run_report


class PixelsTo255Nhwc(torch.nn.Module):
    """`net` behind a file contract of 0..255 NHWC inputs (what a Keras export takes)."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.permute(0, 3, 1, 2) / 255.0)


def test_the_input_contract_is_honoured(micro_run, run_report, tmp_path):
    path = tmp_path / "nhwc255.onnx"
    path.write_bytes(export_legacy(PixelsTo255Nhwc(load_run(micro_run).model), torch.rand(2, 8, 8, 1) * 255, 17))
    spec = load_run(micro_run).data_spec
    report = verified_json("--model", path, "--data", spec, "--input-range", "0,255", "--layout", "nhwc")
    _same_verdicts(report, run_report)
    unfit = invoke("verify", "--model", path, "--data", spec, *FAST)  # the default NCHW contract does not fit it
    assert unfit.exit_code == 2 and len(unfit.stderr.strip().splitlines()) == 1, unfit.output


def test_predictions_and_counterexamples_are_judged_by_the_file(exported, run_report, monkeypatch):
    """A judge that calls every image class 0: the clean errors are the judge's, and no counterexample
    the attacks find on the conversion counts for a sample of class 0, since the judge never errs on it."""
    import advcli.verification.onnx_files as onnx_files
    from advcli.runtime.classifier import OutputsOnly

    def class_zero(x):
        out = torch.zeros(len(x), 10)
        out[:, 0] = 1.0
        return out

    labels = np.array(run_report["labels"])
    largest = run_report["curve"][-1]
    assert any(v == "violated" for v, label in zip(largest["verdicts"], labels) if label == 0)  # the attacks find some
    monkeypatch.setattr(onnx_files, "OutputsOnly", lambda judge: OutputsOnly(class_zero))
    report = verified_json("--model", exported)
    assert report["clean_accuracy"] == pytest.approx(float((labels == 0).mean()))
    for point in report["curve"]:
        assert [v == "violated" for v in point["verdicts"]] == list(labels != 0)
        assert point["violated_by"]["clean"] == int((labels != 0).sum())


def _sigmoid_file() -> bytes:
    generator = np.random.default_rng(0)
    nodes = [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("Gemm", ["f", "w", "b"], ["g"], transB=1),
             helper.make_node("Sigmoid", ["g"], ["y"], name="squash")]
    return make_model(nodes, [1, 8, 8], opset=17, initializers=[
        tensor("w", generator.normal(size=(10, 64)).astype(np.float32)), tensor("b", np.zeros(10, np.float32))],
        output_type=TensorProto.FLOAT)


def test_an_operator_the_bounds_cannot_follow_is_refused_before_any_work(micro_run, tmp_path, monkeypatch):
    import advcli.verification.api as api

    path = tmp_path / "sigmoid.onnx"
    path.write_bytes(_sigmoid_file())
    monkeypatch.setattr(api, "verify_radii", lambda *a, **k: pytest.fail("verification started"))
    result = invoke("verify", "--model", path, "--data", load_run(micro_run).data_spec, *FAST)
    assert result.exit_code == 2 and result.stdout == "", result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "ONNX operator Sigmoid" in lines[0] and "'squash'" in lines[0]


def _linear_file(input_type: int, batch: object) -> bytes:
    """Flatten - Gemm on 1x8x8 images (after a Cast to float for uint8 inputs), batch axis `batch`."""
    generator = np.random.default_rng(1)
    nodes = [helper.make_node("Cast", ["x"], ["c"], to=TensorProto.FLOAT), helper.make_node("Flatten", ["c"], ["f"]),
             helper.make_node("Gemm", ["f", "w", "b"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "case", [helper.make_tensor_value_info("x", input_type, [batch, 1, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=[tensor("w", generator.normal(size=(10, 64)).astype(np.float32)),
                                           tensor("b", np.zeros(10, np.float32))])
    opsets = [helper.make_opsetid("", 17)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = helper.find_min_ir_version_for(opsets)
    return model.SerializeToString()


@pytest.mark.parametrize("input_type, batch, message", [
    (TensorProto.UINT8, "N", "uint8"), (TensorProto.FLOAT, 4, "fixes its batch size at 4")])
def test_files_outside_the_bounds_reach_are_refused_in_one_line(input_type, batch, message, micro_run, tmp_path):
    path = tmp_path / "linear.onnx"
    path.write_bytes(_linear_file(input_type, batch))
    result = invoke("verify", "--model", path, "--data", load_run(micro_run).data_spec, *FAST)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and message in lines[0], result.output
