"""ONNX export and evaluation under onnxruntime: round trip, parity, bad files, providers, transfer
(with the file's conversion to torch turned off: white-box on the file is in test_foreign_models.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from typer.testing import CliRunner

from advcli.cli import app
from advcli.errors import AdvcliError
from advcli.evaluation import evaluate
from advcli.export import ParityError, check_parity, export_onnx, parity_file_of
from advcli.io.runs import load_run
from advcli.runtime.backends.onnxruntime import CUDA_PROVIDER, create_session, load_onnx_classifier
from advcli.runtime.device import auto_fallback_note, resolve_device
from advcli.runtime.loading import detect_backend

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_line(text: str) -> bool:
    return len(text.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory) -> Path:
    """The standard run exported next to nothing else, through the library."""
    return export_onnx(load_run(trained_run), tmp_path_factory.mktemp("onnx") / "model.onnx", parity_samples=64).path


def _cuda_provider_runs(path: Path) -> bool:
    session, _ = create_session(path, "auto")
    return CUDA_PROVIDER in session.get_providers()


# Export ---------------------------------------------------------------------------------------


def test_export_round_trip_keeps_metadata_and_logits(exported, trained_run, tiny_dataset):
    run = load_run(trained_run)
    proto = onnx.load(str(exported))
    onnx.checker.check_model(proto, full_check=True)
    # Both convolutions export as Conv: the CPU's matrix-product first layer is never traced.
    assert [node.op_type for node in proto.graph.node].count("Conv") == 2
    meta = {entry.key: entry.value for entry in proto.metadata_props}
    assert json.loads(meta["advcli.classes"]) == run.classes
    assert json.loads(meta["advcli.input_shape"]) == [1, 28, 28]
    assert json.loads(meta["advcli.input_range"]) == [0.0, 1.0]
    assert meta["advcli.training_method"] == "none" and float(meta["advcli.training_eps"]) == 0.0
    assert meta["advcli.source_fingerprint"] == run.fingerprint
    assert meta["advcli.source_run"] == str(trained_run)

    session, _ = create_session(exported, "cpu")
    for batch in (1, 7, 33):  # the batch axis is dynamic
        x = tiny_dataset.x_test[:batch]
        (logits,) = session.run(None, {"input": x.numpy()})
        with torch.no_grad():
            expected = run.model(x).numpy()
        assert logits.shape == (batch, 10)
        assert np.abs(logits - expected).max() <= 1e-4


def test_export_saves_its_parity_figures(exported):
    parity = json.loads(parity_file_of(exported).read_text())
    assert parity["passed"] is True and parity["samples"] == 64 and parity["batch_sizes"] == [64, 1]
    assert parity["max_abs_diff"] <= parity["tolerance"] == 1e-4 and parity["argmax_agreement"] == 1.0
    assert parity["execution_providers"] == ["CPUExecutionProvider"]
    assert parity["onnx_sha256"] == load_onnx_classifier(exported, "cpu").fingerprint


def test_export_cli_reports_parity_and_refuses_to_overwrite(trained_run, tmp_path):
    out = tmp_path / "cli.onnx"
    result = invoke("export", "--model", trained_run, "--out", out, "--parity-samples", 32, "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["parity"]["samples"] == 32 and payload["parity_file"] == str(parity_file_of(out))
    before = out.read_bytes()
    again = invoke("export", "--model", trained_run, "--out", out)
    assert again.exit_code == 2 and "already exists" in again.stderr and one_line(again.stderr)
    assert out.read_bytes() == before


def _scale_first_weight(proto) -> None:
    """Alter the exported graph: double the first convolution's weights."""
    initializer = proto.graph.initializer[0]
    initializer.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(initializer) * 2, initializer.name))


def test_broken_parity_fails_the_export_and_leaves_nothing(trained_run, tmp_path):
    out = tmp_path / "broken.onnx"
    with pytest.raises(ParityError, match="parity"):
        export_onnx(load_run(trained_run), out, parity_samples=32, postprocess=_scale_first_weight)
    assert list(tmp_path.iterdir()) == []


