"""Faults: a rank that dies or stops answering ends the job with an error within the timeout, and
torchrun restarts reconnect, on one node and on two (two torchrun processes on 127.0.0.1)."""

from __future__ import annotations

import subprocess
import time

import pytest

from advcli.runtime.distributed import restartable_environment
from distributed_launch import (
    free_port, job_environment, job_failure, read_rank, requires_gloo, run_torchrun, start_ranks, torchrun_command,
)

pytestmark = [requires_gloo, pytest.mark.slow]


def finish(processes: list[subprocess.Popen], timeout: float) -> list[int]:
    """Each process's exit code; any still running after `timeout` seconds is killed (code None)."""
    deadline = time.monotonic() + timeout
    codes = []
    for process in processes:
        try:
            codes.append(process.wait(timeout=max(deadline - time.monotonic(), 0.1)))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            codes.append(None)
    return codes


def test_a_dead_rank_gives_rank_0_an_error_at_once(tmp_path):
    timeout = 15
    ranks = start_ranks("dead-rank", tmp_path, arguments=(str(timeout),))
    assert finish(ranks, 30) == [0, 3], [process.stdout.read() for process in ranks]
    report = read_rank(tmp_path, 0)
    assert report["error"] is not None and report["error"].startswith("rank 0 of 2: agreeing (any) failed: ")
    assert "\n" not in report["error"]
    assert report["seconds_to_error"] < timeout


def test_a_silent_rank_gives_rank_0_an_error_after_the_timeout(tmp_path):
    timeout = 3
    ranks = start_ranks("hung-rank", tmp_path, arguments=(str(timeout),))
    codes = finish(ranks[:1], 30) + finish(ranks[1:], 0.1)  # rank 1 sleeps: killed here
    assert codes == [0, None], ranks[0].stdout.read()
    report = read_rank(tmp_path, 0)
    assert report["error"] is not None and report["error"].startswith("rank 0 of 2: barrier failed: ")
    assert timeout * 0.9 <= report["seconds_to_error"] < timeout + 5


def test_torchrun_ends_a_job_whose_rank_died(tmp_path):
    started = time.monotonic()
    result = run_torchrun("dead-rank", tmp_path, worker_arguments=("60",))
    assert result.returncode != 0
    assert time.monotonic() - started < 30
    assert "exitcode" in result.stderr and ": 3" in result.stderr, job_failure(result)


def assert_restarted(out) -> None:
    """Both ranks of the last attempt finished together after rank 1 had died once."""
    assert (out / "rank-1-died").exists()
    reports = [read_rank(out, rank) for rank in range(2)]
    assert [(report["sum"], report["restart_problem"]) for report in reports] == [(3, None), (3, None)]
    assert max(report["restart_count"] for report in reports) >= 1


def test_torchrun_restarts_a_job_on_one_node(tmp_path):
    result = run_torchrun("restart", tmp_path, extra=("--max-restarts", "1"),
                          environment=restartable_environment(job_environment()))
    assert result.returncode == 0, job_failure(result)
    assert_restarted(tmp_path)


def test_two_nodes_rendezvous_and_restart(tmp_path):
    endpoint = f"127.0.0.1:{free_port()}"
    launcher = ("--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint,
                "--rdzv-id", "advcli-test", "--local-addr", "127.0.0.1", "--max-restarts", "1")
    environment = restartable_environment(job_environment())
    nodes = [subprocess.Popen(torchrun_command("restart", tmp_path, *launcher), env=environment,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    codes = finish(nodes, 45)
    assert codes == [0, 0], [node.stdout.read()[-2000:] for node in nodes]
    assert_restarted(tmp_path)
