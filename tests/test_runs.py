"""Run folders: round trip, integrity checks, atomic writes, newest-run lookup."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from advcli.errors import CheckpointError, OutputError
from advcli.io.runs import find_latest_run, load_run, save_run


def test_round_trip_restores_the_same_model(trained_run, tiny_dataset):
    run = load_run(trained_run)
    again = load_run(trained_run / "model.json")
    x = tiny_dataset.x_test[:16]
    with torch.no_grad():
        assert torch.equal(run.model(x), again.model(x))
    meta = run.meta
    assert meta["architecture"] == "seed-cnn"
    assert meta["input_shape"] == [1, 28, 28] and meta["input_range"] == [0.0, 1.0]
    assert meta["classes"] == [str(i) for i in range(10)]
    assert meta["config"]["epochs"] == 10 and meta["seed"] == 0
    assert meta["data"]["fingerprint"] == tiny_dataset.fingerprint
    assert {"torch", "numpy", "python"} <= set(meta["versions"])
    with torch.no_grad():
        recomputed = float((run.model(tiny_dataset.x_test).argmax(1) == tiny_dataset.y_test).float().mean())
    assert meta["metrics"]["clean_test_accuracy"] == pytest.approx(recomputed, abs=1e-6)
    assert run.fingerprint.startswith("sha256:")
    assert (trained_run / "history.csv").read_text().startswith("iteration,epoch,loss")
    assert (trained_run / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert not any(p.suffix in (".pt", ".pth", ".pkl") for p in trained_run.iterdir())


@pytest.fixture
def run_copy(trained_run, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(trained_run, target)
    return target


def test_altered_weights_are_detected(run_copy):
    weights = run_copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum"):
        load_run(run_copy)


def test_truncated_weights_with_matching_checksum_are_reported(run_copy):
    weights = run_copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    meta = json.loads((run_copy / "model.json").read_text())
    from advcli.io.provenance import file_sha256

    meta["weights"]["sha256"] = file_sha256(weights)
    (run_copy / "model.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="safetensors"):
        load_run(run_copy)


@pytest.mark.parametrize("content", ["{not json", "[]", json.dumps({"format": "other"})])
def test_corrupt_metadata_is_reported(run_copy, content):
    (run_copy / "model.json").write_text(content)
    with pytest.raises(CheckpointError):
        load_run(run_copy)


def test_missing_run_is_reported(tmp_path):
    with pytest.raises(CheckpointError, match="no such"):
        load_run(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="model.json"):
        load_run(tmp_path / "empty")
    with pytest.raises(CheckpointError, match="no trained runs"):
        find_latest_run(tmp_path / "nothing")


def test_existing_run_is_never_overwritten(trained_run):
    before = (trained_run / "model.json").read_text()
    with pytest.raises(OutputError, match="already exists"):
        save_run(trained_run, torch.nn.Linear(2, 2), {}, [])
    assert (trained_run / "model.json").read_text() == before


def test_failed_save_leaves_nothing_behind(tmp_path):
    def broken_writer(folder):
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        save_run(tmp_path / "run", torch.nn.Linear(2, 2), {}, [], extra_writers=[broken_writer])
    assert list(tmp_path.iterdir()) == []


def test_newest_run_is_found(trained_run, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    for name, created in (("old", "2026-01-01T00:00:00+00:00"), ("new", "2026-06-01T00:00:00+00:00")):
        shutil.copytree(trained_run, runs / name)
        meta = json.loads((runs / name / "model.json").read_text())
        meta["created"] = created
        (runs / name / "model.json").write_text(json.dumps(meta))
    (runs / ".partial-x").mkdir()
    assert find_latest_run(runs).name == "new"
