"""IDX files (the MNIST layout: four files, plain or .gz), shared by ``mnist`` and ``fashion-mnist``.

Headers are read first and checked against the file (or, for gzip, against the stream as it is
inflated) and against :class:`advcli.data.limits.DataLimits`; the data are then read in bounded
chunks into arrays sized once, so neither a header nor a gzip stream can claim more memory than
the limits allow.
"""

from __future__ import annotations

import gzip
import math
import pathlib
import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Optional

import numpy as np

from ...errors import DataError
from ..dataset import Dataset, make_dataset
from ..limits import DataLimits, resolve_limits
from ..spec import need_dir
from . import Loader

_IDX_IMAGES_MAGIC = 0x00000803
_IDX_LABELS_MAGIC = 0x00000801
_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_CHUNK = 1 << 20
_GZIP_ERRORS = (OSError, EOFError, zlib.error, gzip.BadGzipFile)


def _find_idx(name: str, folder: pathlib.Path, base: str) -> pathlib.Path:
    """The plain or .gz file for ``base`` in folder."""
    for candidate in (folder / base, folder / f"{base}.gz"):
        if candidate.is_file():
            return candidate
    raise DataError(f"{name}: {folder}: missing {base} (or {base}.gz)")


@dataclass
class _IdxFile:
    """One IDX file opened for reading: its stream (inflating when gzipped) and its header's dims."""

    name: str
    path: pathlib.Path
    stream: BinaryIO
    dims: tuple[int, ...]
    compressed: bool

    @property
    def size(self) -> int:
        return math.prod(self.dims)

    def _fail(self, problem: str) -> DataError:
        return DataError(f"{self.name}: {self.path}: {problem}")

    def _read(self, count: int) -> bytes:
        try:
            return self.stream.read(count)
        except _GZIP_ERRORS as exc:
            raise self._fail(f"corrupt gzip data: {exc}") from None

    def read_data(self) -> np.ndarray:
        """The data the header announces, read in chunks into one array; exactly that much must follow."""
        data = np.empty(self.size, dtype=np.uint8)
        done = 0
        while done < self.size:
            chunk = self._read(min(_CHUNK, self.size - done))
            if not chunk:
                break
            data[done:done + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
            done += len(chunk)
        shape = "x".join(map(str, self.dims))
        if done < self.size:
            raise self._fail(f"truncated: header says {shape} = {self.size} bytes of data, file holds {done}")
        if self._read(1):
            raise self._fail(f"has trailing bytes: header says {shape} = {self.size} bytes of data, "
                             "and more follow")
        return data.reshape(self.dims)

    def close(self) -> None:
        self.stream.close()


def _open_idx(name: str, path: pathlib.Path, magic: int, what: str) -> _IdxFile:
    """Open `path` and read its header, which must carry `magic`; plain files are checked against their size."""
    try:
        handle: BinaryIO = open(path, "rb")
    except OSError as exc:
        raise DataError(f"{name}: {path}: cannot read: {exc.strerror or exc}") from exc
    compressed = handle.read(2) == b"\x1f\x8b"
    handle.seek(0)
    if compressed:
        handle = gzip.GzipFile(fileobj=handle, mode="rb")  # type: ignore[assignment]
    elif path.suffix == ".gz":
        handle.close()
        raise DataError(f"{name}: {path}: named .gz but not gzip-compressed")
    idx = _IdxFile(name, path, handle, (), compressed)
    try:
        head = idx._read(4)
        if len(head) < 4:
            raise idx._fail(f"truncated: {len(head)} bytes, too short for an IDX header")
        found = int.from_bytes(head, "big")
        if found != magic:
            raise idx._fail(f"bad magic number 0x{found:08x}, expected 0x{magic:08x} ({what})")
        ndim = head[3]
        dims_bytes = idx._read(4 * ndim)
        if len(dims_bytes) < 4 * ndim:
            raise idx._fail(f"truncated IDX header ({4 + len(dims_bytes)} bytes, need {4 + 4 * ndim})")
        idx.dims = struct.unpack(f">{ndim}I", dims_bytes)
        if not compressed:
            held = path.stat().st_size - 4 - 4 * ndim
            if held != idx.size:
                problem = "truncated" if held < idx.size else "has trailing bytes"
                raise idx._fail(f"{problem}: header says {'x'.join(map(str, idx.dims))} = {idx.size} bytes of "
                                f"data, file holds {held}")
    except BaseException:
        idx.close()
        raise
    return idx


def _open_split(name: str, folder: pathlib.Path, split: str) -> tuple[_IdxFile, _IdxFile]:
    img_base, lab_base = _MNIST_FILES[split]
    images = _open_idx(name, _find_idx(name, folder, img_base), _IDX_IMAGES_MAGIC, "IDX images")
    try:
        labels = _open_idx(name, _find_idx(name, folder, lab_base), _IDX_LABELS_MAGIC, "IDX labels")
    except BaseException:
        images.close()
        raise
    if len(images.dims) != 3 or len(labels.dims) != 1:
        problem = (f"{images.path.name} has {len(images.dims)} dimensions, expected 3 (count, rows, columns)"
                   if len(images.dims) != 3 else f"{labels.path.name} has {len(labels.dims)} dimensions, expected 1")
        images.close()
        labels.close()
        raise DataError(f"{name}: {folder}: {problem}")
    if images.dims[0] != labels.dims[0]:
        images.close()
        labels.close()
        raise DataError(f"{name}: {images.path.name} holds {images.dims[0]} images but "
                        f"{labels.path.name} holds {labels.dims[0]} labels ({folder})")
    return images, labels


def _read_split(name: str, images: _IdxFile, labels: _IdxFile) -> tuple[np.ndarray, np.ndarray]:
    x, y = images.read_data(), labels.read_data()
    if y.size and y.max() > 9:
        raise DataError(f"{name}: {labels.path}: label {int(y.max())} out of range 0..9")
    return x[:, None], y.astype(np.int64)


def _load_idx(name: str, folder: pathlib.Path, limits: DataLimits) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Both splits: all four headers read and checked (against each other and the limits) before any data."""
    opened: list[_IdxFile] = []
    try:
        splits: dict[str, tuple[_IdxFile, _IdxFile]] = {}
        for split in _MNIST_FILES:
            splits[split] = _open_split(name, folder, split)
            opened += splits[split]
        train, test = splits["train"][0].dims, splits["test"][0].dims
        if train[1:] != test[1:]:
            raise DataError(f"{name}: {folder}: train images are {train[1]}x{train[2]} "
                            f"but t10k images are {test[1]}x{test[2]}")
        limits.check_images(f"{name}: {folder}", [(train[0], 1, *train[1:]), (test[0], 1, *test[1:])])
        return {split: _read_split(name, *files) for split, files in splits.items()}
    finally:
        for idx in opened:
            idx.close()


def idx_loader(name: str, classes: tuple[str, ...]) -> Loader:
    """A loader for an MNIST-layout folder of four IDX files."""

    def load(path: str | None, *, cache_dir: pathlib.Path | None = None,
             limits: Optional[DataLimits] = None) -> Dataset:
        folder = need_dir(name, path)
        splits = _load_idx(name, folder, resolve_limits(limits))
        (x_train, y_train), (x_test, y_test) = splits["train"], splits["test"]
        return make_dataset(name, f"{name}:{path}", x_train, y_train, x_test, y_test, classes)

    load.__doc__ = f"Load {name} from a folder of the four IDX files (plain or .gz)."
    return load
