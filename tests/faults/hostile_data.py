"""Malformed and hostile data files, one defect each, per ``--data`` format.

Each generator takes an empty folder and returns the ``--data`` spec that names what it wrote.
None of these needs much memory to load, whatever the loader does with it: the ones that could
exhaust memory are in :mod:`faults.bombs` and run in a child process under a memory limit.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import zlib
from pathlib import Path
from typing import Callable

import numpy as np

from .formats import (
    IDX_IMAGES,
    IDX_LABELS,
    cifar_batch,
    idx_bytes,
    mnist_arrays,
    npy_bytes,
    npz_arrays,
    write_cifar,
    write_folder,
    write_mnist,
    write_npz,
    write_png,
    zip_of,
)

Generator = Callable[[Path], str]
MARKER = "pickle-ran-code"  # a file the malicious pickles would create if they ran


# IDX (mnist:, fashion-mnist:) --------------------------------------------------------------------

def _idx_case(change: Callable[[dict[str, np.ndarray]], dict[str, bytes]], gz: bool = False) -> Callable[[Path, str], str]:
    def generate(folder: Path, fmt: str) -> str:
        write_mnist(folder, gz=gz, files=change(mnist_arrays()))
        return f"{fmt}:{folder}"
    return generate


def _replace(folder: Path, old: str, new: str, content: bytes) -> None:
    (folder / old).unlink()
    (folder / new).write_bytes(content)


def _replace_with_folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _replace_with_link(path: Path, target: Path) -> None:
    path.unlink()
    path.symlink_to(target)


def _idx_then(action: Callable[[Path], None]) -> Callable[[Path, str], str]:
    def generate(folder: Path, fmt: str) -> str:
        write_mnist(folder)
        action(folder)
        return f"{fmt}:{folder}"
    return generate


TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"

IDX_CASES: dict[str, Callable[[Path, str], str]] = {
    "missing-file": _idx_then(lambda f: (f / TEST_LABELS).unlink()),
    "bad-magic": _idx_case(lambda a: {TRAIN_IMAGES: b"\x00\x00\x09\x03" + idx_bytes(a[TRAIN_IMAGES], IDX_IMAGES)[4:]}),
    "labels-with-image-magic": _idx_case(lambda a: {TRAIN_LABELS: idx_bytes(a[TRAIN_IMAGES], IDX_IMAGES)}),
    "empty-file": _idx_case(lambda a: {TRAIN_IMAGES: b""}),
    "truncated-header": _idx_case(lambda a: {TRAIN_IMAGES: idx_bytes(a[TRAIN_IMAGES], IDX_IMAGES)[:9]}),
    "truncated-data": _idx_case(lambda a: {TRAIN_IMAGES: idx_bytes(a[TRAIN_IMAGES], IDX_IMAGES)[:-7]}),
    "trailing-bytes": _idx_case(lambda a: {TRAIN_IMAGES: idx_bytes(a[TRAIN_IMAGES], IDX_IMAGES) + b"\0" * 5}),
    "header-claims-16-EiB": _idx_case(lambda a: {TRAIN_IMAGES: struct.pack(">IIII", IDX_IMAGES, 2**32 - 1, 2**32 - 1, 2**32 - 1)}),
    "label-out-of-range": _idx_case(lambda a: {TRAIN_LABELS: idx_bytes(np.full(20, 10, np.uint8), IDX_LABELS)}),
    "count-mismatch": _idx_case(lambda a: {TRAIN_LABELS: idx_bytes(a[TRAIN_LABELS][:-1], IDX_LABELS)}),
    "train-test-sizes-differ": _idx_case(lambda a: {TEST_IMAGES: idx_bytes(np.zeros((8, 10, 10), np.uint8), IDX_IMAGES)}),
    "empty-test-split": _idx_case(lambda a: {TEST_IMAGES: idx_bytes(np.zeros((0, 12, 12), np.uint8), IDX_IMAGES),
                                             TEST_LABELS: idx_bytes(np.zeros(0, np.uint8), IDX_LABELS)}),
    "gz-truncated": _idx_then(lambda f: _replace(f, TRAIN_IMAGES, f"{TRAIN_IMAGES}.gz",
                                                 gzip.compress(idx_bytes(mnist_arrays()[TRAIN_IMAGES], IDX_IMAGES))[:-20])),
    "named-gz-not-gzip": _idx_then(lambda f: (f / TRAIN_IMAGES).rename(f / f"{TRAIN_IMAGES}.gz")),
    "gz-garbage-after-magic": _idx_then(lambda f: _replace(f, TRAIN_IMAGES, f"{TRAIN_IMAGES}.gz", b"\x1f\x8b" + bytes(range(64)))),
    "file-is-a-folder": _idx_then(lambda f: _replace_with_folder(f / TRAIN_IMAGES)),
    "dangling-symlink": _idx_then(lambda f: _replace_with_link(f / TRAIN_IMAGES, f / "gone")),
}


def idx_path_is_a_file(folder: Path, fmt: str) -> str:
    write_mnist(folder)
    return f"{fmt}:{folder / TRAIN_IMAGES}"


IDX_CASES["path-is-a-file"] = idx_path_is_a_file


# CIFAR-10 pickles --------------------------------------------------------------------------------

class _RunsCode:
    """Pickles as a call of os.system (what a malicious 'batch' does)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _touch(folder: Path) -> str:
    return f"touch {folder / MARKER}"


