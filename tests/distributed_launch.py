"""Starting test jobs on 127.0.0.1 as plain processes given torchrun's environment variables (no
elastic agent, so nothing ends a rank but the rank, and a job starts in less time than under
torchrun); tests that need torchrun itself start it with job_environment()."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest
import torch.distributed as dist

REPO = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("distributed_worker.py")


def gloo_unavailable_reason() -> Optional[str]:
    """Why this platform cannot run a gloo job on 127.0.0.1, or None."""
    if not dist.is_available() or not dist.is_gloo_available():
        return "this torch build has no gloo backend"
    try:
        free_port()
    except OSError as error:
        return f"cannot open a socket on 127.0.0.1: {error}"
    if _loopback_interface() is None:
        return "no loopback network interface found"
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _loopback_interface() -> Optional[str]:
    names = [name for _, name in socket.if_nameindex()]
    return next((name for name in names if name.startswith("lo")), None)


_UNAVAILABLE = gloo_unavailable_reason()
requires_gloo = pytest.mark.skipif(_UNAVAILABLE is not None, reason=str(_UNAVAILABLE))


def job_environment(extra: Optional[dict[str, str]] = None) -> dict[str, str]:
    """This process's environment for a job: the worktree's advcli, one thread, gloo on loopback."""
    launch = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith(("TORCHELASTIC_", "MASTER_")) and name not in launch}
    environment.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME=str(_loopback_interface()))
    environment.update(extra or {})
    return environment


def start_ranks(
    scenario: str, out: Path, *, world_size: int = 2, arguments: tuple[str, ...] = ()
) -> list[subprocess.Popen]:
    """`world_size` worker processes given torchrun's environment by hand (MASTER on 127.0.0.1)."""
    return start_commands([sys.executable, str(WORKER), scenario, str(out), *arguments], world_size=world_size)


def start_commands(command: list[str], *, world_size: int = 2, extra: Optional[dict[str, str]] = None,
                   separate_stderr: bool = False) -> list[subprocess.Popen]:
    """`command` as the `world_size` ranks of one job (torchrun's environment, no agent)."""
    port = str(free_port())
    processes = []
    for rank in range(world_size):
        environment = job_environment({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size),
                                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, **(extra or {})})
        processes.append(subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, text=True,
                                          stderr=subprocess.PIPE if separate_stderr else subprocess.STDOUT))
    return processes


def run_ranks(scenario: str, out: Path, *, world_size: int = 2, timeout: float = 120,
              arguments: tuple[str, ...] = ()) -> list[tuple[Optional[int], str]]:
    """A job of `world_size` plain processes (torchrun's environment, no agent): each one's exit
    code (None: killed after `timeout` seconds) and output."""
    import time

    processes = start_ranks(scenario, out, world_size=world_size, arguments=arguments)
    deadline, finished = time.monotonic() + timeout, []
    for process in processes:
        try:
            output, _ = process.communicate(timeout=max(deadline - time.monotonic(), 0.1))
            finished.append((process.returncode, output))
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
            finished.append((None, output))
    return finished


def read_rank(out: Path, rank: int, suffix: str = "") -> dict:
    """What rank `rank` of a job reported (its JSON file)."""
    path = out / f"rank{rank}{suffix}.json"
    assert path.exists(), f"rank {rank} wrote no report {path.name}"
    return json.loads(path.read_text())


def job_failure(result: subprocess.CompletedProcess) -> str:
    """The end of a job's output, for an assertion message."""
    return f"exit {result.returncode}\n{(result.stdout + result.stderr)[-3000:]}"
