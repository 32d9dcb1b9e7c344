"""Fault suite: output destinations that cannot be written, full disks, overwrites, permissions.

A destination that cannot work (under a file, in a read-only folder, a folder where a file is
wanted) must be refused before the work starts: exit 2, one line, nothing created. A disk that
fills up during a save cannot be foreseen: then the work's own lines may precede the one error
line, and nothing half-written may be left. Existing files are never overwritten silently, a
run's own files least of all. Outputs get the permissions the umask gives, like any other file.
"""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest
from faults.artifacts import copy_run, umask
from faults.contract import assert_failed_after_work, assert_refused, assert_succeeded, case, invoke, tree_digest
from faults.fixtures import artifacts, world  # noqa: F401 - fixtures
from faults.processes import Job, shared_fork_server, small_tmpfs

EVAL = ("--samples", 4, "--iters", 1, "--sanity-samples", 0, "--device", "cpu")


def _train(w, out):
    return ("train", "--data", w.artifacts.spec, "--epochs", 1, "--device", "cpu", "--out", out)


def _eval_report(w, out):
    return ("eval", "--model", w.run, *EVAL, "--report", out)


def _eval_plot(w, out):
    return ("eval", "--model", w.run, *EVAL, "--eps", "0,0.1", "--plot", out)


def _attack_out(w, out):
    return ("attack", "--model", w.run, "--samples", 4, "--iters", 1, "--device", "cpu", "--out", out)


def _attack_grid(w, out):
    return ("attack", "--model", w.run, "--samples", 4, "--iters", 1, "--device", "cpu",
            "--out", w.root / "adv.npz", "--grid", out)


def _export(w, out):
    return ("export", "--model", w.run, "--parity-samples", 4, "--out", out)


def _resume(w, out):
    return ("train", "--resume", copy_run(w.artifacts.interrupted, w.runs / "interrupted"), "--out", out)


DESTINATIONS = {
    "train": (_train, "run"),
    "resume": (_resume, "run"),
    "eval-report": (_eval_report, "report.json"),
    "eval-plot": (_eval_plot, "curve.png"),
    "attack-out": (_attack_out, "adv.npz"),
    "attack-grid": (_attack_grid, "grid.png"),
    "export": (_export, "model.onnx"),
}


@pytest.mark.parametrize("command", list(DESTINATIONS))
def test_a_destination_under_a_file_is_refused_before_the_work(command, world):
    build, name = DESTINATIONS[command]
    (world.root / "a-file").write_text("not a folder\n")
    args = build(world, world.root / "a-file" / name)
    before = world.snapshot()
    assert_refused(invoke(*args))
    world.assert_unchanged(before)


@pytest.mark.parametrize("command", list(DESTINATIONS))
def test_a_destination_in_a_read_only_folder_is_refused_before_the_work(command, world):
    build, name = DESTINATIONS[command]
    with small_tmpfs(world.root / "ro", "1m", read_only=True) as folder:
        if folder is None:
            pytest.skip("mounting a read-only tmpfs is not allowed here (needs root)")
        args = build(world, folder / name)
        before = world.snapshot()
        assert_refused(invoke(*args))
        world.assert_unchanged(before)


@pytest.mark.parametrize("command", list(("eval-report", "eval-plot", "attack-grid")))
def test_a_file_destination_naming_a_folder_is_refused_before_the_work(command, world):
    build, name = DESTINATIONS[command]
    (world.root / name).mkdir()
    args = build(world, world.root / name)
    before = world.snapshot()
    assert_refused(invoke(*args))
    world.assert_unchanged(before)


def test_runs_dir_being_a_file_is_refused_before_training(world):
    (world.root / "runs-file").write_text("x")
    before = world.snapshot()
    assert_refused(invoke("train", "--data", world.artifacts.spec, "--epochs", 1, "--device", "cpu",
                          "--runs-dir", world.root / "runs-file"))
    world.assert_unchanged(before)


# Full disks ---------------------------------------------------------------------------------------

FULL_DISK = {"train": (_train, "run"), "eval-report": (_eval_report, "report.json"),
             "attack-out": (_attack_out, "adv.npz"), "export": (_export, "model.onnx")}


