"""Running advcli in child processes: the fork server's client, a plain ``python -m advcli`` runner
for checking that the fork server behaves like the real thing, and a small tmpfs for full disks."""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import advcli

from .contract import Outcome
from .forkserver import Watch

TESTS_DIR = Path(__file__).resolve().parents[1]
PROJECT_DIR = Path(advcli.__file__).resolve().parents[1]


def child_environment() -> dict[str, str]:
    """This process's environment, importing advcli from the same tree and using one thread."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PROJECT_DIR), str(TESTS_DIR)])
    env["OMP_NUM_THREADS"] = "1"
    env.pop("COLUMNS", None)
    return env


@dataclass
class Job:
    """One command line to run in a child: ``advcli ARGV`` in `cwd`, with limits and signals."""

    argv: list[str]
    cwd: str
    signals: list[dict[str, Any]] = field(default_factory=list)  # {"signal", "stderr_contains"/"path_glob"/"after"}
    memory_limit: Optional[int] = None     # RLIMIT_AS, bytes
    file_size_limit: Optional[int] = None  # RLIMIT_FSIZE, bytes
    umask: Optional[int] = None
    env: dict[str, str] = field(default_factory=dict)
    timeout: float = 60.0

    def __post_init__(self) -> None:
        self.argv = [str(arg) for arg in self.argv]
        self.cwd = str(self.cwd)


def _outcome(result: dict[str, Any]) -> Outcome:
    return Outcome(code=result["code"], stdout=result["stdout"], stderr=result["stderr"], signal=result["signal"],
                   peak_rss=result["peak_rss"], seconds=result["seconds"], signals_sent=result["signals_sent"],
                   timed_out=result["timed_out"])


class ForkServer:
    """The client side of :mod:`faults.forkserver`."""

    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "faults.forkserver"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, cwd=TESTS_DIR, env=child_environment(), text=True)
        ready = json.loads(self.process.stdout.readline())
        self.baseline_gap = ready["baseline_gap"]

    def run(self, *jobs: Job) -> list[Outcome]:
        """Run the jobs concurrently; their outcomes in order."""
        request = {"jobs": [asdict(job) for job in jobs]}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return [_outcome(result) for result in json.loads(self.process.stdout.readline())]

    def run_one(self, job: Job) -> Outcome:
        return self.run(job)[0]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=10)


_servers: dict[str, ForkServer] = {}


def shared_fork_server() -> ForkServer:
    """One fork server per test session, stopped when the session's interpreter exits."""
    if "server" not in _servers:
        _servers["server"] = ForkServer()
        atexit.register(_servers["server"].close)
    return _servers["server"]


def run_module(job: Job) -> Outcome:
    """``python -m advcli ARGV`` as a real fresh process (slow: imports everything), signals included.

    Started through :mod:`faults.launcher`, so that its peak RSS is its own, not this process's.
    """
    with tempfile.TemporaryDirectory() as scratch:
        err_path, out_path, report = (os.path.join(scratch, name) for name in ("stderr", "stdout", "report"))
        command = [sys.executable, str(Path(__file__).with_name("launcher.py")), report,
                   sys.executable, "-m", "advcli", *job.argv]
        with open(err_path, "w") as err, open(out_path, "w") as out:
            launcher = subprocess.Popen(command, cwd=job.cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                        env={**child_environment(), **job.env})
            started = time.monotonic()
            while not os.path.exists(report + ".pid") or not open(report + ".pid").read():
                time.sleep(0.002)
            pid = int(open(report + ".pid").read())
            watch = Watch(pid, lambda: open(err_path, errors="replace").read(), job.signals)
            while launcher.poll() is None:
                watch.poll()
                if time.monotonic() - started > job.timeout:
                    os.kill(pid, signal.SIGKILL)
                time.sleep(0.002)
        result = json.loads(open(report).read())
        stdout, stderr = open(out_path).read(), open(err_path, errors="replace").read()
    return Outcome(code=result["code"], stdout=stdout, stderr=stderr, signal=result["signal"],
                   peak_rss=result["peak_rss"], seconds=round(time.monotonic() - started, 3),
                   signals_sent=watch.sent)


@contextmanager
def small_tmpfs(path: Path, size: str, *, read_only: bool = False) -> Iterator[Optional[Path]]:
    """A tmpfs of `size` mounted at `path` (root only); yields None when mounting is not allowed here."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size},mode=0777" + (",ro" if read_only else "")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                             capture_output=True).returncode == 0
    try:
        yield path if mounted else None
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)
