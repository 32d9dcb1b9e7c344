"""IDX files (the MNIST layout: four files, plain or .gz), shared by ``mnist`` and ``fashion-mnist``."""

from __future__ import annotations

import gzip
import math
import pathlib
import struct
import zlib
from typing import Optional

import numpy as np

from ...errors import DataError
from ..dataset import Dataset, make_dataset
from ..download import downloaded_folder
from ..spec import need_dir
from . import Loader, Progress

_IDX_IMAGES_MAGIC = 0x00000803
_IDX_LABELS_MAGIC = 0x00000801
_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find_idx(name: str, folder: pathlib.Path, base: str) -> pathlib.Path:
    """The plain or .gz file for ``base`` in folder."""
    for candidate in (folder / base, folder / f"{base}.gz"):
        if candidate.is_file():
            return candidate
    raise DataError(f"{name}: {folder}: missing {base} (or {base}.gz)")


def _read_idx(name: str, path: pathlib.Path, magic: int, what: str) -> np.ndarray:
    """Parse one IDX file (optionally gzipped) with the given magic into a uint8 array."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{name}: {path}: cannot read: {exc.strerror or exc}") from exc
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{name}: {path}: corrupt gzip data: {exc}") from exc
    elif path.suffix == ".gz":
        raise DataError(f"{name}: {path}: named .gz but not gzip-compressed")
    if len(raw) < 4:
        raise DataError(f"{name}: {path}: truncated: {len(raw)} bytes, too short for an IDX header")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DataError(f"{name}: {path}: bad magic number 0x{found:08x}, expected 0x{magic:08x} ({what})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{name}: {path}: truncated IDX header ({len(raw)} bytes, need {header})")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = math.prod(dims)
    have = len(raw) - header
    if have != expected:
        problem = "truncated" if have < expected else "has trailing bytes"
        raise DataError(f"{name}: {path}: {problem}: header says {'x'.join(map(str, dims))} "
                        f"= {expected} bytes of data, file holds {have}")
    return np.frombuffer(raw, dtype=np.uint8, count=expected, offset=header).reshape(dims)


def _load_idx_split(name: str, folder: pathlib.Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    img_base, lab_base = _MNIST_FILES[split]
    img_path = _find_idx(name, folder, img_base)
    lab_path = _find_idx(name, folder, lab_base)
    images = _read_idx(name, img_path, _IDX_IMAGES_MAGIC, "IDX images")
    labels = _read_idx(name, lab_path, _IDX_LABELS_MAGIC, "IDX labels")
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{name}: {img_path.name} holds {images.shape[0]} images but "
                        f"{lab_path.name} holds {labels.shape[0]} labels ({folder})")
    if labels.size and labels.max() > 9:
        raise DataError(f"{name}: {lab_path}: label {int(labels.max())} out of range 0..9")
    return images[:, None], labels.astype(np.int64)


def idx_loader(name: str, classes: tuple[str, ...]) -> Loader:
    """A loader for an MNIST-layout folder of four IDX files."""

    def load(path: str | None, *, cache_dir: pathlib.Path | None = None,
             on_progress: Optional[Progress] = None) -> Dataset:
        folder = need_dir(name, path) if path is not None else downloaded_folder(name, cache_dir, on_progress)
        x_train, y_train = _load_idx_split(name, folder, "train")
        x_test, y_test = _load_idx_split(name, folder, "test")
        if x_train.shape[1:] != x_test.shape[1:]:
            raise DataError(f"{name}: {folder}: train images are {x_train.shape[2]}x{x_train.shape[3]} "
                            f"but t10k images are {x_test.shape[2]}x{x_test.shape[3]}")
        return make_dataset(name, name if path is None else f"{name}:{path}", x_train, y_train, x_test, y_test,
                            classes)

    load.__doc__ = f"Load {name} from a folder of the four IDX files (plain or .gz), or download it once."
    return load

