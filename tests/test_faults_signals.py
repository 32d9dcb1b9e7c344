"""Fault suite: signals during training, evaluation and saving, and concurrent runs.

Real processes (the fork server's children, and one fresh ``python -m advcli`` for calibration)
receive real signals at chosen moments. Contract: Ctrl-C means exit 130 in every command
(training saves a resumable run first, marked so that the newest-run search skips it);
SIGTERM/SIGKILL never leave a half-written run, and a later run cleans up what a killed save
left; concurrent trainings never corrupt each other's results.
"""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import pytest
from faults.contract import TRACEBACK, assert_failed_after_work, assert_succeeded, case, error_lines, invoke
from faults.fixtures import artifacts, world  # noqa: F401 - fixtures
from faults.processes import Job, run_module, shared_fork_server

SIGINT, SIGTERM, SIGKILL = signal.SIGINT, signal.SIGTERM, signal.SIGKILL


@pytest.fixture(scope="module")
def server():
    return shared_fork_server()


def _training(world, command: str, out, epochs: int = 40) -> list:
    extra = ("--eps", 0.1) if command == "robust-train" else ()
    return [command, "--data", world.artifacts.spec, "--epochs", epochs, "--batch-size", 20, "--device", "cpu",
            "--precision", "fp32", "--out", out, *extra]


def _hidden_leftovers(folder) -> list:
    return sorted(path.name for path in folder.iterdir() if path.name.startswith("."))


@pytest.mark.parametrize("command", list(("train", "robust-train")))
def test_ctrl_c_during_training_saves_a_resumable_run_and_exits_130(command, server, world):
    out = world.runs / "stopped"
    before = world.snapshot()
    outcome = server.run_one(Job(_training(world, command, out), cwd=world.root, timeout=60,
                                 signals=[{"signal": SIGINT, "stderr_contains": "epoch 1/"}]))
    assert outcome.signals_sent == 1, outcome.describe()
    assert TRACEBACK not in outcome.stderr and outcome.code == 130, outcome.describe()
    meta = json.loads((out / "model.json").read_text())
    assert "resume" in meta and (out / "resume.safetensors").is_file()
    world.assert_unchanged(before, allowed=(out,))


def test_the_newest_run_search_skips_an_interrupted_run(world):
    """An interrupted run is newer than the finished one here; eval/attack/export must not pick it silently."""
    shutil.copytree(world.artifacts.interrupted, world.runs / "zz-interrupted")
    outcome = invoke("eval", "--runs-dir", world.runs, "--samples", 4, "--iters", 1, "--sanity-samples", 0,
                     "--device", "cpu", "--json")
    assert_succeeded(outcome)
    assert json.loads(outcome.stdout)["model"] == str(world.run)


LONG_ATTACK = ["--samples", 40, "--iters", 5000, "--device", "cpu", "--precision", "fp32"]


@pytest.mark.parametrize("command", ["eval", "attack"])
def test_ctrl_c_during_an_attack_exits_130_and_writes_nothing(command, server, world):
    extra = ["--sanity-samples", 0] if command == "eval" else ["--out", world.root / "adv.npz"]
    argv = [command, "--model", world.run, *LONG_ATTACK, *extra]
    before = world.snapshot()
    outcome = server.run_one(Job(argv, cwd=world.root, timeout=60, signals=[{"signal": SIGINT, "after": 1.5}]))
    assert outcome.signals_sent == 1 and outcome.code == 130, outcome.describe()
    assert_failed_after_work(outcome, 130)
    world.assert_unchanged(before)


def test_a_second_ctrl_c_aborts_at_once_with_130_and_leaves_nothing_half_written(server, world):
    """The first Ctrl-C stops training after its iteration; the second, sent once the save's staging
    folder appears, aborts the save. Either the save is undone or it had finished: never a
    half-written folder."""
    out = world.runs / "aborted"
    outcome = server.run_one(Job(_training(world, "train", out), cwd=world.root, timeout=60,
                                 signals=[{"signal": SIGINT, "stderr_contains": "epoch 1/"},
                                          {"signal": SIGINT, "path_glob": str(world.runs / ".aborted.partial-*")}]))
    assert outcome.signals_sent == 2, outcome.describe()
    assert_failed_after_work(outcome, 130)
    assert not _hidden_leftovers(world.runs)
    assert not out.exists() or json.loads((out / "model.json").read_text())["format"] == "advcli-run"


def test_sigterm_during_training_leaves_no_run_and_nothing_hidden(server, world):
    out = world.runs / "terminated"
    before = world.snapshot()
    outcome = server.run_one(Job(_training(world, "train", out), cwd=world.root, timeout=60,
                                 signals=[{"signal": SIGTERM, "stderr_contains": "epoch 1/"}]))
    assert outcome.signals_sent == 1 and (outcome.signal == SIGTERM or outcome.code in (130, 143)), outcome.describe()
    assert not out.exists() and not _hidden_leftovers(world.runs)
    world.assert_unchanged(before)


@pytest.mark.parametrize("signum", [case(SIGKILL, id="sigkill"),
                                    case(SIGTERM, id="sigterm")])
def test_a_save_killed_half_way_leaves_no_run_and_the_next_run_cleans_up(signum, server, world):
    out = world.runs / "killed"
    outcome = server.run_one(Job(_training(world, "train", out, epochs=1), cwd=world.root, timeout=60,
                                 signals=[{"signal": signum, "path_glob": str(world.runs / ".killed.partial-*")}]))
    assert outcome.signals_sent == 1 and outcome.signal == signum, outcome.describe()
    assert not out.exists(), "a killed save left a run folder"
    assert_succeeded(invoke(*_training(world, "train", world.runs / "next", epochs=1)))
    assert not _hidden_leftovers(world.runs), _hidden_leftovers(world.runs)


def test_concurrent_trainings_into_one_folder_leave_one_complete_run(server, world):
    out = world.runs / "shared"
    first, second = server.run(*(Job(_training(world, "train", out, epochs=1), cwd=world.root, timeout=90)
                                 for _ in range(2)))
    assert sorted([first.code, second.code]) == [0, 2], first.describe() + second.describe()
    loser = first if first.code == 2 else second
    message = assert_failed_after_work(loser, mentions=["exists", "saved to"])
    rescued = Path(message.rsplit("saved to ", 1)[1].removesuffix(" instead"))  # the loser's model, kept
    try:
        for run in (out, rescued):
            assert_succeeded(invoke("eval", "--model", run, "--samples", 4, "--iters", 1, "--sanity-samples", 0,
                                    "--device", "cpu"))
    finally:
        shutil.rmtree(rescued.parent)
    assert not _hidden_leftovers(world.runs)


def test_the_fork_server_handles_ctrl_c_as_a_fresh_process_does(server, world):
    """Calibration for the signal cases: the same Ctrl-C in training gives the same outcome, the same
    error lines and the same saved state from a forked child and from a fresh ``python -m advcli``."""
    signals = [{"signal": SIGINT, "stderr_contains": "epoch 1/"}]
    forked = server.run_one(Job(_training(world, "train", world.runs / "forked"), cwd=world.root, signals=signals))
    fresh = run_module(Job(_training(world, "train", world.runs / "fresh"), cwd=world.root, signals=signals))
    assert forked.signals_sent == fresh.signals_sent == 1
    assert (forked.code, forked.signal) == (fresh.code, fresh.signal), forked.describe() + fresh.describe()
    assert error_lines(forked) == error_lines(fresh)
    assert ("resume" in json.loads((world.runs / "forked" / "model.json").read_text())) == \
        ("resume" in json.loads((world.runs / "fresh" / "model.json").read_text()))
