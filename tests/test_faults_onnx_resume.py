"""Fault suite: crafted ONNX files and metadata, transfer sources, and resume states.

ONNX metadata is plain text anyone can rewrite; resume.json is checksummed in model.json, so a
crafted one rewrites the checksum too. Every case: exit 2 with one ``error:`` line, nothing
created, nothing altered.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from faults.artifacts import copy_run
from faults.checkpoints import (
    META,
    REMOVE,
    RESUME_INFO,
    RESUME_TENSORS,
    edit_meta,
    edit_resume_info,
    nested_json,
    onnx_metadata,
    rewrite_onnx_metadata,
    rewrite_resume_tensors,
    write_resume_info,
)
from faults.contract import assert_refused, assert_succeeded, invoke, strict_json
from faults.fixtures import artifacts, world  # noqa: F401 - fixtures

EVAL = ("--samples", 4, "--iters", 1, "--sanity-samples", 0, "--device", "cpu")
COMMANDS = {"eval": ("eval", *EVAL), "verify": ("verify", "--samples", 4, "--bounds-only", "--device", "cpu")}

ONNX_METADATA_CASES = {
    "input-shape-a-number": {"advcli.input_shape": "5"},
    "input-shape-a-string": {"advcli.input_shape": '"abc"'},
    "input-shape-two-dims": {"advcli.input_shape": "[1, 12]"},
    "input-shape-not-json": {"advcli.input_shape": "[1, 12"},
    "input-shape-deeply-nested": {"advcli.input_shape": nested_json(100_000)},
    "classes-a-number": {"advcli.classes": "7"},
    "classes-a-string": {"advcli.classes": '"abcd"'},
    "classes-a-dict": {"advcli.classes": '{"a": 0, "b": 1, "c": 2, "d": 3}'},
    "classes-numbers": {"advcli.classes": "[0, 1, 2, 3]"},
    "classes-too-many": {"advcli.classes": '["a", "b", "c", "d", "e"]'},
    "data-missing-file": {"advcli.data": "npz:/nonexistent/data.npz"},
    "data-empty": {"advcli.data": ""},
    "source-fingerprint-empty": {"advcli.source_fingerprint": ""},
}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("name", list(ONNX_METADATA_CASES))
def test_crafted_onnx_metadata_is_refused(name, command, world):
    onnx_file = rewrite_onnx_metadata(world.artifacts.onnx, world.root / "crafted" / "model.onnx",
                                      ONNX_METADATA_CASES[name])
    before = world.snapshot()
    assert_refused(invoke(*COMMANDS[command], "--model", onnx_file))
    world.assert_unchanged(before)


TRANSFER_SOURCE_CASES = {
    "source-run-relative-elsewhere": {"advcli.source_run": "somewhere/else"},
}


@pytest.mark.parametrize("name", list(TRANSFER_SOURCE_CASES))
def test_an_unusable_source_in_onnx_metadata_falls_back_to_square_and_says_so(name, world):
    """Without conversion, a file whose metadata names no usable run is attacked by Square, never silently."""
    onnx_file = rewrite_onnx_metadata(world.artifacts.onnx, world.root / "crafted" / "model.onnx",
                                      TRANSFER_SOURCE_CASES[name])
    outcome = invoke("eval", "--model", onnx_file, "--no-convert", "--json", *EVAL)
    assert_succeeded(outcome)
    report = strict_json(outcome.stdout)
    assert report["white_box"]["mode"] == "black-box" and "transfer_error" in report["white_box"]
    assert "replaced by square" in " ".join(outcome.stderr.split())


def test_onnx_source_run_with_a_bad_weights_field_is_named_not_a_crash(world):
    """The run named in the file's metadata is read to match its fingerprint; a corrupt one is named, not a crash."""
    source = copy_run(world.artifacts.run, world.root / "source")
    edit_meta(source, "weights", "model.safetensors")
    onnx_file = rewrite_onnx_metadata(world.artifacts.onnx, world.root / "crafted" / "model.onnx",
                                      {"advcli.source_run": str(source)})
    before = world.snapshot()
    outcome = invoke("eval", "--model", onnx_file, "--no-convert", "--json", *EVAL)
    assert_succeeded(outcome)
    assert "unreadable" in strict_json(outcome.stdout)["white_box"]["transfer_error"]
    world.assert_unchanged(before)


def test_an_export_names_its_source_run_by_an_absolute_path(world, monkeypatch, tmp_path):
    """Exported from inside the runs folder with a relative --model, then evaluated from elsewhere."""
    monkeypatch.chdir(world.runs)
    out = world.root / "exported" / "model.onnx"
    assert_succeeded(invoke("export", "--model", "good", "--out", out, "--parity-samples", 4))
    assert onnx_metadata(out)["advcli.source_run"] == str(world.run)
    assert json.loads((out.parent / "model.onnx.parity.json").read_text())["source_run"] == str(world.run)
    monkeypatch.chdir(tmp_path)
    moved = shutil.copy(out, tmp_path / "moved.onnx")  # away from the run: only the metadata can find it
    assert_succeeded(invoke("eval", "--model", moved, *EVAL))


