"""Reading pickles that may hold only numpy arrays: no global outside numpy's array reconstruction
can be named, so a file cannot run code; and no pickle can make us allocate more than it holds.

The file is read whole (its size checked against :class:`advcli.data.limits.DataLimits` first) and
its opcodes are scanned before anything is built: a length that claims more bytes than the file
has left is refused there. The array constructors a pickle may name are given only sizes the file
itself could hold.
"""

from __future__ import annotations

import io
import math
import pathlib
import pickle
import pickletools
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np

from ...errors import DataError
from ..limits import DataLimits


def _latin1_bytes(text: str, encoding: str = "utf-8") -> bytes:
    """Stand-in for ``_codecs.encode`` in pickles: only the latin-1 str->bytes step protocol 2 uses."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode is only allowed for latin1 text, got {encoding!r}")
    return text.encode("latin1")


def _check_size(shape: Any, budget: int) -> None:
    """An array of `shape` has at most `budget` elements: one filled from the file has no more
    elements than the file has bytes."""
    dims = (shape,) if isinstance(shape, int) else tuple(shape) if isinstance(shape, (tuple, list)) else None
    if dims is None or not all(isinstance(d, int) and d >= 0 for d in dims) or math.prod(dims) > budget:
        raise pickle.UnpicklingError(f"an array of shape {shape!r} is more than the file could hold")


def _numpy_reconstructors(budget: int) -> dict[tuple[str, str], Any]:
    """The only globals a CIFAR batch pickle may name: numpy's array/dtype reconstruction, for arrays
    of at most `budget` elements."""
    try:
        from numpy._core.multiarray import _reconstruct
        from numpy._core.numeric import _frombuffer
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
        from numpy.core.numeric import _frombuffer  # type: ignore[no-redef]

    class BoundedArray(np.ndarray):
        """What the name numpy.ndarray stands for: the type _reconstruct builds (as a plain ndarray),
        or, called directly, an array no larger than the file."""

        def __new__(cls, shape: Any, *args: Any, **kwargs: Any) -> np.ndarray:
            _check_size(shape, budget)
            return np.ndarray(shape, *args, **kwargs)

    def reconstruct(subtype: Any, shape: Any, dtype: Any) -> Any:
        _check_size(shape, budget)
        return _reconstruct(np.ndarray if subtype is BoundedArray else subtype, shape, dtype)

    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): BoundedArray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_bytes,  # how Python 3 writes bytes in protocol-2 pickles
    }
    for mod in ("numpy.core", "numpy._core"):
        allowed[(f"{mod}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{mod}.numeric", "_frombuffer")] = _frombuffer  # protocol-5 array pickles (sized by their buffer)
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy array-reconstruction globals, so a file cannot run code."""

    def __init__(self, file: io.BufferedIOBase, *, source: str, budget: int) -> None:
        super().__init__(file, encoding="bytes")
        self._source = source
        self._allowed = _numpy_reconstructors(budget)

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise DataError(f"{self._source}: refusing to unpickle disallowed global "
                            f"{module}.{name} (only numpy arrays are allowed)") from None

    def persistent_load(self, pid: Any) -> Any:
        raise DataError(f"{self._source}: refusing to unpickle persistent id (only numpy arrays are allowed)")


_INVALID = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            struct.error, OverflowError, UnicodeDecodeError)


def unpickle(path: pathlib.Path, limits: DataLimits) -> Any:
    """Load a CIFAR pickle through the restricted unpickler, after checking its size and its opcodes."""
    source = f"cifar10: {path}"
    try:
        limits.check_file_bytes(source, path.stat().st_size)
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{source}: cannot read: {exc.strerror or exc}") from exc
    try:
        for _ in pickletools.genops(io.BytesIO(data)):  # every length checked against what is left
            pass
        return _RestrictedUnpickler(io.BytesIO(data), source=source, budget=len(data)).load()
    except _INVALID as exc:
        raise DataError(f"{source}: not a valid CIFAR-10 pickle: {type(exc).__name__}: "
                        f"{' '.join(str(exc).split())[:200]}") from None
    except MemoryError:
        raise DataError(f"{source}: not a valid CIFAR-10 pickle: it asks for more memory than there is") from None


def get_key(d: Mapping[Any, Any], key: str) -> Any:
    """d[key] for bytes keys (the original Python-2 pickles) or str keys (re-pickled files)."""
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    raise KeyError(key)