def _cifar_with(name: str, content: Callable[[Path], bytes]) -> Generator:
    def generate(folder: Path) -> str:
        write_cifar(folder, files={name: content(folder)})
        return f"cifar10:{folder}"
    return generate


def _cifar_then(action: Callable[[Path], None]) -> Generator:
    def generate(folder: Path) -> str:
        write_cifar(folder)
        action(folder)
        return f"cifar10:{folder}"
    return generate


def _cifar_batch_with(**overrides) -> Generator:
    return _cifar_with("data_batch_3", lambda folder: pickle.dumps(cifar_batch(**overrides), protocol=2))


CIFAR_CASES: dict[str, Generator] = {
    "missing-batch": _cifar_then(lambda folder: (folder / "data_batch_5").unlink()),
    "not-a-pickle": _cifar_with("data_batch_1", lambda folder: os.urandom(200)),
    "truncated-pickle": _cifar_with("data_batch_1", lambda folder: pickle.dumps(cifar_batch(), protocol=2)[:-100]),
    "empty-file": _cifar_with("test_batch", lambda folder: b""),
    "pickled-list": _cifar_with("data_batch_2", lambda folder: pickle.dumps([1, 2, 3], protocol=2)),
    "missing-data-key": _cifar_batch_with(data=None),
    "data-float": _cifar_batch_with(data=np.zeros((4, 3072), np.float32)),
    "data-3071-wide": _cifar_batch_with(data=np.zeros((4, 3071), np.uint8)),
    "data-object-array": _cifar_batch_with(data=np.array([b"x"] * 4, dtype=object)),
    "labels-strings": _cifar_batch_with(labels=["a", "b", "c", "d"]),
    "labels-out-of-range": _cifar_batch_with(labels=[0, 1, 2, 11]),
    "labels-count-mismatch": _cifar_batch_with(labels=[0, 1, 2]),
    "labels-ragged": _cifar_batch_with(labels=[0, [1, 2], 3, 4]),
    "meta-three-names": _cifar_with("batches.meta", lambda folder: pickle.dumps({b"label_names": [b"a", b"b", b"c"]}, protocol=2)),
    # Code execution: none of these may run anything (the marker file must not appear).
    "os-system-global-opcode": _cifar_with("data_batch_1", lambda folder: pickle.dumps(_RunsCode(_touch(folder)), protocol=2)),
    "os-system-stack-global": _cifar_with("data_batch_1", lambda folder: pickle.dumps(_RunsCode(_touch(folder)), protocol=4)),
    "os-system-inst-opcode": _cifar_with("data_batch_1", lambda folder: f"(S'{_touch(folder)}'\nios\nsystem\n.".encode()),
    "builtins-eval": _cifar_with("data_batch_1", lambda folder: (
        b"cbuiltins\neval\n(S\"__import__('os').system('" + _touch(folder).encode() + b"')\"\ntR.")),
    "evil-inside-batch": _cifar_with("test_batch", lambda folder: pickle.dumps(
        {b"data": _RunsCode(_touch(folder)), b"labels": [0]}, protocol=2)),
    "codecs-encode-not-latin1": _cifar_with("data_batch_1", lambda folder: b"c_codecs\nencode\n(Vx\nVrot13\ntR."),
    "persistent-id": _cifar_with("data_batch_1", lambda folder: b"(Pevil\nl."),
}


# npz ---------------------------------------------------------------------------------------------

def _npz(**changes) -> Generator:
    def generate(folder: Path) -> str:
        return f"npz:{write_npz(folder / 'data.npz', **changes)}"
    return generate


def _npz_raw(content: Callable[[], bytes], name: str = "data.npz") -> Generator:
    def generate(folder: Path) -> str:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content())
        return f"npz:{folder / name}"
    return generate


def _npz_truncated(folder: Path) -> str:
    path = write_npz(folder / "data.npz")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return f"npz:{path}"


def _npy_file(folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "data.npy", np.zeros((4, 8, 8), np.uint8))
    return f"npz:{folder / 'data.npy'}"