ONNX_FILE_CASES = {
    "zero-bytes": b"",
    "random-bytes": bytes(range(256)) * 4,
    "json-renamed": b'{"format": "advcli-run"}',
}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("name", list(ONNX_FILE_CASES))
def test_a_corrupt_onnx_file_is_refused(name, command, world):
    path = world.root / "bad.onnx"
    path.write_bytes(ONNX_FILE_CASES[name])
    before = world.snapshot()
    assert_refused(invoke(*COMMANDS[command], "--model", path))
    world.assert_unchanged(before)


def _source_classes_int(world):
    edit_meta(world.run, "classes", 4)
    return world.run


def _source_json_list(world):
    (world.run / META).write_text("[1]")
    return world.run


SOURCE_CASES = {
    "classes-an-int": _source_classes_int,
    "model-json-a-list": _source_json_list,
    "absent": lambda world: world.root / "absent",
    "an-onnx-file": lambda world: world.artifacts.onnx,
}


@pytest.mark.parametrize("name", list(SOURCE_CASES))
def test_source_naming_a_corrupt_run_is_refused(name, world):
    source = SOURCE_CASES[name](world)
    before = world.snapshot()
    assert_refused(invoke("eval", "--model", world.artifacts.onnx, "--source", source, *EVAL))
    world.assert_unchanged(before)


# Resume state -------------------------------------------------------------------------------------

RESUME_INFO_CASES = {
    "step-a-string": ("step", "1"),
    "step-zero": ("step", 0),
    "step-a-fraction": ("step", 1.5),
    "total-steps-a-string": ("total_steps", "16"),
    "history-a-number": ("history", 5),
    "history-of-numbers": ("history", [1, 2]),
    "seconds-a-string": ("seconds", "x"),
    "seconds-null": ("seconds", None),
    "optimizer-a-number": ("optimizer", 5),
    "optimizer-state-a-list": ("optimizer.state", []),
    "carry-requires-grad-unknown": ("carry_requires_grad", ["ghost"]),
    "config-a-list": ("config", []),
    "config-unknown-key": ("config.colour", "blue"),
    "config-epochs-a-string": ("config.epochs", "2"),
    "data-fingerprint-other": ("data_fingerprint", "sha256:" + "0" * 64),
    "format-version-a-string": ("format_version", "1"),
    "format-missing": ("format", REMOVE),
}


@pytest.fixture
def interrupted(world):
    """A private copy of the shared interrupted run, inside the world."""
    return copy_run(world.artifacts.interrupted, world.runs / "interrupted")


def _assert_resume_refused(world, run, tmp_path):
    before = world.snapshot()
    out = tmp_path / "resumed"
    assert_refused(invoke("train", "--resume", run, "--out", out))
    assert not out.exists()
    world.assert_unchanged(before)


def test_the_untouched_resume_state_resumes(world, interrupted, tmp_path):
    """The baseline the resume cases break: the same command on the unaltered copy succeeds."""
    result = invoke("train", "--resume", interrupted, "--out", tmp_path / "resumed", "--json")
    assert result.code == 0 and result.exception is None, result.describe()
    assert json.loads(result.stdout)["iterations"] == json.loads((interrupted / "resume.json").read_text())["total_steps"]


@pytest.mark.parametrize("name", list(RESUME_INFO_CASES))
def test_crafted_resume_json_is_refused(name, world, interrupted, tmp_path):
    edit_resume_info(interrupted, *RESUME_INFO_CASES[name])
    _assert_resume_refused(world, interrupted, tmp_path)


def _entry_a_string(run):
    edit_meta(run, "resume", "resume.json")


def _altered_without_checksum(run):
    write_resume_info(run, (run / RESUME_INFO).read_text().replace('"step": 1', '"step": 2'), fix_checksum=False)


def _tensors_flipped(run):
    data = bytearray((run / RESUME_TENSORS).read_bytes())
    data[-1] ^= 0xFF
    (run / RESUME_TENSORS).write_bytes(bytes(data))


RESUME_FILE_CASES = {
    "entry-a-string": _entry_a_string,
    "entry-empty": lambda run: edit_meta(run, "resume", {}),
    "info-altered-checksum-kept": _altered_without_checksum,
    "info-not-json": lambda run: write_resume_info(run, "{not json"),
    "info-deeply-nested": lambda run: write_resume_info(run, nested_json(100_000)),
    "info-a-list": lambda run: write_resume_info(run, "[]"),
    "tensors-altered-checksum-kept": _tensors_flipped,
    "tensors-missing": lambda run: (run / RESUME_TENSORS).unlink(),
    "tensors-without-rng-state": lambda run: rewrite_resume_tensors(
        run, lambda t: {k: v for k, v in t.items() if k != "rng.shuffle"}),
    "tensors-rng-state-float": lambda run: rewrite_resume_tensors(
        run, lambda t: {**t, "rng.shuffle": t["rng.shuffle"].float()}),
    "tensors-wrong-weight-shape": lambda run: rewrite_resume_tensors(
        run, lambda t: {**t, "model.classifier.bias": torch.zeros(3)}),
}


@pytest.mark.parametrize("name", list(RESUME_FILE_CASES))
def test_corrupt_or_forged_resume_files_are_refused(name, world, interrupted, tmp_path):
    RESUME_FILE_CASES[name](interrupted)
    _assert_resume_refused(world, interrupted, tmp_path)


def test_resume_into_an_existing_folder_is_refused(world, interrupted):
    before = world.snapshot()
    assert_refused(invoke("train", "--resume", interrupted, "--out", world.run), mentions=["already exists"])
    world.assert_unchanged(before)
