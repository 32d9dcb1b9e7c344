"""A fork server for the fault suite: imports advcli once, then runs each requested command line in
a forked child exactly as ``python -m advcli`` would (same entry point, fresh signal dispositions,
its own stdin and stdout/stderr pipes), under optional RLIMIT_AS / RLIMIT_FSIZE limits, with signals
sent when the child's stderr shows a text or a path appears. Saves the 3 s import per case.

advcli, matplotlib (every run folder's loss plot) and torch._dynamo (which torch imports when the
first optimizer is built) are imported once before forking, so each child pays only for its work.

Protocol (JSON lines on stdin/stdout): first it prints ``{"ready": true, "baseline_gap": N}``; then
for each line ``{"jobs": [JOB, ...]}`` it runs the jobs concurrently and prints one list of results.

Peak memory: wait4 gives each child's own ru_maxrss. A forked child starts with its parent's
anonymous pages resident but maps file-backed pages lazily, and it never went through the import's
transient peak, so it reads lower than a fresh process would; ``baseline_gap`` (this server's peak
RSS minus a do-nothing child's) is added to every figure, so the reported peak errs high.
"""

from __future__ import annotations

import glob
import json
import os
import resource
import signal
import sys
import time
import traceback
from typing import Any, Callable

POLL_SECONDS = 0.002


def _own_peak_rss() -> int:
    """This process's own high-water RSS (VmHWM): unlike getrusage's ru_maxrss it is not carried
    over from the process that started it (pytest, whose size depends on the tests run before)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _baseline_gap() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    _, _, usage = os.wait4(pid, 0)
    return max(0, _own_peak_rss() - usage.ru_maxrss * 1024)


def _redirect(fd: int, target: int) -> None:
    os.dup2(target, fd)
    os.close(target)


def _exit_code(error: SystemExit) -> int:
    if error.code is None:
        return 0
    if isinstance(error.code, int):
        return error.code
    print(error.code, file=sys.stderr)
    return 1


def _child(job: dict[str, Any], out_fd: int, err_fd: int) -> None:
    """In the forked child: set up as a fresh ``python -m advcli`` process would be, run, exit.

    stdout and stderr are pipes, not files, so that RLIMIT_FSIZE applies to what the command
    writes and not to its messages."""
    _redirect(0, os.open(os.devnull, os.O_RDONLY))
    _redirect(1, out_fd)
    _redirect(2, err_fd)
    sys.stdin = open(0, closefd=False)
    sys.stdout = open(1, "w", closefd=False)
    sys.stderr = open(2, "w", closefd=False, buffering=1)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.chdir(job["cwd"])
    os.environ.update(job.get("env") or {})
    if job.get("umask") is not None:
        os.umask(job["umask"])
    if job.get("memory_limit"):
        resource.setrlimit(resource.RLIMIT_AS, (job["memory_limit"], job["memory_limit"]))
    if job.get("file_size_limit"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit then fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (job["file_size_limit"], job["file_size_limit"]))
    sys.argv = ["advcli", *job["argv"]]
    code = 0
    try:
        from advcli.cli import run

        run()
    except SystemExit as error:
        code = _exit_code(error)
    except KeyboardInterrupt:
        traceback.print_exc()
        sys.stderr.flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # as Python does: die by the signal
        os.kill(os.getpid(), signal.SIGINT)
    except BaseException:  # noqa: BLE001 - reproduce the interpreter's handling of anything uncaught
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class Watch:
    """Sends a job's signals in order, each once its trigger holds: text on stderr, a path, a delay."""

    def __init__(self, pid: int, stderr: Callable[[], str], signals: list[dict[str, Any]]) -> None:
        self.pid, self.stderr, self.pending = pid, stderr, list(signals)
        self.since = time.monotonic()
        self.sent = 0

    def _ready(self, trigger: dict[str, Any]) -> bool:
        if time.monotonic() - self.since < trigger.get("after", 0.0):
            return False
        if trigger.get("stderr_contains") is not None and trigger["stderr_contains"] not in self.stderr():
            return False
        if trigger.get("path_glob") is not None and not glob.glob(trigger["path_glob"]):
            return False
        return True

    def poll(self) -> None:
        while self.pending and self._ready(self.pending[0]):
            os.kill(self.pid, self.pending.pop(0)["signal"])
            self.sent += 1
            self.since = time.monotonic()


class _Pipe:
    """The read end of a child's output pipe, drained without blocking."""

    def __init__(self, fd: int) -> None:
        self.fd, self.data, self.open = fd, bytearray(), True
        os.set_blocking(fd, False)

    def drain(self) -> None:
        while self.open:
            try:
                chunk = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return
            if not chunk:
                self.open = False
                os.close(self.fd)
                return
            self.data += chunk

    def text(self) -> str:
        return self.data.decode(errors="replace")


def _fork(job: dict[str, Any]) -> tuple[int, _Pipe, _Pipe]:
    (out_r, out_w), (err_r, err_w) = os.pipe(), os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(out_r)
            os.close(err_r)
            _child(job, out_w, err_w)
        finally:
            os._exit(99)
    os.close(out_w)
    os.close(err_w)
    return pid, _Pipe(out_r), _Pipe(err_r)


def run_jobs(jobs: list[dict[str, Any]], gap: int) -> list[dict[str, Any]]:
    """Fork every job, watch them all, reap them; one result per job, in order."""
    running = []
    for job in jobs:
        pid, out, err = _fork(job)
        running.append({"pid": pid, "job": job, "out": out, "err": err, "started": time.monotonic(),
                        "watch": Watch(pid, err.text, job.get("signals") or []), "result": None})
    while any(entry["result"] is None for entry in running):
        for entry in running:
            if entry["result"] is not None:
                continue
            entry["out"].drain()
            entry["err"].drain()
            pid, status, usage = os.wait4(entry["pid"], os.WNOHANG)
            if pid == 0:
                entry["watch"].poll()
                if time.monotonic() - entry["started"] > entry["job"].get("timeout", 60):
                    entry["timed_out"] = True
                    os.kill(entry["pid"], signal.SIGKILL)
                continue
            while entry["out"].open or entry["err"].open:
                entry["out"].drain()
                entry["err"].drain()
                time.sleep(POLL_SECONDS)
            entry["result"] = {
                "code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                "peak_rss": usage.ru_maxrss * 1024 + gap,
                "seconds": round(time.monotonic() - entry["started"], 3),
                "signals_sent": entry["watch"].sent, "timed_out": entry.get("timed_out", False),
                "stdout": entry["out"].text(), "stderr": entry["err"].text(),
            }
        time.sleep(POLL_SECONDS)
    return [entry["result"] for entry in running]


def main() -> None:
    import torch

    torch.set_num_threads(1)
    import matplotlib  # what every save imports (about 1 s), as advcli.plots does it

    import advcli.cli  # noqa: F401 - imported once, before any fork

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot  # noqa: F401

    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)  # an optimizer's first use imports torch._dynamo (seconds)

    gap = _baseline_gap()
    print(json.dumps({"ready": True, "baseline_gap": gap}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        print(json.dumps(run_jobs(request["jobs"], gap)), flush=True)


if __name__ == "__main__":
    main()