def test_a_tampered_file_fails_the_parity_check(exported, trained_run, tiny_dataset, tmp_path):
    proto = onnx.load(str(exported))
    _scale_first_weight(proto)
    tampered = tmp_path / "tampered.onnx"
    onnx.save(proto, str(tampered))
    run = load_run(trained_run)
    x = tiny_dataset.x_test[:32]
    assert check_parity(exported, run.model, x).passed
    result = check_parity(tampered, run.model, x)
    assert not result.passed and result.max_abs_diff > 1e-4


@pytest.mark.parametrize("opset", [6, 24])
def test_export_rejects_unsupported_opsets(trained_run, tmp_path, opset):
    result = invoke("export", "--model", trained_run, "--out", tmp_path / "m.onnx", "--opset", opset)
    assert result.exit_code == 2 and "opset" in result.stderr and one_line(result.stderr)
    assert list(tmp_path.iterdir()) == []


# Evaluation under onnxruntime ---------------------------------------------------------------


def test_onnx_eval_matches_torch_and_labels_transfer(exported, trained_run):
    common = ("--attack", "bim", "--attack", "square", "--iters", 10, "--queries", 20, "--samples", 40, "--json")
    result = invoke("eval", "--model", exported, "--device", "cpu", "--no-convert", *common)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["white_box"]["mode"] == "transfer" and "`convert` is off" in report["white_box"]["reason"]
    torch_report = json.loads(invoke("eval", "--model", trained_run, "--device", "cpu", *common).stdout)

    assert report["backend"] == "onnxruntime" and report["execution_providers"] == ["CPUExecutionProvider"]
    assert torch_report["backend"] == "torch" and torch_report["execution_providers"] is None
    assert report["clean_accuracy"] == torch_report["clean_accuracy"]
    bim, square = report["attacks"]
    assert bim["transfer_from"] == str(trained_run) and bim["label"] == f"bim (transfer from {trained_run})"
    assert report["transfer_from_fingerprint"] == load_run(trained_run).fingerprint
    assert square["transfer_from"] is None and square["label"] == "square" and 1 <= square["queries_mean"] <= 20
    # Examples crafted on the exported weights transfer to the file almost exactly (one sample of slack).
    assert abs(bim["robust_accuracy"] - torch_report["attacks"][0]["robust_accuracy"]) <= 1 / 40 + 1e-9
    assert report["robust_accuracy"] <= min(bim["robust_accuracy"], square["robust_accuracy"])
    assert max(bim["max_perturbation"], square["max_perturbation"]) <= 0.1 + 1e-5


def test_onnx_eval_table_and_thresholds(exported):
    result = invoke("eval", "--model", exported, "--device", "cpu", "--iters", 2, "--samples", 20, "--no-convert",
                    "--min-robust-accuracy", 1.0)
    assert result.exit_code == 1
    assert "transfer" in result.stdout and "onnxruntime" in result.stdout
    assert "robust accuracy" in result.stderr


