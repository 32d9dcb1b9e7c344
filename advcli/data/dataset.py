"""The loaded dataset every format produces, with a fingerprint of its content."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import DataError


@dataclass(frozen=True, eq=False)  # eq=False: element-wise tensor comparison has no truth value
class Dataset:
    """A loaded dataset: float32 NCHW images in [0, 1], int64 labels, class names, fingerprint."""

    name: str
    spec: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: tuple[str, ...]
    fingerprint: str

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape of one image, (C, H, W)."""
        c, h, w = self.x_train.shape[1:]
        return (int(c), int(h), int(w))

    @property
    def num_classes(self) -> int:
        """Number of classes (labels run from 0 to num_classes - 1)."""
        return len(self.classes)

    def split(self, which: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (images, labels) of the "train" or "test" split."""
        splits = {"train": (self.x_train, self.y_train), "test": (self.x_test, self.y_test)}
        if which not in splits:
            raise DataError(f"{self.spec}: unknown split {which!r}, expected one of: train, test")
        return splits[which]

    def describe(self) -> dict[str, Any]:
        """JSON-able summary for run records and `info` output."""
        return {
            "name": self.name,
            "spec": self.spec,
            "fingerprint": self.fingerprint,
            "input_shape": list(self.input_shape),
            "classes": list(self.classes),
            "n_train": int(self.x_train.shape[0]),
            "n_test": int(self.x_test.shape[0]),
        }


def _fingerprint(arrays: tuple[np.ndarray, ...], classes: tuple[str, ...]) -> str:
    """sha256 over dtype, shape and raw little-endian bytes of each array, then the class names."""
    h = hashlib.sha256()
    for arr in arrays:
        a = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
        h.update(f"{a.dtype.str}{a.shape};".encode())
        h.update(a.reshape(-1).view(np.uint8).data)
    h.update(json.dumps(list(classes)).encode())
    return "sha256:" + h.hexdigest()


def _to_float_tensor(x: np.ndarray) -> torch.Tensor:
    """uint8 -> x / 255, float -> float32; always a fresh contiguous writable tensor."""
    xf = np.array(x, dtype=np.float32, order="C", copy=True)
    if x.dtype == np.uint8:
        np.divide(xf, np.float32(255.0), out=xf)
    return torch.from_numpy(xf)


def make_dataset(
    name: str,
    spec: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    classes: tuple[str, ...],
) -> Dataset:
    """Check the stored-form NCHW arrays agree, fingerprint them and convert to tensors."""
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if x.ndim != 4 or x.dtype not in (np.uint8, np.float32):
            raise DataError(f"{spec}: internal: {split} images must be uint8/float32 NCHW, "
                            f"got {x.dtype} {x.shape}")
        if y.ndim != 1 or y.shape[0] != x.shape[0]:
            raise DataError(f"{spec}: {split} has {x.shape[0]} images but {y.shape[0]} labels")
        if x.shape[0] == 0:
            raise DataError(f"{spec}: the {split} split is empty")
        if y.min() < 0 or y.max() >= len(classes):
            raise DataError(f"{spec}: {split} labels span {y.min()}..{y.max()}, "
                            f"expected 0..{len(classes) - 1}")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(f"{spec}: train images are {x_train.shape[1:]} (C,H,W) "
                        f"but test images are {x_test.shape[1:]}")
    ys = (y_train.astype(np.int64), y_test.astype(np.int64))
    fp = _fingerprint((x_train, ys[0], x_test, ys[1]), classes)
    return Dataset(
        name=name,
        spec=spec,
        x_train=_to_float_tensor(x_train),
        y_train=torch.from_numpy(np.array(ys[0], copy=True)),
        x_test=_to_float_tensor(x_test),
        y_test=torch.from_numpy(np.array(ys[1], copy=True)),
        classes=tuple(classes),
        fingerprint=fp,
    )
