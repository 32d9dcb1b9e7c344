"""The command line through Typer's CliRunner: exit codes, --json shapes, thresholds, bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from advcli.cli import app
from advcli.data import load_dataset
from advcli.io.runs import load_run
from advcli.runtime import resolve_precision

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_help_lists_every_command():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("train", "robust-train", "attack", "eval", "verify", "export"):
        assert command in result.stdout


def test_train_writes_a_run_and_reports_json(tiny_spec, tmp_path):
    result = invoke("train", "--data", tiny_spec, "--epochs", 1, "--out", tmp_path / "run", "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["run"] == str(tmp_path / "run")
    assert payload["epochs_completed"] == 1
    run = load_run(tmp_path / "run")
    x, y = load_dataset(tiny_spec).split("test")
    with torch.no_grad():
        recomputed = float((run.model(x).argmax(1) == y).float().mean())
    assert payload["clean_test_accuracy"] == pytest.approx(recomputed, abs=1e-6)  # the saved model's own figure


def test_robust_train_records_its_method(tiny_spec, tmp_path):
    result = invoke("robust-train", "--eps", "1/10", "--data", tiny_spec, "--epochs", 1,  # a fraction, as 8/255
                    "--out", tmp_path / "robust", "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "robust" / "model.json").read_text())
    precision = resolve_precision("auto", torch.device("cpu"), training=True)
    assert meta["training"] == {"method": "fgsm-rs", "eps": 0.1, "alpha": pytest.approx(0.125), "precision": precision}
    assert meta["config"]["init"] == "random" and meta["config"]["iters"] == 1


def test_train_refuses_to_overwrite_an_existing_run(trained_run):
    before = (trained_run / "model.json").read_text()
    result = invoke("train", "--epochs", 1, "--out", trained_run)
    assert result.exit_code == 2
    assert "already exists" in result.stderr
    assert (trained_run / "model.json").read_text() == before


@pytest.mark.parametrize(
    "args, message",
    [
        (("robust-train", "--eps", -0.1), "--eps"),
        (("robust-train", "--eps", 0.1, "--init", "gaussian"), "--init"),
        (("train", "--data", "nosuchformat:x"), "nosuchformat"),
        (("train", "--data", "mnist:/nonexistent/dir"), "/nonexistent/dir"),
        (("train", "--device", "cuda"), "cuda"),
        (("robust-train", "--eps", "0.1,0.2"), "--eps"),
        (("robust-train", "--eps", "8/0"), "--eps"),
        (("train", "--sync-bn", "--device", "cpu"), "--sync-bn"),
        (("train", "--timeout", 0, "--device", "cpu"), "--timeout"),
    ],
)
def test_bad_training_input_exits_2_with_one_line(args, message, tmp_path):
    result = invoke(*args, "--out", tmp_path / "never")
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "never").exists()


def test_eval_json_shape(trained_run):
    result = invoke("eval", "--model", trained_run, "--attack", "bim", "--iters", 5, "--samples", 50, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    for key in ("model", "data", "samples", "clean_accuracy", "robust_accuracy", "attacks", "model_fingerprint",
                "data_fingerprint", "config", "versions", "passed"):
        assert key in report
    assert report["samples"] == 50
    (attack,) = report["attacks"]
    assert {k: attack[k] for k in ("name", "eps", "alpha", "iters", "init", "clip")} == {
        "name": "bim", "eps": 0.1, "alpha": 0.01, "iters": 5, "init": "zero", "clip": True}
    assert 0 <= attack["robust_accuracy"] <= report["clean_accuracy"] <= 1
    assert attack["max_perturbation"] <= 0.1 + 1e-5


def test_eval_worst_case_over_several_attacks(trained_run):
    result = invoke("eval", "--model", trained_run, "--attack", "fgsm", "--attack", "pgd", "--iters", 1,
                    "--samples", 40, "--json")
    # pgd with one iteration is allowed, fgsm with --iters 1 too
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [a["name"] for a in report["attacks"]] == ["fgsm", "pgd"]
    assert report["robust_accuracy"] <= min(a["robust_accuracy"] for a in report["attacks"])


def test_eval_thresholds_exit_1(trained_run, tmp_path):
    report_file = tmp_path / "report.json"
    result = invoke("eval", "--model", trained_run, "--iters", 2, "--samples", 30,
                    "--min-robust-accuracy", 1.0, "--report", report_file)
    assert result.exit_code == 1
    assert "robust accuracy" in result.stderr
    assert json.loads(report_file.read_text())["passed"] is False
    ok = invoke("eval", "--model", trained_run, "--iters", 2, "--samples", 30, "--min-accuracy", 0.0, "--json")
    assert ok.exit_code == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (("--eps", -0.1), "--eps"),
        (("--iters", 0), "--iters"),
        (("--alpha", 0), "--alpha"),
        (("--attack", "fgsm", "--iters", 5), "fgsm"),
        (("--min-accuracy", 1.5), "--min-accuracy"),
        (("--split", "validation"), "--split"),
        (("--timeout", -1), "--timeout"),
    ],
)
def test_eval_bad_options_exit_2(trained_run, args, message):
    result = invoke("eval", "--model", trained_run, "--samples", 10, *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr


def test_eval_missing_or_corrupt_model_exit_2(trained_run, tmp_path):
    assert invoke("eval", "--model", tmp_path / "absent").exit_code == 2
    broken = tmp_path / "broken"
    shutil.copytree(trained_run, broken)
    (broken / "model.safetensors").write_bytes(b"garbage")
    result = invoke("eval", "--model", broken)
    assert result.exit_code == 2 and "corrupt" in result.stderr
    assert invoke("eval", "--runs-dir", tmp_path / "empty").exit_code == 2


def test_eval_uses_the_newest_run_and_says_so(trained_run, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(trained_run, runs / "only")
    result = invoke("eval", "--runs-dir", runs, "--iters", 1, "--samples", 10, "--json")
    assert result.exit_code == 0, result.output
    assert "newest run" in result.stderr and str(runs / "only") in result.stderr
    assert json.loads(result.stdout)["model"] == str(runs / "only")


def test_no_clip_reproduces_the_unclipped_threat_model(trained_run):
    result = invoke("eval", "--model", trained_run, "--iters", 3, "--samples", 20, "--no-clip", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["attacks"][0]["clip"] is False


def test_attack_saves_examples_and_a_grid(trained_run, tmp_path):
    out = tmp_path / "adv.npz"
    result = invoke("attack", "--model", trained_run, "--attack", "bim", "--iters", 5, "--samples", 40,
                    "--out", out, "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["samples"] == 40
    with np.load(out, allow_pickle=False) as saved:
        assert saved["originals"].shape == saved["adversarials"].shape == (40, 1, 28, 28)
        assert np.abs(saved["adversarials"] - saved["originals"]).max() <= 0.1 + 1e-6
        assert saved["labels"].shape == saved["adversarial_predictions"].shape == (40,)
        assert json.loads(str(saved["meta"]))["attack"]["name"] == "bim"
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    again = invoke("attack", "--model", trained_run, "--iters", 5, "--samples", 40, "--out", out)
    assert again.exit_code == 2 and "already exists" in again.stderr


def test_attack_l2_keeps_the_l2_bound_in_the_saved_file(trained_run, tmp_path):
    out = tmp_path / "l2.npz"
    result = invoke("attack", "--model", trained_run, "--attack", "pgd", "--norm", "l2", "--eps", 1.5, "--iters", 5,
                    "--samples", 20, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["attack"]["norm"] == "l2"
    with np.load(out, allow_pickle=False) as saved:
        norms = np.sqrt(((saved["adversarials"] - saved["originals"]) ** 2).reshape(20, -1).sum(1))
        meta = json.loads(str(saved["meta"]))
        assert "targets" not in saved.files
    assert norms.max() <= 1.5 + 1e-4 and norms.max() > 1.0  # the L2 radius, not an L-inf one
    assert meta["attack"]["norm"] == "l2" and meta["config"]["norm"] == "l2" and meta["attack"]["target"] is None


def test_attack_target_reaches_the_class_on_an_easy_case(trained_run, tmp_path):
    out = tmp_path / "to3.npz"
    result = invoke("attack", "--model", trained_run, "--attack", "pgd", "--eps", 0.3, "--iters", 20, "--target", 3,
                    "--samples", 40, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    with np.load(out, allow_pickle=False) as saved:
        labels, predictions, targets = saved["labels"], saved["adversarial_predictions"], saved["targets"]
        unchanged = (saved["adversarials"] == saved["originals"]).reshape(40, -1).all(1)
        meta = json.loads(str(saved["meta"]))
    aimed = labels != 3
    assert (targets == 3).all() and aimed.any() and (~aimed).any()
    assert (predictions[aimed] == 3).mean() >= 0.8, predictions[aimed]
    assert unchanged[~aimed].all()  # already of the target class: left as they were
    assert meta["attack"]["target"] == "3" and meta["config"]["target"] == "3"
    assert payload["target_hit_rate"] == pytest.approx(float((predictions[aimed] == 3).mean()))
    assert payload["untargetable"] == int((~aimed).sum())


def test_attack_default_names_tell_norms_and_targets_apart(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    common = ("attack", "--model", run, "--attack", "fgsm", "--samples", 5, "--eps", 0.5)
    for extra in ((), ("--norm", "l2"), ("--target", "top-1"), ("--norm", "l2", "--target", "top-1")):
        assert invoke(*common, *extra).exit_code == 0
    assert sorted(path.name for path in (run / "attacks").glob("*.npz")) == [
        "fgsm-eps0.5-test.npz", "fgsm-eps0.5-to-top-1-test.npz", "fgsm-l2-eps0.5-test.npz",
        "fgsm-l2-eps0.5-to-top-1-test.npz"]


@pytest.mark.parametrize(
    "args, message",
    [
        (("--target", "likely"), "--target"),
        (("--target", "12"), "classes"),
        (("--attack", "auto", "--target", "3"), "--target"),
        (("--norm", "linf", "--eps", 1.5), "--eps"),
        (("--norm", "l2", "--eps", -1), "--eps"),
    ],
)
def test_attack_bad_norm_or_target_exit_2_with_one_line(trained_run, tmp_path, args, message):
    out = tmp_path / "bad.npz"
    result = invoke("attack", "--model", trained_run, "--samples", 5, "--iters", 1, "--out", out, *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_attack_unknown_norm_is_a_usage_error(trained_run):
    result = invoke("attack", "--model", trained_run, "--samples", 5, "--norm", "l3")
    assert result.exit_code == 2 and "l3" in result.output


def test_export_writes_a_checked_onnx_file(trained_run, tmp_path):
    out = tmp_path / "model.onnx"
    result = invoke("export", "--model", trained_run, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["max_abs_diff"] <= 1e-4 and payload["argmax_agreement"] == 1.0
    assert out.is_file()
