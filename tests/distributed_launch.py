"""Starting the jobs of tests/distributed_worker.py on 127.0.0.1: with torchrun, or as plain processes
given torchrun's environment variables (no elastic agent, so nothing ends a rank but the rank)."""

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


def torchrun_command(scenario: str, out: Path, *launcher: str, worker_arguments: tuple[str, ...] = ()) -> list[str]:
    """`python -m torch.distributed.run LAUNCHER... distributed_worker.py SCENARIO OUT ARGUMENTS...`."""
    return [sys.executable, "-m", "torch.distributed.run", "--monitor-interval", "0.2", *launcher,
            str(WORKER), scenario, str(out), *worker_arguments]


def run_torchrun(scenario: str, out: Path, *, processes: int = 2, timeout: float = 60, extra: tuple[str, ...] = (),
                 worker_arguments: tuple[str, ...] = (), environment: Optional[dict[str, str]] = None,
                 ) -> subprocess.CompletedProcess:
    """One single-node torchrun job of `processes` workers (torchrun options `extra`)."""
    command = torchrun_command(scenario, out, "--standalone", "--nproc-per-node", str(processes), *extra,
                               worker_arguments=worker_arguments)
    return subprocess.run(command, env=environment or job_environment(), capture_output=True, text=True,
                          timeout=timeout)


def start_ranks(
    scenario: str, out: Path, *, world_size: int = 2, arguments: tuple[str, ...] = ()
) -> list[subprocess.Popen]:
    """`world_size` worker processes given torchrun's environment by hand (MASTER on 127.0.0.1)."""
    port = str(free_port())
    processes = []
    for rank in range(world_size):
        environment = job_environment({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size),
                                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port})
        command = [sys.executable, str(WORKER), scenario, str(out), *arguments]
        processes.append(subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                          text=True))
    return processes


def read_rank(out: Path, rank: int, suffix: str = "") -> dict:
    """What rank `rank` of a job reported (its JSON file)."""
    path = out / f"rank{rank}{suffix}.json"
    assert path.exists(), f"rank {rank} wrote no report {path.name}"
    return json.loads(path.read_text())


def job_failure(result: subprocess.CompletedProcess) -> str:
    """The end of a job's output, for an assertion message."""
    return f"exit {result.returncode}\n{(result.stdout + result.stderr)[-3000:]}"