def test_square_alone_needs_no_torch_weights(exported, tmp_path):
    """A file away from any checkpoint: black-box attacks still run; with no conversion and no transfer
    source, gradient attacks are replaced by square, and the report and stderr say so."""
    lonely = tmp_path / "deployed.onnx"
    shutil.copy(exported, lonely)
    meta = onnx.load(str(lonely))
    for entry in meta.metadata_props:
        if entry.key == "advcli.source_run":
            entry.value = str(tmp_path / "gone")
    onnx.save(meta, str(lonely))
    result = invoke("eval", "--model", lonely, "--attack", "square", "--queries", 10, "--samples", 20,
                    "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["attacks"][0]["transfer_from"] is None
    missing = invoke("eval", "--model", lonely, "--attack", "bim", "--samples", 20, "--device", "cpu", "--no-convert",
                     "--queries", 10, "--json")
    assert missing.exit_code == 0, missing.output
    report = json.loads(missing.stdout)
    assert [attack["name"] for attack in report["attacks"]] == ["square"] and report["white_box"]["mode"] == "black-box"
    assert "no transfer source" in report["white_box"]["transfer_error"] or "not found" in report["white_box"]["transfer_error"]
    assert "replaced by square" in missing.stderr
    named = invoke("eval", "--model", lonely, "--attack", "bim", "--samples", 20, "--device", "cpu", "--no-convert",
                   "--source", tmp_path / "absent")
    assert named.exit_code == 2 and one_line(named.stderr)  # a source that was asked for must load


def test_transfer_source_follows_a_moved_run_or_source_option(trained_run, tmp_path):
    moved_from = tmp_path / "run"
    shutil.copytree(trained_run, moved_from)
    export_onnx(load_run(moved_from), moved_from / "model.onnx", parity_samples=16)
    moved = tmp_path / "moved"
    moved_from.rename(moved)
    report = evaluate(model=str(moved / "model.onnx"), attacks=("fgsm",), samples=10, device="cpu", convert=False)
    assert report.attacks[0].transfer_from == str(moved)
    explicit = evaluate(model=str(moved / "model.onnx"), attacks=("fgsm",), samples=10, device="cpu",
                        source=str(trained_run), convert=False)
    assert explicit.attacks[0].transfer_from == str(trained_run)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_foreign_onnx_classifier_is_attacked_through_its_outputs(trained_run, tiny_spec, tmp_path):
    model = load_run(trained_run).model
    plain = tmp_path / "plain.onnx"
    torch.onnx.export(model, (torch.zeros(1, 1, 28, 28),), str(plain), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, dynamo=False)
    no_data = invoke("eval", "--model", plain, "--attack", "square", "--device", "cpu")
    assert no_data.exit_code == 2 and "--data" in no_data.stderr
    result = invoke("eval", "--model", plain, "--data", tiny_spec, "--attack", "square", "--queries", 5,
                    "--samples", 10, "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("garbage.onnx", b"\x00\x01garbage", "not a usable ONNX model"),
        ("empty.onnx", b"", "not a usable ONNX model"),
        ("notes.txt", b"hello", "neither a run folder nor an ONNX file"),
    ],
)
def test_corrupt_or_non_onnx_files_exit_2_with_one_line(name, content, message, tmp_path):
    path = tmp_path / name
    path.write_bytes(content)
    result = invoke("eval", "--model", path, "--samples", 5)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and str(path) in result.stderr and one_line(result.stderr)


