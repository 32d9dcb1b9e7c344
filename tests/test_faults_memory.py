"""Fault suite: crafted files that claim or expand into far more memory than they occupy.

Each is loaded by the real ``advcli`` entry point in a child process (the fork server) under
RLIMIT_AS of 3 GiB, so a loader that trusts the file fails there instead of exhausting the
machine. Contract: refused with exit 2 and one ``error:`` line, and the child's peak resident
memory stays under 1 GiB (measured with wait4's ru_maxrss, see faults.forkserver).
"""

from __future__ import annotations

import pytest
from faults.bombs import DATA_BOMBS, MEMORY_LIMIT, PEAK_RSS_TARGET
from faults.checkpoints import edit_meta
from faults.contract import assert_refused, case
from faults.fixtures import artifacts, world  # noqa: F401 - fixtures
from faults.processes import Job, shared_fork_server

MiB = 1 << 20


@pytest.fixture(scope="module")
def server():
    return shared_fork_server()


def _assert_refused_within_memory(outcome) -> None:
    assert not outcome.timed_out, outcome.describe()
    assert outcome.signal is None, outcome.describe()
    assert_refused(outcome)
    assert outcome.peak_rss < PEAK_RSS_TARGET, f"peak RSS {outcome.peak_rss / MiB:.0f} MiB\n{outcome.describe()}"


@pytest.mark.parametrize("name", list(DATA_BOMBS))
def test_crafted_data_is_refused_within_1_gib(name, server, tmp_path):
    spec = DATA_BOMBS[name](tmp_path / "data")
    out = tmp_path / "never"
    outcome = server.run_one(Job(["train", "--data", spec, "--epochs", 1, "--out", out, "--device", "cpu"],
                                 cwd=tmp_path, memory_limit=MEMORY_LIMIT, timeout=60))
    _assert_refused_within_memory(outcome)
    assert not out.exists()


@pytest.mark.parametrize("shape", [
    case([1, 2000, 2000], id="1x2000x2000"),
    case([1, 30000, 30000], id="1x30000x30000"),
])
def test_model_json_claiming_a_huge_input_is_refused_within_1_gib(shape, server, world):
    """model.json carries no checksum: its input_shape decides the size of the model built to load the weights."""
    edit_meta(world.run, "input_shape", shape)
    before = world.snapshot()
    outcome = server.run_one(Job(["eval", "--model", world.run, "--samples", 4, "--iters", 1, "--sanity-samples", 0],
                                 cwd=world.root, memory_limit=MEMORY_LIMIT, timeout=60))
    _assert_refused_within_memory(outcome)
    world.assert_unchanged(before)


def test_the_fork_server_measures_what_a_fresh_process_uses(server, world):
    """Calibration: the same evaluation as a fresh ``python -m advcli`` process peaks no higher than the
    fork server reports (so a figure under the target is one a user would see too)."""
    from faults.processes import run_module

    argv = ["eval", "--model", world.run, "--samples", 4, "--iters", 1, "--sanity-samples", 0, "--json"]
    forked = server.run_one(Job(argv, cwd=world.root))
    fresh = run_module(Job(argv, cwd=world.root))
    assert forked.code == fresh.code == 0, forked.describe() + fresh.describe()
    assert forked.stdout.count("clean_accuracy") == fresh.stdout.count("clean_accuracy") == 1
    assert forked.peak_rss >= fresh.peak_rss * 0.9, (forked.peak_rss / MiB, fresh.peak_rss / MiB)
