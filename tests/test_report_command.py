"""`advcli report`: the HTML page and its Markdown twin from a run or an exported ONNX file, with
what was given (an evaluation, examples) and nothing run behind the user's back."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from browser import chromium, screenshot
from typer.testing import CliRunner

from advcli.cli import app


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def sections(page: str) -> list[str]:
    return re.findall(r'<section id="section-([a-z-]+)">', page)


@pytest.fixture(scope="module")
def measured(tmp_path_factory, trained_run):
    """A copy of the trained run, its evaluation (two radii, per class) and adversarial examples."""
    folder = tmp_path_factory.mktemp("report-cli")
    run = folder / "run"
    shutil.copytree(trained_run, run)
    common = ["--model", run, "--device", "cpu", "--quiet"]
    evaluation = invoke("eval", *common, "--samples", "40", "--eps", "0.05,0.1", "--per-class", "--sanity-samples",
                        "10", "--report", folder / "eval.json")
    assert evaluation.exit_code == 0, evaluation.output
    examples = invoke("attack", *common, "--samples", "6", "--iters", "5", "--out", folder / "bim.npz")
    assert examples.exit_code == 0, examples.output
    return {"run": run, "eval": folder / "eval.json", "examples": folder / "bim.npz", "folder": folder}


def test_a_full_report_and_its_markdown_twin(measured, tmp_path):
    out = tmp_path / "share.html"
    result = invoke("report", measured["run"], "--eval", measured["eval"], "--examples", measured["examples"],
                    "--out", out, "--json")
    assert result.exit_code == 0, result.output
    written = json.loads(result.stdout)
    assert written["html"] == str(out) and written["markdown"] == str(tmp_path / "share.md")
    page = out.read_text()
    assert sections(page) == ["model-card", "training", "accuracy", "robustness-curve", "per-class", "sanity",
                              "examples"] == written["sections"]
    assert "http://" not in page and "https://" not in page and "No evaluation was given" not in page
    markdown = (tmp_path / "share.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert links and all((tmp_path / link).is_file() for link in links)
    clean = json.loads(measured["eval"].read_text())["clean_accuracy"]
    assert f"{100 * clean:.1f}%" in page


def test_without_an_evaluation_only_what_the_run_holds(measured):
    run = measured["folder"] / "bare-run"
    shutil.copytree(measured["run"], run, ignore=shutil.ignore_patterns("attacks", "report*"))
    result = invoke("report", run, "--no-markdown")
    assert result.exit_code == 0, result.output
    assert (run / "report.html").is_file() and not (run / "report.md").exists()
    page = (run / "report.html").read_text()
    assert sections(page) == ["model-card", "training"] and "No evaluation was given" in page
    assert "no evaluation included" in result.stderr


def test_existing_files_are_refused_before_anything_is_written(measured, tmp_path):
    out = tmp_path / "r.html"
    (tmp_path / "r.md").write_text("mine")
    result = invoke("report", measured["run"], "--out", out)
    assert result.exit_code == 2 and not out.exists() and (tmp_path / "r.md").read_text() == "mine"
    (line,) = result.stderr.strip().splitlines()
    assert "already exists" in line and "--overwrite" in line
    assert invoke("report", measured["run"], "--out", out, "--overwrite").exit_code == 0
    assert (tmp_path / "r.md").read_text() != "mine"


@pytest.mark.parametrize("args, message", [
    (["--out", "report.txt"], "--out must end in .html"),
    (["--eval", "/nonexistent/eval.json"], "cannot read the evaluation report"),
    (["--examples", "/nonexistent/x.npz"], "cannot read adversarial examples"),
])
def test_bad_input_is_one_line_and_exit_2(measured, args, message):
    result = invoke("report", measured["run"], *args)
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert message in line


def test_an_evaluation_of_other_weights_is_refused(measured, tmp_path):
    other = json.loads(measured["eval"].read_text())
    other["model_fingerprint"] = "sha256:" + "0" * 64
    (tmp_path / "other.json").write_text(json.dumps(other))
    result = invoke("report", measured["run"], "--eval", tmp_path / "other.json", "--out", tmp_path / "r.html")
    assert result.exit_code == 2 and "of other weights" in result.stderr and not (tmp_path / "r.html").exists()


@pytest.mark.slow
def test_a_report_on_an_exported_file(measured, tmp_path):
    onnx_file = measured["folder"] / "model.onnx"
    assert invoke("export", "--model", measured["run"], "--out", onnx_file, "--parity-samples", "16").exit_code == 0
    evaluated = invoke("eval", "--model", onnx_file, "--attack", "square", "--queries", "20", "--samples", "20",
                       "--sanity-samples", "0", "--device", "cpu", "--quiet", "--report", tmp_path / "onnx.json")
    assert evaluated.exit_code == 0, evaluated.output
    result = invoke("report", onnx_file, "--eval", tmp_path / "onnx.json", "--no-markdown")
    assert result.exit_code == 0, result.output
    page = (measured["folder"] / "model.report.html").read_text()
    assert "Exported file" in page and "its metadata names these weights as its source" in page
    assert sections(page)[:3] == ["model-card", "training", "accuracy"]
    torch_eval = invoke("report", onnx_file, "--eval", measured["eval"], "--out", tmp_path / "t.html")
    assert torch_eval.exit_code == 0  # an evaluation of the source weights themselves is theirs


@pytest.mark.skipif(chromium() is None, reason="no headless Chromium installed")
def test_a_browser_draws_the_command_line_report(measured, tmp_path):
    out = tmp_path / "report.html"
    assert invoke("report", measured["run"], "--eval", measured["eval"], "--examples", measured["examples"],
                  "--out", out, "--no-markdown").exit_code == 0
    pixels = screenshot(out, tmp_path / "shot.png", height=2400)
    assert pixels.shape == (2400, 1200) and pixels.std() > 20 and (pixels < 128).mean() > 0.01


def test_an_advcli_verify_report_is_shown_with_its_own_attacks(measured, tmp_path):
    verification = tmp_path / "verify.json"
    verified = invoke("verify", "--model", measured["run"], "--eps", "0.01,0.05", "--samples", "12", "--device", "cpu",
                      "--quiet", "--report", verification)
    assert verified.exit_code == 0, verified.output
    out = tmp_path / "verified.html"
    result = invoke("report", measured["run"], "--verification", verification, "--out", out, "--no-markdown")
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert "verification" in sections(page)
    curve = json.loads(verification.read_text())["curve"]
    shown = page[page.index('id="section-verification"'):]
    for point in curve:  # certified and the verifier's own attacked figure, radius by radius
        assert f"{100 * point['certified_accuracy']:.1f}%" in shown and f"{100 * point['robust_accuracy']:.1f}%" in shown
