"""Atomic writes: the one place where advcli writes through a temporary file and a rename.

A result is either complete at its path or absent: a failure, an interrupt or a full disk leaves
the earlier content (or nothing) there, never half a file. What is written gets the permissions a
new file or folder would get under the process's umask (temporary files are created private).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


@contextmanager
def atomic_path(path: Path | str, *, suffix: str = "") -> Iterator[Path]:
    """A temporary file beside `path` for the block to write; renamed onto `path` (replacing it) when
    the block succeeds, removed when it fails. `suffix` is for writers that want an extension."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    os.close(fd)
    temporary = Path(name)
    try:
        yield temporary
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_bytes_atomic(path: Path | str, data: bytes) -> None:
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


def write_json_atomic(path: Path | str, payload: Any) -> None:
    """`payload` as indented JSON (one trailing newline)."""
    write_bytes_atomic(path, (json.dumps(payload, indent=2) + "\n").encode())


STAGING_MARK = ".partial-"


@contextmanager
def atomic_folder(path: Path | str) -> Iterator[Path]:
    """A hidden staging folder beside `path` for the block to fill; renamed to `path` when the block
    succeeds (never replacing anything already there), removed when it fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}{STAGING_MARK}", dir=path.parent))
    try:
        yield staging
        os.chmod(staging, 0o777 & ~_umask())
        if path.exists():
            raise FileExistsError(f"{path} appeared while it was being written")
        os.rename(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