def test_truncated_onnx_file_exits_2(exported, tmp_path):
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(exported.read_bytes()[: exported.stat().st_size // 2])
    result = invoke("eval", "--model", truncated, "--samples", 5)
    assert result.exit_code == 2 and one_line(result.stderr)
    assert invoke("eval", "--model", tmp_path / "absent.onnx").exit_code == 2


def test_backend_detection_and_forcing(exported, trained_run, tmp_path):
    assert detect_backend(exported) == "onnxruntime" and detect_backend(trained_run) == "torch"
    unsuffixed = tmp_path / "deployed"
    shutil.copy(exported, unsuffixed)
    assert detect_backend(unsuffixed) == "onnxruntime"
    forced = invoke("eval", "--model", exported, "--backend", "torch", "--samples", 5)
    assert forced.exit_code == 2 and "not a run folder" in forced.stderr


# Execution providers ------------------------------------------------------------------------


def _advcli(*args: object) -> subprocess.CompletedProcess:
    """The real command in a fresh process, so onnxruntime's own stderr output would show."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "advcli", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=300)


def test_cuda_fails_with_a_reason_and_auto_falls_back_to_cpu(exported):
    if _cuda_provider_runs(exported):
        pytest.skip("onnxruntime's CUDA provider works here; this checks the machines without it")
    cuda = _advcli("eval", "--model", exported, "--device", "cuda", "--attack", "square", "--samples", 5)
    assert cuda.returncode == 2, cuda.stderr
    assert one_line(cuda.stderr) and "--device cuda" in cuda.stderr and "onnxruntime" in cuda.stderr

    auto = _advcli("eval", "--model", exported, "--device", "auto", "--attack", "square", "--queries", 5,
                   "--samples", 5, "--json")
    assert auto.returncode == 0, auto.stderr
    report = json.loads(auto.stdout)
    assert report["execution_providers"] == ["CPUExecutionProvider"]
    assert any("running on CPUExecutionProvider" in note for note in report["notes"])
    assert "running on CPUExecutionProvider" in auto.stderr and "onnxruntime:" not in auto.stderr


def test_an_onnxruntime_without_cuda_support_says_so(exported, monkeypatch):
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(AdvcliError, match="no CUDAExecutionProvider"):
        create_session(exported, "cuda")
    session, notes = create_session(exported, "auto")
    assert session.get_providers() == ["CPUExecutionProvider"] and "no CUDAExecutionProvider" in notes[0]
    assert create_session(exported, "cpu")[1] == []


def test_torch_auto_reports_a_fallback_only_when_cuda_support_is_installed(monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", None)
    assert auto_fallback_note("auto") is None
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "no CUDA device" in auto_fallback_note("auto")
    assert auto_fallback_note("cpu") is None


def test_training_reports_the_device_that_ran(tiny_spec, tmp_path):
    result = invoke("train", "--data", tiny_spec, "--epochs", 1, "--device", "auto", "--out", tmp_path / "run", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["device"] == str(resolve_device("auto"))


def test_auto_on_an_onnx_file_transfers_white_box_members_and_queries_the_file(exported, trained_run):
    report = evaluate(model=str(exported), attacks=("auto",), iters=3, queries=10, samples=12, device="cpu",
                      sanity_samples=0, convert=False)
    (result,) = report.attacks
    payload = result.to_dict()
    assert report.backend == "onnxruntime" and payload["transfer_from"] == str(trained_run)
    assert [member["name"] for member in payload["members"]][-1] == "square"
    assert payload["queries_mean"] is not None and payload["queries_mean"] <= 10
    assert result.robust_accuracy <= report.clean_accuracy


def test_transfer_from_a_different_surrogate_is_judged_by_the_file(exported, tiny_spec, tmp_path):
    """Examples crafted on another model need not fool the file; only the file's verdict counts."""
    surrogate = tmp_path / "surrogate"
    trained = invoke("train", "--data", tiny_spec, "--epochs", 1, "--seed", 7, "--out", surrogate, "--json")
    assert trained.exit_code == 0, trained.output
    report = evaluate(model=str(exported), attacks=("bim",), iters=3, samples=16, device="cpu",
                      source=str(surrogate), sanity_samples=0, convert=False)
    assert report.attacks[0].transfer_from == str(surrogate)
    assert report.transfer_fingerprint == load_run(surrogate).fingerprint
    assert report.robust_accuracy <= report.clean_accuracy


def test_outputs_only_without_a_source_refuses_white_box_attacks(exported):
    from advcli.evaluation import evaluate_model

    module = load_onnx_classifier(exported, "cpu").as_module()
    x, y = torch.rand(4, 1, 28, 28), torch.zeros(4, dtype=torch.long)
    with pytest.raises(AdvcliError, match="outputs only"):
        evaluate_model(module, x, y, attacks=("bim",), eps=0.1, iters=2, sanity_samples=0)
    report = evaluate_model(module, x, y, attacks=("square",), eps=0.1, queries=5, sanity_samples=2)
    checks = {check.name: check for check in report.sanity}
    assert not checks["zero-gradients"].checked and not checks["above-chance-unbounded"].checked
    result = report.attacks[0]
    assert result.attacked == 0 or 1 <= result.queries_mean <= 5
