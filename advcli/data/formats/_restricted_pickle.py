"""Reading pickles that may hold only numpy arrays: no global outside numpy's array reconstruction
can be named, so a file cannot run code."""

from __future__ import annotations

import io
import pathlib
import pickle
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np

from ...errors import DataError


def _latin1_bytes(text: str, encoding: str = "utf-8") -> bytes:
    """Stand-in for ``_codecs.encode`` in pickles: only the latin-1 str->bytes step protocol 2 uses."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode is only allowed for latin1 text, got {encoding!r}")
    return text.encode("latin1")


def _numpy_reconstructors() -> dict[tuple[str, str], Any]:
    """The only globals a CIFAR batch pickle may name: numpy's array/dtype reconstruction."""
    try:
        from numpy._core.multiarray import _reconstruct
        from numpy._core.numeric import _frombuffer
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
        from numpy.core.numeric import _frombuffer  # type: ignore[no-redef]
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_bytes,  # how Python 3 writes bytes in protocol-2 pickles
    }
    for mod in ("numpy.core", "numpy._core"):
        allowed[(f"{mod}.multiarray", "_reconstruct")] = _reconstruct
        allowed[(f"{mod}.numeric", "_frombuffer")] = _frombuffer  # protocol-5 array pickles
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy array-reconstruction globals, so a file cannot run code."""

    def __init__(self, file: io.BufferedIOBase, *, source: str) -> None:
        super().__init__(file, encoding="bytes")
        self._source = source
        self._allowed = _numpy_reconstructors()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise DataError(f"{self._source}: refusing to unpickle disallowed global "
                            f"{module}.{name} (only numpy arrays are allowed)") from None

    def persistent_load(self, pid: Any) -> Any:
        raise DataError(f"{self._source}: refusing to unpickle persistent id (only numpy arrays are allowed)")


def unpickle(path: pathlib.Path) -> Any:
    """Load a CIFAR pickle through the restricted unpickler."""
    source = f"cifar10: {path}"
    try:
        with path.open("rb") as f:
            return _RestrictedUnpickler(f, source=source).load()
    except OSError as exc:
        raise DataError(f"{source}: cannot read: {exc.strerror or exc}") from exc
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, struct.error, OverflowError, UnicodeDecodeError) as exc:
        raise DataError(f"{source}: not a valid CIFAR-10 pickle: {type(exc).__name__}: {exc}") from exc


def get_key(d: Mapping[Any, Any], key: str) -> Any:
    """d[key] for bytes keys (the original Python-2 pickles) or str keys (re-pickled files)."""
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    raise KeyError(key)