def _short_member() -> bytes:
    """An npz whose x_train.npy header promises 64 images but whose data holds one."""
    members = {f"{key}.npy": npy_bytes(value) for key, value in npz_arrays().items()}
    members["x_train.npy"] = npy_bytes(np.zeros((1, 8, 8), np.uint8), shape=(64, 8, 8))
    return zip_of(members)


NPZ_CASES: dict[str, Generator] = {
    "missing-file": lambda folder: f"npz:{folder / 'absent.npz'}",
    "not-a-zip": _npz_raw(lambda: b"just some text\n" * 10),
    "empty-zip": _npz_raw(lambda: zip_of({})),
    "truncated-zip": _npz_truncated,
    "missing-key": _npz(y_test=None),
    "object-array": _npz(x_train=np.array([object()] * 12, dtype=object)),
    "npy-not-npz": _npy_file,
    "member-shorter-than-header": _npz_raw(_short_member),
    "floats-above-1": _npz(x_train=np.full((12, 8, 8), 2.0, np.float32), x_test=np.zeros((4, 8, 8), np.float32)),
    "nan-pixels": _npz(x_train=np.full((12, 8, 8), np.nan, np.float32), x_test=np.zeros((4, 8, 8), np.float32)),
    "images-2d": _npz(x_train=np.zeros((12, 64), np.uint8)),
    "images-0d": _npz(x_train=np.array(3, np.uint8)),
    "images-int16": _npz(x_train=np.zeros((12, 8, 8), np.int16)),
    "mixed-dtypes": _npz(x_train=np.zeros((12, 8, 8), np.float32)),
    "labels-float": _npz(y_train=np.zeros(12, np.float32)),
    "labels-bool": _npz(y_train=np.zeros(12, bool)),
    "negative-label": _npz(y_train=np.full(12, -1, np.int64)),
    "label-beyond-classes": _npz(classes=np.array(["a", "b"])),
    "classes-2d": _npz(classes=np.array([["a", "b"], ["c", "d"]])),
    "classes-integers": _npz(classes=np.arange(3)),
    "shapes-differ": _npz(x_test=np.zeros((4, 9, 9), np.uint8)),
    "counts-differ": _npz(y_train=np.zeros(11, np.int64)),
    "empty-train": _npz(x_train=np.zeros((0, 8, 8), np.uint8), y_train=np.zeros(0, np.int64)),
    "five-channels": _npz(x_train=np.zeros((12, 5, 8, 8), np.uint8), x_test=np.zeros((4, 5, 8, 8), np.uint8)),
}


# folder of images --------------------------------------------------------------------------------

def png_header(width: int, height: int) -> bytes:
    """A PNG signature and IHDR claiming width x height 8-bit grayscale, then an empty IDAT and IEND."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def _folder_then(action: Callable[[Path], None]) -> Generator:
    def generate(folder: Path) -> str:
        write_folder(folder)
        action(folder)
        return f"folder:{folder}"
    return generate


def _folder_spec(write: Callable[[Path], object], name: str = "") -> Generator:
    """Run `write` on the folder, then name the folder (or `name` inside it) as the spec."""
    def generate(folder: Path) -> str:
        write(folder)
        return f"folder:{folder / name if name else folder}"
    return generate


FOLDER_CASES: dict[str, Generator] = {
    "no-class-folders": _folder_spec(lambda f: f.mkdir(parents=True)),
    "empty-class-folder": _folder_then(lambda f: (f / "emu").mkdir()),
    "text-named-png": _folder_then(lambda f: (f / "cat" / "0.png").write_text("not an image")),
    "truncated-png": _folder_then(lambda f: (f / "cat" / "0.png").write_bytes((f / "cat" / "1.png").read_bytes()[:40])),
    "zero-byte-jpeg": _folder_then(lambda f: (f / "dog" / "9.jpg").write_bytes(b"")),
    "mixed-sizes": _folder_then(lambda f: write_png(f / "dog" / "0.png", side=9)),
    "train-without-test": _folder_spec(lambda f: write_folder(f / "train")),
    "test-class-unknown": _folder_spec(lambda f: (write_folder(f / "train"), write_folder(f / "test", ("cat", "owl")))),
    "one-image-per-class": _folder_spec(lambda f: write_folder(f, per_class=1)),
    "decompression-bomb-header": _folder_then(lambda f: (f / "cat" / "0.png").write_bytes(png_header(15000, 15000))),
    "path-is-a-file": _folder_spec(lambda f: write_png(f / "x.png"), "x.png"),
}


# specs that name no file -------------------------------------------------------------------------

SPEC_CASES: dict[str, str] = {
    "digits-with-a-path": "digits:/tmp/anything",
    "unknown-format": "parquet:/tmp/x",
    "empty-spec": "",
    "blank-spec": "   ",
    "npz-without-path": "npz:",
    "mnist-without-path": "mnist",
}
