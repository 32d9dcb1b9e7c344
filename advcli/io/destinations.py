"""Where results go, checked before any work starts.

A destination that cannot work (under a file, in a folder that is read-only or not ours to write,
a folder where a file is wanted) is refused at once, in one line, instead of failing after minutes
of training or attacking. An existing file is never replaced unless the caller allows it (the
command line's ``--force``), and a file inside a run folder never is: a run's files (its
``model.json``, weights, plots, attacks) are only ever written by the save that creates the run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from ..errors import OutputError
from .layout import META_FILE


def enclosing_run(path: Path) -> Optional[Path]:
    """The run folder (a folder holding model.json) that `path` lies in, at any depth, or None."""
    for folder in Path(os.path.abspath(path)).parents:
        if (folder / META_FILE).is_file():
            return folder
    return None


def _nearest_existing(path: Path) -> Path:
    folder = Path(os.path.abspath(path)).parent
    while not os.path.lexists(folder) and folder != folder.parent:
        folder = folder.parent
    return folder


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


def check_destination(path: Path | str, *, param: str, folder: bool = False, force: Optional[bool] = None) -> Path:
    """Refuse `path` as a destination (named `param` in messages) unless it can be written: the
    nearest existing folder above it is a folder this process may write in, and `path` itself does
    not exist, or is a file `force` allows replacing (never one inside a run folder). `folder`: the
    destination is a folder to create (a run). `force` None: replacing is not offered at all."""
    path = Path(path)
    if os.path.lexists(path):
        if folder or force is None:
            raise OutputError(f"{path} already exists; choose another `{param}` (earlier results are never "
                              "overwritten)", param=param)
        if path.is_dir() or not path.is_file():
            raise OutputError(f"`{param}` {path} is {'a folder' if path.is_dir() else 'not a plain file'}; "
                              "give a file name", param=param)
        run = enclosing_run(path)
        if run is not None:
            raise OutputError(f"{path} already exists and belongs to the run {run}; a run's files are never "
                              f"replaced, even with `force`; choose another `{param}`", param=param)
        if not force:
            raise OutputError(f"{path} already exists; choose another `{param}`, or pass `force` to replace it",
                              param=param)
    above = _nearest_existing(path)
    if not above.is_dir():
        raise OutputError(f"`{param}` {path} cannot be created: {above} is not a folder", param=param)
    if _read_only(above):
        raise OutputError(f"`{param}` {path} cannot be created: {above} is on a read-only file system", param=param)
    if not os.access(above, os.W_OK | os.X_OK):
        raise OutputError(f"`{param}` {path} cannot be created: no permission to write in {above}", param=param)
    return path
