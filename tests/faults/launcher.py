"""Runs a command as the child of this small process and reports its exit status and peak RSS.

Linux carries the high-water RSS of the memory a process had before ``execve`` into the figure
``wait4`` reports, so a command spawned straight from a large process (pytest with torch loaded)
appears to peak at that process's size. Spawned from here, it starts from this launcher's few MiB.

Usage: ``python launcher.py REPORT COMMAND...``; writes the child's pid to REPORT.pid at once and
``{"code", "signal", "peak_rss"}`` to REPORT when the child ends.
"""

import json
import os
import signal
import sys


def main() -> None:
    report, command = sys.argv[1], sys.argv[2:]
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # signals are for the child; it restores its own
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.execvp(command[0], command)
    with open(report + ".pid", "w") as handle:
        handle.write(str(pid))
    _, status, usage = os.wait4(pid, 0)
    with open(report, "w") as handle:
        json.dump({"code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                   "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                   "peak_rss": usage.ru_maxrss * 1024}, handle)


if __name__ == "__main__":
    main()
