"""Data formats: one file per format, each registering a :class:`Format` under its file's name.

To add a format, add ``advcli/data/formats/<name>.py`` that builds its :class:`advcli.data.Dataset`
(through :func:`advcli.data.make_dataset`) and calls ``FORMATS.register("<name>", Format(...))``.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Protocol

from ...errors import DataError
from ...registry import Registry

if TYPE_CHECKING:
    from ..dataset import Dataset
    from ..limits import DataLimits


class Loader(Protocol):
    """A format loader: takes the PATH part of the spec (None when absent), a cache folder, and the
    limits its files' declared sizes are checked against before anything large is allocated
    (:mod:`advcli.data.limits`)."""

    def __call__(self, path: str | None, *, cache_dir: pathlib.Path | None = None,
                 limits: "DataLimits | None" = None) -> "Dataset": ...


@dataclass(frozen=True)
class Format:
    """A data format: its loader, and what the PATH part of its spec names (``DIR``, ``FILE``, or
    None when it takes no path)."""

    load: Loader
    path_kind: Optional[str] = None


FORMATS: Registry[Format] = Registry("data format", param="data", package=__name__, error=DataError,
                                     order=("digits", "mnist", "fashion-mnist", "cifar10", "npz", "folder"))
