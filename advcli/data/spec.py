"""Data specs ``FORMAT[:PATH]`` (``digits``, ``mnist:~/data/mnist``, ``npz:my.npz``) and loading them."""

from __future__ import annotations

import os
import pathlib
from typing import TYPE_CHECKING

from ..errors import DataError
from .formats import FORMATS
from .limits import DataLimits, format_bytes, resolve_limits

if TYPE_CHECKING:
    from .dataset import Dataset

DEFAULT_DATA = "digits"


def parse_data_spec(spec: str) -> tuple[str, str | None]:
    """Split ``FORMAT[:PATH]`` into (format, path); the format is lower-cased, an empty path is None."""
    if not isinstance(spec, str) or not spec.strip():
        raise DataError(f"empty data spec; use one of: {', '.join(known_specs())}", param="data")
    name, sep, path = spec.strip().partition(":")
    name = name.strip().lower()
    return name, (path if sep and path else None)


def known_specs() -> list[str]:
    """Every format as it is written in a spec, e.g. ``mnist:DIR``."""
    return [f"{name}:{entry.path_kind}" if entry.path_kind else name for name, entry in FORMATS.items()]


def need_path(name: str, path: str | None, kind: str) -> pathlib.Path:
    """The PATH part of the spec as a Path, or a DataError saying how to give it."""
    if path is None:
        article = "an" if kind[0] in "aeiou" else "a"
        raise DataError(f"{name} needs {article} {kind}: use {name}:{FORMATS.get(name).path_kind}", param="data")
    return pathlib.Path(path).expanduser()


def need_dir(name: str, path: str | None) -> pathlib.Path:
    folder = need_path(name, path, "folder")
    if not folder.exists():
        raise DataError(f"{name}: {folder}: no such folder", param="data")
    if not folder.is_dir():
        raise DataError(f"{name}: {folder}: not a folder", param="data")
    return folder


def default_cache_dir() -> pathlib.Path:
    """$ADVCLI_CACHE_DIR, else $XDG_CACHE_HOME/advcli, else ~/.cache/advcli."""
    if os.environ.get("ADVCLI_CACHE_DIR"):
        return pathlib.Path(os.environ["ADVCLI_CACHE_DIR"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return pathlib.Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "advcli"
    return pathlib.Path.home() / ".cache" / "advcli"


def load_dataset(spec: str = DEFAULT_DATA, *, cache_dir: pathlib.Path | None = None,
                 limits: DataLimits | None = None) -> "Dataset":
    """Load the dataset named by `spec`; `cache_dir` is where generated or downloaded data is kept,
    `limits` what its files may make us allocate (default: :meth:`DataLimits.current`)."""
    name, path = parse_data_spec(spec)
    if name not in FORMATS:
        raise DataError(f"unknown data format {name!r} in {spec!r}; known formats: {', '.join(known_specs())}",
                        param="data")
    limits = resolve_limits(limits)
    try:
        return FORMATS.get(name).load(path, cache_dir=cache_dir, limits=limits)
    except MemoryError:
        raise DataError(f"{spec}: not enough memory to load it (the limit is {format_bytes(limits.max_bytes)} as "
                        "float32; the machine has less free)", param="data") from None
