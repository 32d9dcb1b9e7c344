"""What advcli reads back and where it writes: the schemas of its JSON documents, destinations checked
before any work, leftovers of killed writers, the newest-run search, and the one escaping helper for
text that reaches the terminal."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from advcli.cli.escaping import shown, visible
from advcli.data.limits import DataLimits
from advcli.errors import CheckpointError, OutputError
from advcli.io.atomic import atomic_folder, remove_leftovers
from advcli.io.destinations import check_destination
from advcli.io.documents import read_onnx_metadata
from advcli.io.runs import load_run, newest_run, read_run_meta
from advcli.io.schema import MAX_DEPTH, integer, list_of, mapping, parse_document, string, validate

REPO = Path(__file__).resolve().parents[1]


# Schemas -----------------------------------------------------------------------------------------

def test_a_misfit_is_named_by_its_dotted_field():
    schema = mapping(required={"weights": mapping(required={"file": string()}), "shape": list_of(integer(1))})
    validate({"weights": {"file": "w"}, "shape": [1, 2]}, schema, "doc")
    with pytest.raises(CheckpointError, match=r"doc: 'weights.file' must be a string, got 5"):
        validate({"weights": {"file": 5}, "shape": [1]}, schema, "doc")
    with pytest.raises(CheckpointError, match=r"'shape\[1\]' must be an integer >= 1, got true"):
        validate({"weights": {"file": "w"}, "shape": [1, True]}, schema, "doc")
    with pytest.raises(CheckpointError, match="'weights' must be present"):
        validate({"shape": []}, schema, "doc")


def test_documents_nested_too_deeply_are_refused_without_recursion():
    parse_document("[" * MAX_DEPTH + "]" * MAX_DEPTH, "doc")
    for depth in (MAX_DEPTH + 1, 100_000):
        with pytest.raises(CheckpointError, match="nested deeper"):
            parse_document("[" * depth + "]" * depth, "doc")


@pytest.mark.parametrize("field, value, message", [
    ("input_shape", [1, 5000, 5000], "pixels"),
    ("input_shape", [9, 12, 12], "C at most"),
    ("classes", ["a"], "list of 2 to"),
    ("weights", {"file": "../elsewhere", "sha256": "sha256:" + "0" * 64}, "a file name inside the run folder"),
    ("architecture", "resnet-9000", "one of seed-cnn"),
    ("format_version", 9, "newer advcli"),
    ("metrics", {"interrupted": "yes"}, "true or false"),
])
def test_model_json_fields_are_checked_before_use(trained_run, tmp_path, field, value, message):
    run = shutil.copytree(trained_run, tmp_path / "run")
    meta = json.loads((run / "model.json").read_text())
    meta[field] = value
    (run / "model.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=message):
        read_run_meta(run)


def test_the_limits_bound_what_model_json_may_claim(trained_run):
    with pytest.raises(CheckpointError, match="list of 2 to 3 class names"):
        read_run_meta(trained_run, DataLimits(max_classes=3))


def test_weights_are_compared_with_model_json_before_the_model_is_built(trained_run, tmp_path):
    run = shutil.copytree(trained_run, tmp_path / "run")
    meta = json.loads((run / "model.json").read_text())
    meta["classes"] = meta["classes"] + ["extra"]
    (run / "model.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"tensor 'classifier.weight' is F32 \[10, 12544\], expected F32 \[11, 12544\]"):
        load_run(run)


def test_onnx_metadata_values_are_parsed_and_checked():
    ok = read_onnx_metadata({"advcli.classes": '["a", "b"]', "advcli.input_shape": "[1, 8, 8]", "other": "x"},
                            "m.onnx", DataLimits())
    assert ok == {"advcli.classes": ["a", "b"], "advcli.input_shape": [1, 8, 8]}
    with pytest.raises(CheckpointError, match="m.onnx: metadata: 'advcli.classes' must be a list"):
        read_onnx_metadata({"advcli.classes": '"ab"'}, "m.onnx", DataLimits())
    with pytest.raises(CheckpointError, match="corrupt JSON"):
        read_onnx_metadata({"advcli.input_shape": "[1, 8"}, "m.onnx", DataLimits())


# Destinations ------------------------------------------------------------------------------------

def test_a_destination_is_checked_before_the_work(tmp_path):
    (tmp_path / "a-file").write_text("x")
    assert check_destination(tmp_path / "new" / "deeper" / "report.json", param="report")
    with pytest.raises(OutputError, match="is not a folder"):
        check_destination(tmp_path / "a-file" / "report.json", param="report")
    with pytest.raises(OutputError, match="already exists; choose another `report`"):
        check_destination(tmp_path / "a-file", param="report")
    with pytest.raises(OutputError, match="pass `force`"):
        check_destination(tmp_path / "a-file", param="report", force=False)
    assert check_destination(tmp_path / "a-file", param="report", force=True)
    (tmp_path / "a-folder").mkdir()
    with pytest.raises(OutputError, match="is a folder"):
        check_destination(tmp_path / "a-folder", param="report", force=True)
    with pytest.raises(OutputError, match="already exists"):
        check_destination(tmp_path / "a-folder", param="out", folder=True)


def test_a_run_folder_is_never_replaced_into_even_with_force(trained_run):
    for name in ("model.json", "loss.png"):
        with pytest.raises(OutputError, match="belongs to the run"):
            check_destination(trained_run / name, param="report", force=True)
    assert check_destination(trained_run / "attacks" / "new.npz", param="out")  # new files in a run are fine


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_folder_without_write_permission_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="no permission"):
            check_destination(locked / "report.json", param="report")
    finally:
        locked.chmod(0o700)


def test_leftovers_of_writers_that_are_gone_are_removed_and_no_others(tmp_path):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = int(finished.stdout)
    with atomic_folder(tmp_path / "live") as staging:
        ours = staging.name  # this process is alive: its staging folder stays
        host = ours.split(".partial-")[1].split("-")[0]
        dead = tmp_path / f".run.partial-{host}-{gone}-x1"
        dead.mkdir()
        (tmp_path / f".report.json.writing-{host}-{gone}-x2.tmp").write_text("half")
        other_host = tmp_path / f".run.partial-00000000-{gone}-x3"
        other_host.mkdir()
        unrelated = tmp_path / ".partial-notes"
        unrelated.mkdir()
        removed = remove_leftovers(tmp_path)
        assert sorted(path.name for path in removed) == sorted([dead.name, f".report.json.writing-{host}-{gone}-x2.tmp"])
        assert staging.is_dir() and other_host.is_dir() and unrelated.is_dir()
    assert (tmp_path / "live").is_dir()


# The newest-run search ---------------------------------------------------------------------------

def test_the_newest_run_search_passes_over_broken_and_interrupted_runs_and_says_why(trained_run, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(trained_run, runs / "a-good")
    (runs / "b-broken").mkdir()
    (runs / "b-broken" / "model.json").write_text("[1]")
    shutil.copytree(trained_run, runs / "c-interrupted")
    meta = json.loads((runs / "c-interrupted" / "model.json").read_text())
    meta["metrics"]["interrupted"] = True
    meta["created"] = "9999-01-01T00:00:00+00:00"
    (runs / "c-interrupted" / "model.json").write_text(json.dumps(meta))
    search = newest_run(runs)
    assert search.path == runs / "a-good"
    reasons = {path.name: reason for path, reason in search.skipped}
    assert set(reasons) == {"b-broken", "c-interrupted"}
    assert "not an advcli run" in reasons["b-broken"] and "interrupted" in reasons["c-interrupted"]
    shutil.rmtree(runs / "a-good")
    with pytest.raises(CheckpointError, match="2 passed over"):
        newest_run(runs)


# Terminal text -----------------------------------------------------------------------------------

def test_terminal_text_is_shown_as_it_is():
    assert visible("plain [red] text") == "plain [red] text"
    assert visible("x\x1b[2Jy\nz\x9b\u202e") == "x\\x1b[2Jy\\nz\\x9b\\u202e"
    from rich.console import Console

    console = Console(record=True, width=200, color_system=None)
    for text in ("x[/]y", "x[red]y[/red]z", "x[link=mailto:a@b]y[/link]", "a\\[b]", "x\x07\x1b]0;t\x07y"):
        console.print(f"[bold]{shown(text)}[/]")
        assert console.export_text().rstrip("\n") == visible(text)


def test_the_console_entry_point_prints_usage_errors_on_one_line():
    result = subprocess.run([sys.executable, "-m", "advcli", "eval", "--batch-size", "0"], cwd=REPO,
                            capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "--batch-size" in line and result.stdout == ""
