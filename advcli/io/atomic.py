"""Atomic writes: the one place where advcli writes through a temporary file and a rename.

A result is either complete at its path or absent: a failure, an interrupt or a full disk leaves
the earlier content (or nothing) there, never half a file. What is written gets the permissions a
new file or folder would get under the process's umask (temporary files are created private).

Temporary files and staging folders are named after the machine and the process writing them
(``.NAME.partial-HOST-PID-XXXX``), so that a later save can tell one left behind by a writer that
was killed (SIGKILL, power loss) from one still being written, and remove it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from ..errors import OutputError

STAGING_MARK = ".partial-"
TEMPORARY_MARK = ".writing-"
_LEFTOVER = re.compile(r"^\..*?(?:\.partial-|\.writing-)([0-9a-f]{8})-([0-9]+)-")


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


def apply_umask(path: Path | str) -> None:
    """Give `path` the permissions a new file (or folder) gets under the umask (mkstemp and mkdtemp
    create them private)."""
    os.chmod(path, (0o777 if Path(path).is_dir() else 0o666) & ~_umask())


def _host() -> str:
    """This machine (and PID namespace: a container's process ids are its own), as 8 hex digits."""
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        namespace = 0
    return hashlib.sha256(f"{socket.gethostname()}:{namespace}".encode()).hexdigest()[:8]


def _writer_tag() -> str:
    """This machine and process, as the names of temporary files and staging folders carry them."""
    return f"{_host()}-{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def remove_leftovers(folder: Path | str) -> list[Path]:
    """Remove the temporary files and staging folders in `folder` whose writer, an advcli process on
    this machine, is gone; returns what was removed."""
    folder = Path(folder)
    removed: list[Path] = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    host = _host()
    for entry in entries:
        match = _LEFTOVER.match(entry.name)
        if match is None or match.group(1) != host or int(match.group(2)) == os.getpid() or _alive(int(match.group(2))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def _write_failure(path: Path, error: OSError) -> OutputError:
    reason = error.strerror or " ".join(str(error).split())
    return OutputError(f"cannot write {path}: {reason}; nothing was written there")


def _appeared(path: Path) -> OutputError:
    return OutputError(f"{path} already exists: it appeared while this was being written (another process?); "
                       "nothing was written there", param="out")


@contextmanager
def atomic_path(path: Path | str, *, suffix: str = "") -> Iterator[Path]:
    """A temporary file beside `path` for the block to write; renamed onto `path` (replacing it) when
    the block succeeds, removed when it fails. `suffix` is for writers that want an extension.
    A failure to write (a full disk) is an :class:`OutputError` naming `path`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_leftovers(path.parent)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}{TEMPORARY_MARK}{_writer_tag()}-", suffix=suffix + ".tmp",
                                    dir=path.parent)
        os.close(fd)
    except OSError as error:
        raise _write_failure(path, error) from None
    temporary = Path(name)
    try:
        yield temporary
        apply_umask(temporary)
        os.replace(temporary, path)
    except OSError as error:
        raise _write_failure(path, error) from None
    finally:
        temporary.unlink(missing_ok=True)


def write_bytes_atomic(path: Path | str, data: bytes) -> None:
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


def write_json_atomic(path: Path | str, payload: Any) -> None:
    """`payload` as indented JSON (one trailing newline)."""
    write_bytes_atomic(path, (json.dumps(payload, indent=2) + "\n").encode())


@contextmanager
def atomic_folder(path: Path | str) -> Iterator[Path]:
    """A hidden staging folder beside `path` for the block to fill; renamed to `path` when the block
    succeeds (never replacing anything already there), removed when it fails. Everything in it gets
    the umask's permissions. Staging folders that killed writers left beside it are removed first.
    A failure to write is an :class:`OutputError`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_leftovers(path.parent)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}{STAGING_MARK}{_writer_tag()}-", dir=path.parent))
    except OSError as error:
        raise _write_failure(path, error) from None
    try:
        yield staging
        for entry in [staging, *staging.rglob("*")]:  # whatever wrote them (safetensors writes 0600)
            if not entry.is_symlink():
                apply_umask(entry)
        if path.exists():
            raise _appeared(path)
        os.rename(staging, path)
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(error, OSError):
            raise (_appeared(path) if path.exists() else _write_failure(path, error)) from None
        raise