@pytest.mark.parametrize("command", list(FULL_DISK))
def test_a_full_disk_fails_with_one_error_line_and_leaves_nothing(command, world):
    build, name = FULL_DISK[command]
    with small_tmpfs(world.root / "full", "64k") as folder:
        if folder is None:
            pytest.skip("mounting a tmpfs is not allowed here (needs root)")
        (folder / "earlier.txt").write_bytes(b"x" * 4096)
        filler = folder / "filler"
        try:
            filler.write_bytes(b"\0" * (1 << 20))
        except OSError:
            pass  # the disk is now full, as intended
        before = tree_digest(folder)
        outcome = invoke(*build(world, folder / name))
        message = assert_failed_after_work(outcome)
        assert tree_digest(folder) == before, "the full disk holds leftovers"
        if command == "train":  # a trained model is kept elsewhere, and the message says where
            rescued = Path(message.rsplit("saved to ", 1)[1].removesuffix(" instead"))
            try:
                assert_succeeded(invoke("eval", "--model", rescued, *EVAL))
            finally:
                shutil.rmtree(rescued.parent)


@pytest.mark.parametrize("command", list(FULL_DISK))
def test_a_file_size_limit_fails_with_one_error_line_and_leaves_nothing(command, world):
    """The same without mounting anything: RLIMIT_FSIZE makes every write past 2 KiB fail with EFBIG."""
    build, name = FULL_DISK[command]
    target = world.root / "out" / name
    (world.root / "out").mkdir()
    before = world.snapshot()
    outcome = shared_fork_server().run_one(Job(build(world, target), cwd=world.root, file_size_limit=2048))
    assert_failed_after_work(outcome)
    world.assert_unchanged(before)


# Overwrites ---------------------------------------------------------------------------------------

def _existing_report(w):
    path = w.root / "report.json"
    path.write_text('{"kept": true}\n')
    return _eval_report(w, path)


def _existing_plot(w):
    path = w.root / "curve.png"
    path.write_bytes(b"\x89PNG earlier")
    return _eval_plot(w, path)


OVERWRITES = {
    "report-over-a-file": _existing_report,
    "report-over-model-json": lambda w: _eval_report(w, w.run / "model.json"),
    "plot-over-a-file": _existing_plot,
    "plot-over-loss-png": lambda w: _eval_plot(w, w.run / "loss.png"),
    "train-over-a-run": lambda w: _train(w, w.run),
    "train-over-a-file": lambda w: _train(w, w.run / "history.csv"),
    "attack-over-a-file": lambda w: _attack_out(w, w.run / "history.csv.npz"),
    "attack-grid-over-loss-png": lambda w: _attack_grid(w, w.run / "loss.png"),
    "export-over-model-json": lambda w: _export(w, w.run / "model.json"),
}


@pytest.mark.parametrize("name", list(OVERWRITES))
def test_existing_files_are_never_overwritten(name, world):
    (world.run / "history.csv.npz").write_bytes(b"earlier")
    args = OVERWRITES[name](world)
    before = world.snapshot()
    assert_refused(invoke(*args), mentions=["exists"])
    world.assert_unchanged(before)


@pytest.mark.parametrize("target", [case("unrelated", id="unrelated-file"),
                                    case("model.json", id="run-model-json")])
def test_force_overwrites_a_report_but_never_a_run_file(target, world):
    """--force lets a report replace an earlier report; a run's own files stay protected even then."""
    path = world.root / "report.json" if target == "unrelated" else world.run / "model.json"
    if target == "unrelated":
        path.write_text('{"earlier": true}\n')
        assert_succeeded(invoke(*_eval_report(world, path), "--force"))
        assert "clean_accuracy" in json.loads(path.read_text())
    else:
        before = world.snapshot()
        assert_refused(invoke(*_eval_report(world, path), "--force"))
        world.assert_unchanged(before)


# Permissions --------------------------------------------------------------------------------------

def _modes(paths):
    return {path.name: stat.S_IMODE(path.stat().st_mode) for path in paths}


OUTPUTS = {
    "run-folder": (lambda w: _train(w, w.runs / "new"), lambda w: [w.runs / "new", *sorted((w.runs / "new").iterdir())]),
    "report": (lambda w: _eval_report(w, w.root / "r.json"), lambda w: [w.root / "r.json"]),
    "attack": (lambda w: _attack_out(w, w.root / "a.npz"), lambda w: [w.root / "a.npz", w.root / "a.png"]),
    "export": (lambda w: _export(w, w.root / "m.onnx"), lambda w: [w.root / "m.onnx", w.root / "m.onnx.parity.json"]),
}


@pytest.mark.parametrize("output", list(OUTPUTS))
def test_outputs_get_the_permissions_the_umask_gives(output, world):
    command, produced = OUTPUTS[output]
    with umask(0o022):
        assert_succeeded(invoke(*command(world)))
    modes = _modes(produced(world))
    expected = {name: 0o755 if path.is_dir() else 0o644 for name, path in zip(modes, produced(world))}
    assert modes == expected
