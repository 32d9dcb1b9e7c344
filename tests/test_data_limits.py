"""Data limits: every file format's declared sizes are checked against DataLimits before anything large
is allocated, the limits come from the environment, and a dataset within them loads unchanged."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from advcli.data import FORMATS, load_dataset
from advcli.data.limits import ENVIRONMENT, DataLimits
from advcli.errors import DataError

SIDE, TRAIN, TEST = 8, 12, 4


def _images(count: int, channels: int = 1) -> np.ndarray:
    rng = np.random.default_rng(count)
    return rng.integers(0, 256, (count, SIDE, SIDE) if channels == 1 else (count, SIDE, SIDE, channels), np.uint8)


def _idx(folder: Path) -> str:
    folder.mkdir(parents=True)
    arrays = {"train-images-idx3-ubyte": _images(TRAIN), "train-labels-idx1-ubyte": np.arange(TRAIN) % 10,
              "t10k-images-idx3-ubyte": _images(TEST), "t10k-labels-idx1-ubyte": np.arange(TEST) % 10}
    for index, (name, array) in enumerate(arrays.items()):
        raw = struct.pack(">I", 0x803 if array.ndim == 3 else 0x801) + struct.pack(f">{array.ndim}I", *array.shape)
        raw += array.astype(np.uint8).tobytes()
        if index % 2:  # the label files gzipped, the image files plain: both readers are exercised
            (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / name).write_bytes(raw)
    return str(folder)


def _cifar(folder: Path) -> str:
    """CIFAR batches are 32x32: the image limit is checked at that size."""
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    return str(folder)


def _npz(folder: Path) -> str:
    folder.mkdir(parents=True)
    np.savez(folder / "data.npz", x_train=_images(TRAIN), y_train=np.arange(TRAIN) % 3, x_test=_images(TEST),
             y_test=np.arange(TEST) % 3)
    return str(folder / "data.npz")


def _folder(folder: Path) -> str:
    from PIL import Image

    for label in ("a", "b"):
        for index in range(4):
            (folder / label).mkdir(parents=True, exist_ok=True)
            Image.fromarray(_images(1)[0]).save(folder / label / f"{index}.png")
    return str(folder)


WRITERS: dict[str, tuple[Callable[[Path], str], int]] = {  # format -> (writer, side of its images)
    "mnist": (_idx, SIDE), "fashion-mnist": (_idx, SIDE), "cifar10": (_cifar, 32), "npz": (_npz, SIDE),
    "folder": (_folder, SIDE),
}


def test_every_format_that_reads_files_is_covered():
    assert set(WRITERS) == set(FORMATS.names()) - {"digits"}  # digits is generated, of a fixed small size


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_a_dataset_within_the_limits_loads_and_one_beyond_them_is_refused(fmt, tmp_path):
    writer, side = WRITERS[fmt]
    spec = f"{fmt}:{writer(tmp_path / 'data')}"
    dataset = load_dataset(spec)
    assert dataset.input_shape[1:] == (side, side)
    with pytest.raises(DataError, match="ADVCLI_MAX_IMAGE_PIXELS"):
        load_dataset(spec, limits=DataLimits(max_image_pixels=side * side - 1))
    decoded = (len(dataset.x_train) + len(dataset.x_test)) * dataset.x_train[0].numel() * 4
    with pytest.raises(DataError, match="ADVCLI_MAX_DATA_BYTES"):
        load_dataset(spec, limits=DataLimits(max_bytes=decoded - 1))
    assert load_dataset(spec, limits=DataLimits(max_bytes=decoded)).fingerprint == dataset.fingerprint


@pytest.mark.parametrize("fmt", ["npz", "folder"])
def test_the_class_limit_applies_to_formats_that_name_their_classes(fmt, tmp_path):
    writer, _ = WRITERS[fmt]
    spec = f"{fmt}:{writer(tmp_path / 'data')}"
    with pytest.raises(DataError, match="ADVCLI_MAX_CLASSES"):
        load_dataset(spec, limits=DataLimits(max_classes=1))


def test_limits_come_from_the_environment(monkeypatch):
    monkeypatch.setenv(ENVIRONMENT["max_bytes"], "16GiB")
    monkeypatch.setenv(ENVIRONMENT["max_image_pixels"], "4M")
    monkeypatch.setenv(ENVIRONMENT["max_classes"], "1_000")
    assert DataLimits.current() == DataLimits(max_bytes=16 << 30, max_image_pixels=4_000_000, max_classes=1000)
    monkeypatch.setenv(ENVIRONMENT["max_classes"], "lots")
    with pytest.raises(DataError, match="ADVCLI_MAX_CLASSES"):
        DataLimits.current()


def test_the_environment_limit_reaches_the_loaders(monkeypatch, tmp_path):
    spec = f"npz:{_npz(tmp_path / 'data')}"
    monkeypatch.setenv(ENVIRONMENT["max_image_pixels"], str(SIDE * SIDE - 1))
    with pytest.raises(DataError, match="pixels per image"):
        load_dataset(spec)


def test_a_gzip_stream_is_read_only_as_far_as_its_header_says(tmp_path):
    """A .gz whose stream goes on after the data its header announces is refused without inflating the rest."""
    folder = Path(_idx(tmp_path / "data"))
    raw = (folder / "train-images-idx3-ubyte").read_bytes()
    (folder / "train-images-idx3-ubyte").unlink()
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw) + gzip.compress(bytes(64 << 20)) * 4)
    with pytest.raises(DataError, match="trailing bytes"):
        load_dataset(f"mnist:{folder}")


def test_an_npz_header_claiming_more_than_its_member_holds_is_refused(tmp_path):
    import io
    import zipfile

    claim = io.BytesIO()
    np.lib.format.write_array_header_1_0(claim, {"descr": "|u1", "fortran_order": False, "shape": (10**9, 8, 8)})
    path = tmp_path / "claims.npz"
    with zipfile.ZipFile(path, "w") as archive:
        for key, array in (("x_train", _images(TRAIN)), ("y_train", np.arange(TRAIN) % 3), ("y_test", np.arange(TEST) % 3)):
            member = io.BytesIO()
            np.save(member, array)
            archive.writestr(f"{key}.npy", member.getvalue())
        archive.writestr("x_test.npy", claim.getvalue() + bytes(64))
    with pytest.raises(DataError, match="header says 1000000000x8x8 uint8 = 64000000000 bytes, but the member holds 64"):
        load_dataset(f"npz:{path}")
