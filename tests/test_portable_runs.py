"""Runs are portable: a run records its data with an absolute path, so `eval` works from any folder;
a run written before that (a relative path) still works from the folder it was trained in, says
what to do elsewhere, and takes --data."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

import advcli
from advcli.cli import app
from advcli.data import resolve_data_spec


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def relative_run(tmp_path_factory, tiny_npz):
    """A run trained from a folder holding its data as `npz:data/tiny.npz`, given relative."""
    project = tmp_path_factory.mktemp("project")
    (project / "data").mkdir()
    shutil.copy(tiny_npz, project / "data" / "tiny.npz")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(project)
        result = invoke("train", "--data", "npz:data/tiny.npz", "--arch", "mnist-small", "--epochs", "1",
                        "--device", "cpu", "--out", "runs/first", "--json", "--quiet")
    assert result.exit_code == 0, result.output
    return project, project / "runs" / "first"


def test_resolved_specs_are_absolute_and_keep_specs_without_a_path():
    assert resolve_data_spec("digits") == "digits" and resolve_data_spec("mnist") == "mnist"
    assert resolve_data_spec("npz:~/x.npz").startswith("npz:/") and not resolve_data_spec("npz:~/x.npz").count("~")
    assert resolve_data_spec("npz:a/../b.npz").endswith("/b.npz")


def test_a_run_records_its_data_with_an_absolute_path(relative_run):
    project, run = relative_run
    meta = json.loads((run / "model.json").read_text())
    expected = f"npz:{project / 'data' / 'tiny.npz'}"
    assert meta["data"]["spec"] == expected and meta["config"]["data"] == expected


def test_eval_works_from_another_folder(relative_run, tmp_path, monkeypatch):
    _, run = relative_run
    monkeypatch.chdir(tmp_path)
    result = invoke("eval", "--model", run, "--samples", "20", "--sanity-samples", "0", "--device", "cpu", "--json",
                    "--quiet")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["samples"] == 20


@pytest.fixture
def old_run(relative_run, tmp_path):
    """A copy of the run as advcli wrote runs before: the data path as it was given, relative."""
    project, run = relative_run
    old = project / "runs" / f"old-{tmp_path.name}"
    shutil.copytree(run, old)
    meta = json.loads((old / "model.json").read_text())
    meta["data"]["spec"] = meta["config"]["data"] = "npz:data/tiny.npz"
    (old / "model.json").write_text(json.dumps(meta))
    yield project, old
    shutil.rmtree(old)


def test_an_old_relative_run_works_from_its_folder(old_run, monkeypatch):
    project, old = old_run
    monkeypatch.chdir(project)
    report = advcli.evaluate(model=str(old), samples=10, sanity_samples=0, device="cpu")
    assert report.samples == 10 and report.data.endswith("/data/tiny.npz")


def test_an_old_relative_run_elsewhere_says_what_to_do_and_takes_data(old_run, tmp_path, monkeypatch):
    project, old = old_run
    monkeypatch.chdir(tmp_path)
    result = invoke("eval", "--model", old, "--samples", "10", "--sanity-samples", "0", "--device", "cpu")
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert "'npz:data/tiny.npz', a path relative to the folder it was trained in" in line and "--data" in line
    given = invoke("eval", "--model", old, "--data", f"npz:{project / 'data' / 'tiny.npz'}", "--samples", "10",
                   "--sanity-samples", "0", "--device", "cpu", "--quiet")
    assert given.exit_code == 0, given.output
