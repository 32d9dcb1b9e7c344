"""Faults: a rank that stops answering ends the job with an error after the timeout, and a rank that
is killed in the middle of ``advcli robust-train`` on two torchrun nodes (two agents on 127.0.0.1,
``--max-restarts 1``) gives the other a one-line error, after which the job continues from its last
epoch checkpoint and finishes."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import pytest
from distributed_launch import free_port, job_environment, read_rank, requires_gloo, start_ranks
from training_scenarios import write_data

from advcli.runtime.restarts import restartable_environment

pytestmark = [requires_gloo, pytest.mark.slow]


def finish(processes: list[subprocess.Popen], timeout: float) -> list[Optional[int]]:
    """Each process's exit code; any still running after `timeout` seconds is killed (code None)."""
    deadline = time.monotonic() + timeout
    codes: list[Optional[int]] = []
    for process in processes:
        try:
            codes.append(process.wait(timeout=max(deadline - time.monotonic(), 0.1)))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            codes.append(None)
    return codes


def test_a_silent_rank_gives_rank_0_an_error_after_the_timeout(tmp_path):
    timeout = 3
    ranks = start_ranks("hung-rank", tmp_path, arguments=(str(timeout),))
    codes = finish(ranks[:1], 60) + finish(ranks[1:], 0.1)  # rank 1 sleeps: killed here
    assert codes == [0, None], ranks[0].stdout.read()
    report = read_rank(tmp_path, 0)
    assert report["error"] is not None and report["error"].startswith("rank 0 of 2: barrier failed: ")
    assert timeout * 0.9 <= report["seconds_to_error"] < timeout + 5


def workers_of(agent: subprocess.Popen) -> list[int]:
    """The worker processes a torchrun agent started (its children running advcli)."""
    workers = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent == agent.pid and b"advcli" in (entry / "cmdline").read_bytes():
                workers.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return workers


def rank_of(pid: int) -> Optional[int]:
    try:
        variables = dict(item.split(b"=", 1) for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                         if b"=" in item)
    except OSError:
        return None
    return int(variables[b"RANK"]) if b"RANK" in variables else None


def wait_for(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc to find the workers")
def test_a_killed_rank_ends_the_attempt_and_the_restart_continues_from_the_last_epoch(tmp_path):
    out = tmp_path / "robust"
    command = ["--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint",
               f"127.0.0.1:{free_port()}", "--rdzv-id", "advcli-test", "--local-addr", "127.0.0.1",
               "--max-restarts", "1", "--monitor-interval", "0.2", "-m", "advcli", "robust-train",
               "--data", write_data(tmp_path), "--arch", "mnist-small", "--epochs", "25", "--eps", "8/255",
               "--batch-size", "32", "--val-split", "0.25", "--lr", "0.05", "--device", "cpu", "--out", str(out),
               "--timeout", "30"]
    environment = restartable_environment(job_environment())
    agents = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", *command], env=environment,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    try:
        assert wait_for(lambda: any(out.with_name("robust.checkpoints").glob("iteration-*/model.json")), 90)
        victims = [pid for agent in agents for pid in workers_of(agent) if rank_of(pid) == 1]
        assert len(victims) == 1, victims
        os.kill(victims[0], signal.SIGKILL)
        codes = finish(agents, 150)
    finally:
        for agent in agents:
            agent.kill()
    output = "".join(agent.stdout.read() for agent in agents)
    assert codes == [0, 0], output[-4000:]
    died = [line for line in output.splitlines() if line.startswith("error: rank 0 of 2: ")]
    assert died and "another rank died or stopped answering" in died[0], output[-4000:]
    assert "Traceback" not in output and "continuing from" in output
    meta = json.loads((out / "model.json").read_text())
    assert meta["resumed_from"]["epoch_checkpoint"] and meta["resumed_from"]["iteration"] % 6 == 0
    assert meta["distributed"]["world_size"] == 2 and meta["metrics"]["iterations"] == 25 * 6
    with open(out / "history.csv") as handle:
        assert [int(row["iteration"]) for row in csv.DictReader(handle)] == list(range(1, 151))
    assert not out.with_name("robust.checkpoints").exists()
