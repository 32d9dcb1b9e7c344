"""``cifar10:DIR``: the python-version CIFAR-10 batches, read without executing pickled code."""

from __future__ import annotations

import pathlib
from typing import Any, Optional

import numpy as np

from ...errors import DataError
from ..dataset import Dataset, make_dataset
from ..limits import DataLimits, resolve_limits
from ..spec import need_dir
from . import FORMATS, Format
from ._restricted_pickle import get_key, unpickle

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)


def _labels(path: pathlib.Path, labels: Any, count: int) -> np.ndarray:
    """The batch's labels as int64, checked to be `count` plain integers before any array is made of them."""
    if isinstance(labels, np.ndarray):
        if labels.ndim != 1 or labels.dtype.kind not in "iu":
            raise DataError(f"cifar10: {path}: 'labels' must be a list of integers, got {labels.dtype} {labels.shape}")
    elif not isinstance(labels, list) or not all(type(label) is int for label in labels):
        raise DataError(f"cifar10: {path}: 'labels' must be a flat list of integers")
    if len(labels) != count:
        raise DataError(f"cifar10: {path}: {count} images but {len(labels)} labels")
    try:
        return np.asarray(labels, dtype=np.int64)
    except OverflowError:
        raise DataError(f"cifar10: {path}: 'labels' holds integers beyond 64 bits") from None


def _load_cifar_batch(path: pathlib.Path, limits: DataLimits) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> (uint8 (N,3,32,32), int64 labels)."""
    obj = unpickle(path, limits)
    if not isinstance(obj, dict):
        raise DataError(f"cifar10: {path}: expected a pickled dict, got {type(obj).__name__}")
    try:
        data, labels = get_key(obj, "data"), get_key(obj, "labels")
    except KeyError as exc:
        raise DataError(f"cifar10: {path}: missing key {exc.args[0]!r}") from None
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"cifar10: {path}: 'data' must be uint8 (N, 3072), got {desc}")
    y = _labels(path, labels, data.shape[0])
    if y.size and (y.min() < 0 or y.max() > 9):
        raise DataError(f"cifar10: {path}: labels span {y.min()}..{y.max()}, expected 0..9")
    return data.reshape(-1, 3, 32, 32), y.astype(np.int64)


def _load_cifar10(path: str | None, *, cache_dir: pathlib.Path | None = None,
                  limits: Optional[DataLimits] = None) -> Dataset:
    """Load CIFAR-10 from the python-version batches (data_batch_1..5, test_batch, batches.meta)."""
    limits = resolve_limits(limits)
    folder = need_dir("cifar10", path)
    if not (folder / "data_batch_1").exists() and (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"  # the extracted archive's own subfolder
    files = [folder / f"data_batch_{i}" for i in range(1, 6)] + [folder / "test_batch"]
    for f in files:
        if not f.is_file():
            raise DataError(f"cifar10: {folder}: missing {f.name}")
    limits.check_file_bytes(f"cifar10: {folder}", sum(f.stat().st_size for f in files))
    train = [_load_cifar_batch(f, limits) for f in files[:5]]
    x_test, y_test = _load_cifar_batch(files[5], limits)
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    limits.check_images(f"cifar10: {folder}", [x_train.shape, x_test.shape])  # before the float32 copies
    classes = CIFAR10_CLASSES
    meta = folder / "batches.meta"
    if meta.is_file():
        obj = unpickle(meta, limits)
        try:
            names = get_key(obj, "label_names") if isinstance(obj, dict) else None
        except KeyError:
            names = None
        if not isinstance(names, list) or len(names) != 10 or \
                not all(isinstance(n, (bytes, str)) for n in names):
            raise DataError(f"cifar10: {meta}: expected 'label_names', a list of 10 strings")
        classes = tuple(n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in names)
    return make_dataset("cifar10", f"cifar10:{path}", x_train, y_train, x_test, y_test, classes)



FORMATS.register("cifar10", Format(_load_cifar10, path_kind="DIR"))
