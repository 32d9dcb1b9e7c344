"""The command-line contract the fault suite holds every case to, and how a case is observed.

advcli promises (README, exit codes): a bad input gets a one-line message on stderr and exit 2,
with no traceback; exit 1 means a ``--min-*`` threshold was missed and nothing else; 130 means
interrupted; earlier results are never destroyed. Here those promises are made precise:

* *refused*: the exit code is the one expected, no exception escaped the command, stderr
  stripped of surrounding whitespace is exactly one line, that line starts with ``error:`` and
  contains no ``Traceback``. Used whenever the problem can be known before any work is done,
  so nothing else (progress bars, epoch lines) may have been printed.
* *failed after work*: the same, except that lines printed by the work before the failure
  (progress, epoch summaries) are allowed; the last line is the one ``error:`` line. Used only
  where the failure cannot be known in advance (a disk filling up, a signal).
* *unchanged*: :func:`tree_digest` of the folders a case must not touch is the same before and
  after (every path, its kind, its permission bits and the sha256 of its bytes).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

import pytest
from typer.testing import CliRunner

TRACEBACK = "Traceback (most recent call last)"


@dataclass
class Outcome:
    """What one run of the command did, however it was run (CliRunner or a child process)."""

    code: Optional[int]           # exit status; None when a signal ended the process
    stdout: str
    stderr: str
    exception: Optional[str] = None   # an exception that escaped the command (CliRunner), as "Type: message"
    signal: Optional[int] = None      # the signal that ended the process, if one did
    peak_rss: Optional[int] = None    # bytes, for child processes (see faults.processes)
    seconds: Optional[float] = None   # wall time, for child processes
    signals_sent: int = 0
    timed_out: bool = False

    def describe(self) -> str:
        """A compact account for assertion messages."""
        return (f"code={self.code} signal={self.signal} exception={self.exception}\n"
                f"--- stderr ---\n{self.stderr[-2000:]}\n--- stdout ---\n{self.stdout[-1000:]}")


def known_failure(reason: str) -> pytest.MarkDecorator:
    """Marks a case the current code fails (a finding); strict, so a fix makes it flip to a pass."""
    return pytest.mark.xfail(strict=True, reason=reason)


def case(*values: Any, id: str, broken: Optional[str] = None) -> Any:
    """One parametrised case, marked as a known failure when `broken` says why."""
    return pytest.param(*values, id=id, marks=[known_failure(broken)] if broken else [])


_runner = CliRunner()


def invoke(*args: Any, env: Optional[dict[str, str]] = None) -> Outcome:
    """Run ``advcli ARGS`` in this process through Typer's CliRunner, as a user's shell would."""
    from advcli.cli import app

    result = _runner.invoke(app, [str(arg) for arg in args], env=env)
    escaped = result.exception
    if isinstance(escaped, SystemExit):
        escaped = None
    return Outcome(code=result.exit_code, stdout=result.stdout, stderr=result.stderr,
                   exception=None if escaped is None else f"{type(escaped).__name__}: {escaped}")


def error_lines(outcome: Outcome) -> list[str]:
    return [line for line in outcome.stderr.splitlines() if line.startswith("error:")]


def assert_refused(outcome: Outcome, code: int = 2, *, mentions: Iterable[str] = ()) -> str:
    """The case was refused before any work: one ``error:`` line on stderr and nothing else."""
    assert outcome.exception is None, outcome.describe()
    assert TRACEBACK not in outcome.stderr, outcome.describe()
    assert outcome.code == code, outcome.describe()
    lines = outcome.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), outcome.describe()
    for text in mentions:
        assert text in lines[0], f"{text!r} not in the message\n{outcome.describe()}"
    return lines[0]


def assert_failed_after_work(outcome: Outcome, code: int = 2, *, mentions: Iterable[str] = ()) -> str:
    """The case failed once work had begun: progress lines may precede the one final ``error:`` line."""
    assert outcome.exception is None, outcome.describe()
    assert TRACEBACK not in outcome.stderr, outcome.describe()
    assert outcome.code == code, outcome.describe()
    lines = outcome.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error:") and len(error_lines(outcome)) == 1, outcome.describe()
    for text in mentions:
        assert text in lines[-1], f"{text!r} not in the message\n{outcome.describe()}"
    return lines[-1]


def assert_succeeded(outcome: Outcome) -> None:
    assert outcome.exception is None and outcome.code == 0, outcome.describe()
    assert TRACEBACK not in outcome.stderr, outcome.describe()


def strict_json(text: str) -> Any:
    """Parse JSON as other tools will: NaN and Infinity are not JSON and are refused."""
    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not valid JSON")

    return json.loads(text, parse_constant=refuse)


def control_characters(text: str) -> set[str]:
    """C0/C1 control characters and DEL in `text`, other than newline and tab."""
    return {ch for ch in text if (ord(ch) < 32 and ch not in "\n\t") or 127 <= ord(ch) < 160}


def tree_digest(*roots: Path) -> dict[str, tuple[str, int, str]]:
    """Every path under `roots` (hidden ones too): kind, permission bits, sha256 of bytes or link target."""
    digest: dict[str, tuple[str, int, str]] = {}
    for root in roots:
        root = Path(root)
        if not root.exists() and not root.is_symlink():
            digest[str(root)] = ("absent", 0, "")
            continue
        paths = [root] + sorted(root.rglob("*")) if root.is_dir() and not root.is_symlink() else [root]
        for path in paths:
            info = path.lstat()
            mode = stat.S_IMODE(info.st_mode)
            if stat.S_ISLNK(info.st_mode):
                digest[str(path)] = ("link", mode, os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                digest[str(path)] = ("dir", mode, "")
            elif stat.S_ISREG(info.st_mode):
                digest[str(path)] = ("file", mode, hashlib.sha256(path.read_bytes()).hexdigest())
            else:
                digest[str(path)] = ("other", mode, "")
    return digest


def changed_paths(before: dict[str, tuple[str, int, str]], after: dict[str, tuple[str, int, str]]) -> list[str]:
    """Paths added, removed or altered between two digests, sorted."""
    return sorted(path for path in before.keys() | after.keys() if before.get(path) != after.get(path))
