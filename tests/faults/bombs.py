"""Small crafted data files that claim, or expand into, far more memory than they take on disk.

Loaded only in a child process under RLIMIT_AS (see :mod:`faults.processes`): the fixed loaders
must refuse each of them with exit 2 while staying under :data:`PEAK_RSS_TARGET`. Sizes are
chosen so that a loader that trusts the file goes past that target, yet fails fast under the
limit instead of taking the machine down.
"""

from __future__ import annotations

import gzip
import pickle
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Callable

import numpy as np

from .formats import (
    IDX_IMAGES,
    cifar_batch,
    mnist_arrays,
    npy_bytes,
    npz_arrays,
    write_cifar,
    write_folder,
    write_mnist,
    write_npz,
    zip_of,
)

MiB, GiB = 1 << 20, 1 << 30
PEAK_RSS_TARGET = 1 * GiB
MEMORY_LIMIT = 3 * GiB   # RLIMIT_AS of the child: a loader that trusts the file fails instead of swapping

Generator = Callable[[Path], str]


def _gzip_zeros(total: int, member: int = 16 * MiB) -> bytes:
    """gzip members inflating to `total` zero bytes: one member compressed once, repeated (valid gzip)."""
    block = gzip.compress(bytes(member), compresslevel=9)
    return block * (total // member)


# npz ---------------------------------------------------------------------------------------------

def npz_one_huge_label(folder: Path) -> str:
    """One label 10,000,000 and no `classes`: a loader that counts classes from labels builds 10M of them."""
    labels = np.zeros(12, np.int64)
    labels[0] = 10_000_000
    return f"npz:{write_npz(folder / 'huge-label.npz', y_train=labels)}"


def npz_two_million_class_names(folder: Path) -> str:
    """A compressed `classes` array of 2,000,000 one-letter names (a few KB on disk)."""
    path = folder / "many-classes.npz"
    folder.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        np.savez_compressed(handle, **npz_arrays(), classes=np.full(2_000_000, "a"))
    return f"npz:{path}"


def npz_header_claims_73_gib(folder: Path) -> str:
    """x_train.npy's header claims 73 GiB of uint8 images; the member holds 64 bytes."""
    members = {f"{key}.npy": npy_bytes(value) for key, value in npz_arrays().items()}
    members["x_train.npy"] = npy_bytes(np.zeros((1, 8, 8), np.uint8), shape=(73 * GiB // 64, 8, 8))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "claims.npz").write_bytes(zip_of(members))
    return f"npz:{folder / 'claims.npz'}"


def npz_deflate_bomb(folder: Path, images: int = 8, side: int = 4096) -> str:
    """A deflated x_train.npy of 128 MiB of zero pixels (about 0.5 MiB on disk), header consistent."""
    path = folder / "deflated.npz"
    folder.mkdir(parents=True, exist_ok=True)
    arrays = npz_arrays(n_test=2, side=side)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("x_train.npy", "w", force_zip64=True) as member:
            member.write(npy_bytes(np.zeros((0, side, side), np.uint8), shape=(images, side, side)))
            chunk = bytes(16 * MiB)
            for _ in range(images * side * side // len(chunk)):
                member.write(chunk)
        archive.writestr("y_train.npy", npy_bytes(np.arange(images, dtype=np.int64) % 2))
        for key in ("x_test", "y_test"):
            archive.writestr(f"{key}.npy", npy_bytes(arrays[key]))
    return f"npz:{path}"


# CIFAR-10 ----------------------------------------------------------------------------------------

def _cifar_replacing(name: str, content: bytes, folder: Path) -> str:
    write_cifar(folder, files={name: content})
    return f"cifar10:{folder}"


def cifar_nested_shared_labels(folder: Path) -> str:
    """'labels' nests shared references: 100x100x100 views of one 400-element array (8 GB as an array)."""
    leaf = np.zeros(400, np.int64)
    level1 = [leaf] * 100
    level2 = [level1] * 100
    labels = [level2] * 100
    content = pickle.dumps(cifar_batch(labels=labels), protocol=2)  # pickle stores each shared object once
    assert len(content) < 32 * 1024
    return _cifar_replacing("data_batch_1", content, folder)


def cifar_bytes_claiming_1_tib(folder: Path) -> str:
    """A 12-byte pickle: one BINBYTES8 opcode claiming 2**40 bytes of data."""
    return _cifar_replacing("data_batch_1", b"\x80\x04\x8e" + struct.pack("<Q", 2**40) + b".", folder)


def cifar_ndarray_claiming_8_tib(folder: Path) -> str:
    """numpy.ndarray (an allowed global) called with shape 2**40: an 8 TiB float64 array."""
    return _cifar_replacing("data_batch_1", b"cnumpy\nndarray\n(I1099511627776\ntR.", folder)


# IDX ---------------------------------------------------------------------------------------------

def idx_gzip_inflating_past_its_header(folder: Path) -> str:
    """A 512 KiB .gz whose header says 20 images of 12x12, followed by 512 MiB of zeros."""
    write_mnist(folder)
    header = struct.pack(">IIII", IDX_IMAGES, 20, 12, 12)
    (folder / "train-images-idx3-ubyte").unlink()
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(header) + _gzip_zeros(512 * MiB))
    return f"mnist:{folder}"


def idx_gzip_consistent_128_mib(folder: Path, images: int = 8, side: int = 4096) -> str:
    """8 images of 4096x4096 (128 MiB, consistent header) in a 128 KiB .gz; 512 MiB as float32."""
    write_mnist(folder, arrays=mnist_arrays(n_train=images, n_test=2, side=side))
    header = struct.pack(">IIII", IDX_IMAGES, images, side, side)
    (folder / "train-images-idx3-ubyte").unlink()
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(header) + _gzip_zeros(images * side * side))
    return f"mnist:{folder}"


# folder of images --------------------------------------------------------------------------------

def _zero_png(side: int) -> bytes:
    """A real side x side 8-bit grayscale PNG of zeros, built from one compressed scanline pattern."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = zlib.compress(bytes((side + 1) * side), 9)  # each scanline: filter byte 0, then pixels
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def folder_196_megapixels(folder: Path) -> str:
    """Four 7000x7000 black PNGs (50 KB each, each below Pillow's bomb threshold): 784 MB as float32."""
    content = _zero_png(7000)

    def write_image(path: Path, index: int) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        return path

    write_folder(folder, per_class=2, image=write_image)
    return f"folder:{folder}"


DATA_BOMBS: dict[str, Generator] = {
    "npz-one-label-10M": npz_one_huge_label,
    "npz-2M-class-names": npz_two_million_class_names,
    "npz-header-claims-73GiB": npz_header_claims_73_gib,
    "npz-deflate-bomb-128MiB": npz_deflate_bomb,
    "cifar10-nested-shared-labels": cifar_nested_shared_labels,
    "cifar10-bytes-claiming-1TiB": cifar_bytes_claiming_1_tib,
    "cifar10-ndarray-claiming-8TiB": cifar_ndarray_claiming_8_tib,
    "mnist-gz-inflating-past-header": idx_gzip_inflating_past_its_header,
    "mnist-gz-consistent-128MiB": idx_gzip_consistent_128_mib,
    "folder-196-megapixels": folder_196_megapixels,
}
