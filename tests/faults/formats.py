"""Well-formed files in every ``--data`` format, small enough to write in milliseconds.

The hostile generators (:mod:`faults.hostile_data`, :mod:`faults.bombs`) start from these and
break one thing at a time, so each case fails for exactly the reason it is named after.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
from PIL import Image

IDX_IMAGES, IDX_LABELS = 0x00000803, 0x00000801
MNIST_FILES = {
    "train-images-idx3-ubyte": IDX_IMAGES, "train-labels-idx1-ubyte": IDX_LABELS,
    "t10k-images-idx3-ubyte": IDX_IMAGES, "t10k-labels-idx1-ubyte": IDX_LABELS,
}
CIFAR_BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    """An IDX file: big-endian magic, dims, then the uint8 data."""
    return struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()


def mnist_arrays(n_train: int = 20, n_test: int = 8, side: int = 12, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, side, side), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, side, side), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10).astype(np.uint8),
    }


def write_mnist(folder: Path, *, gz: bool = False, files: Optional[dict[str, bytes]] = None,
                arrays: Optional[dict[str, np.ndarray]] = None) -> Path:
    """The four IDX files in `folder`; `files` replaces the raw bytes (before gzip) of some of them."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = arrays or mnist_arrays()
    for name, magic in MNIST_FILES.items():
        raw = (files or {}).get(name)
        if raw is None:
            raw = idx_bytes(arrays[name], magic)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(raw, compresslevel=1))
        else:
            (folder / name).write_bytes(raw)
    return folder


def cifar_batch(n: int = 4, seed: int = 0, **overrides: Any) -> dict[bytes, Any]:
    """One python-version CIFAR-10 batch dict, with bytes keys as in the original pickles."""
    rng = np.random.default_rng(seed)
    batch: dict[bytes, Any] = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                               b"labels": [i % 10 for i in range(n)], b"batch_label": b"test batch"}
    for key, value in overrides.items():
        if value is None:
            batch.pop(key.encode(), None)
        else:
            batch[key.encode()] = value
    return batch


def write_cifar(folder: Path, *, files: Optional[dict[str, bytes]] = None, meta: bool = True) -> Path:
    """Five training batches and a test batch of 4 images each (and batches.meta); `files` replaces some."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(CIFAR_BATCHES):
        (folder / name).write_bytes(pickle.dumps(cifar_batch(seed=index), protocol=2))
    if meta:
        names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
        (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}, protocol=2))
    for name, content in (files or {}).items():
        (folder / name).write_bytes(content)
    return folder


def npz_arrays(n_train: int = 12, n_test: int = 4, side: int = 8, classes: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.integers(0, 256, (n_train, side, side), dtype=np.uint8),
        "y_train": (np.arange(n_train) % classes).astype(np.int64),
        "x_test": rng.integers(0, 256, (n_test, side, side), dtype=np.uint8),
        "y_test": (np.arange(n_test) % classes).astype(np.int64),
    }


def write_npz(path: Path, **changes: Any) -> Path:
    """A valid small npz; keyword arguments replace arrays (None removes one)."""
    arrays: dict[str, Any] = npz_arrays()
    for key, value in changes.items():
        if value is None:
            arrays.pop(key, None)
        else:
            arrays[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:  # a file object: np.savez would append .npz to other names
        np.savez(handle, **arrays)
    return path


def write_png(path: Path, side: int = 8, value: int = 128, mode: str = "L") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (side, side), value if mode == "L" else (value,) * 3).save(path)
    return path


def write_folder(root: Path, classes: tuple[str, ...] = ("cat", "dog"), per_class: int = 3,
                 image: Callable[[Path, int], Path] = lambda path, i: write_png(path, value=40 * i)) -> Path:
    """DIR/<class>/<n>.png with `per_class` small grayscale images per class."""
    for name in classes:
        for i in range(per_class):
            image(root / name / f"{i}.png", i)
    return root


def npy_bytes(array: np.ndarray, *, shape: Optional[tuple[int, ...]] = None) -> bytes:
    """The .npy bytes of `array`, with a header claiming `shape` instead of its own when given."""
    import io

    buffer = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(array.dtype), "fortran_order": False,
              "shape": tuple(array.shape if shape is None else shape)}
    np.lib.format.write_array_header_1_0(buffer, header)
    buffer.write(np.ascontiguousarray(array).tobytes())
    return buffer.getvalue()


def zip_of(members: dict[str, bytes]) -> bytes:
    """A zip archive (stored, as np.savez writes them) of the given members."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()
