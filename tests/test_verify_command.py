"""``advcli verify`` and ``advcli.verify`` end to end: exit codes, the --json shape and its internal
consistency, the CI gate, bad inputs refused before any work, and verified samples that hold
against attacks. The model is a small IBP-trained seed-cnn on the tiny digits pooled to 7x7."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

import advcli
from advcli.cli import app
from advcli.io.runs import load_run

pytestmark = pytest.mark.usefixtures("one_thread")

EPS = "0,0.01,0.03,0.1"


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def certified_run(pooled_spec, tmp_path_factory):
    """An IBP-trained run (eps 0.03), alone in its runs folder."""
    runs = tmp_path_factory.mktemp("runs")
    path, _ = advcli.train(data=pooled_spec, method="ibp", eps=0.03, eps_ramp=2, epochs=6, optimizer="adam", lr=0.005,
                           batch_size=50, device="cpu", val_iters=2, out=runs / "certified")
    return path


@pytest.fixture(scope="module")
def report(certified_run, tmp_path_factory):
    folder = tmp_path_factory.mktemp("verify")
    result = invoke("verify", "--model", certified_run, "--eps", EPS, "--method", "crown", "--per-class",
                    "--samples", 60, "--iters", 10, "--plot", folder / "cert.png", "--report", folder / "report.json",
                    "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert json.loads((folder / "report.json").read_text()) == payload
    assert (folder / "cert.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return payload


def test_the_json_report_is_complete_and_consistent(report, certified_run):
    assert report["schema_version"] == 1 and report["samples"] == 60 and report["seed"] == 0
    assert report["model"] == str(certified_run) and report["model_fingerprint"].startswith("sha256:")
    assert report["data_fingerprint"].startswith("sha256:") and report["method"] == "crown"
    assert report["eps"] == [0.0, 0.01, 0.03, 0.1] and len(report["curve"]) == 4
    assert report["config"]["eps"] == [0.0, 0.01, 0.03, 0.1] and report["config"]["attacks"] == ["pgd", "apgd-ce",
                                                                                                  "apgd-dlr"]
    assert len(report["sample_indices"]) == len(report["labels"]) == 60
    clean_errors = round((1 - report["clean_accuracy"]) * 60)
    for point in report["curve"]:
        counts = [point[key] for key in ("verified", "violated", "unproven")]
        assert sum(counts) == 60 and len(point["verdicts"]) == 60
        assert [point["verdicts"].count(key) for key in ("verified", "violated", "unproven")] == counts
        assert point["certified_accuracy"] == pytest.approx(point["verified"] / 60)
        assert point["robust_accuracy"] == pytest.approx(1 - point["violated"] / 60)
        assert point["certified_accuracy"] <= point["robust_accuracy"] <= report["clean_accuracy"]
        assert point["violated_by"]["clean"] == clean_errors and sum(point["violated_by"].values()) == point["violated"]
        for verdict, margin in zip(point["verdicts"], point["worst_margin_lower_bound"]):
            assert verdict != "verified" or margin > 0
    assert report["curve"][0]["violated"] == clean_errors and report["curve"][0]["unproven"] <= 1  # eps 0: exact
    for smaller, larger in zip(report["curve"], report["curve"][1:]):  # nested balls
        assert larger["certified_accuracy"] <= smaller["certified_accuracy"]
        assert all(b == "violated" for a, b in zip(smaller["verdicts"], larger["verdicts"]) if a == "violated")
    assert 0 < report["curve"][2]["certified_accuracy"] < report["curve"][2]["robust_accuracy"] or \
        report["curve"][2]["unproven"] == 0
    assert report["certified_accuracy"] == report["curve"][-1]["certified_accuracy"]
    assert {row["class"] for row in report["per_class"]} == set(range(10))
    assert sum(row["samples"] for row in report["per_class"]) == 60
    assert report["passed"] and report["failures"] == []


def test_verified_samples_withstand_attacks(report, certified_run, pooled_spec):
    run = load_run(certified_run)
    x, y = advcli.load_dataset(pooled_spec).split("test")
    point = report["curve"][2]
    indices = torch.tensor(report["sample_indices"])
    verdicts = point["verdicts"]
    verified = indices[[v == "verified" for v in verdicts]]
    assert len(verified) > 0
    adversarial = advcli.apgd(run.model, x[verified], y[verified], eps=point["eps"], iters=50, restarts=2,
                              generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert bool((run.model(adversarial).argmax(1) == y[verified]).all())


def test_a_rerun_gives_the_same_verdicts(report, certified_run):
    result = invoke("verify", "--model", certified_run, "--eps", EPS, "--per-class", "--samples", 60, "--iters", 10,
                    "--json")
    assert result.exit_code == 0, result.output
    again = json.loads(result.stdout)
    assert [point["verdicts"] for point in again["curve"]] == [point["verdicts"] for point in report["curve"]]


def test_the_gate_exits_1_on_a_miss_and_0_on_a_pass(report, certified_run):
    certified = report["curve"][-1]["certified_accuracy"]
    missed = invoke("verify", "--model", certified_run, "--eps", EPS, "--samples", 60, "--iters", 10,
                    "--min-certified-accuracy", min(1.0, certified + 0.01), "--json")
    assert missed.exit_code == 1, missed.output
    payload = json.loads(missed.stdout)
    assert not payload["passed"] and "certified accuracy" in payload["failures"][0]
    assert payload["thresholds"]["min_certified_accuracy"] == pytest.approx(min(1.0, certified + 0.01))
    passed = invoke("verify", "--model", certified_run, "--eps", "0.01", "--samples", 20, "--method", "ibp",
                    "--min-certified-accuracy", 0)
    assert passed.exit_code == 0, passed.output
    assert "certified" in passed.stdout and "threshold missed" not in passed.stderr


def test_the_newest_run_is_the_default(certified_run):
    result = invoke("verify", "--runs-dir", certified_run.parent, "--eps", 0.01, "--samples", 10, "--bounds-only",
                    "--method", "ibp", "--json")
    assert result.exit_code == 0, result.output
    assert "using the newest run" in result.stderr
    payload = json.loads(result.stdout)
    assert payload["model"] == str(certified_run) and payload["attacks"] == []
    assert payload["curve"][0]["violated"] == payload["curve"][0]["violated_by"]["clean"]


@pytest.mark.parametrize("args, message", [
    (("--eps", "2"), "--eps"), (("--eps", "abc"), "--eps"), (("--eps", "0.1,-0.1"), "--eps"),
    (("--method", "ibp", "--intermediate", "crown"), "--intermediate"), (("--samples", "0"), "--samples"),
    (("--plot", "curve.jpg"), "--plot"), (("--attack", "pgd", "--bounds-only"), "--bounds-only"),
    (("--min-certified-accuracy", "1.5"), "--min-certified-accuracy"), (("--iters", "0"), "--iters"),
    (("--alpha-steps", "-1"), "--alpha-steps"), (("--split", "val"), "--split"),
])
def test_bad_options_exit_2_with_one_line_before_any_work(args, message, certified_run, monkeypatch):
    import advcli.verification.api as api

    monkeypatch.setattr(api, "verify_radii", lambda *a, **k: pytest.fail("verification started"))
    result = invoke("verify", "--model", certified_run, *args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


@pytest.mark.parametrize("args", [("--method", "lp"), ("--intermediate", "exact"), ("--attack", "magic")])
def test_unknown_choices_exit_2(args, certified_run):
    assert invoke("verify", "--model", certified_run, *args).exit_code == 2


def test_missing_models_and_corrupt_onnx_files_are_refused_with_one_line(tmp_path):
    missing = invoke("verify", "--model", tmp_path / "nothing")
    assert missing.exit_code == 2 and "no such run" in missing.stderr
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"\x08\x07")
    refused = invoke("verify", "--model", onnx)
    assert refused.exit_code == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert str(onnx) in refused.stderr


def test_the_library_call_matches_the_command(report, certified_run):
    result = advcli.verify(model=str(certified_run), eps=(0.0, 0.01, 0.03, 0.1), samples=60, iters=10, per_class=True)
    assert [point.verdicts for point in result.curve] == [point["verdicts"] for point in report["curve"]]
    assert result.certified_accuracy == report["certified_accuracy"] and result.passed
    run = load_run(certified_run)
    x, y = advcli.load_dataset(run.data_spec).split("test")
    direct = advcli.verify_model(run.model, x[:8], y[:8], eps=0.03, method="ibp", attacks=())
    assert direct.samples == 8 and direct.indices == list(range(8)) and direct.model == "(in memory)"
