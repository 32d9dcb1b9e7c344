"""Contract tests for advcli.data: the built-in digits set, every file format, and bad-input errors."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from advcli.data import (
    DEFAULT_DATA,
    FORMATS,
    Dataset,
    generate_digits,
    load_dataset,
    parse_data_spec,
)
from advcli.data.formats import digits as data
from advcli.errors import AdvcliError, DataError

REPO = Path(__file__).resolve().parents[1]
REAL_MNIST = REPO.parent / "shared" / "data" / "mnist"


# ------------------------------------------------------------------------------------------
# helpers that write small files in each format


def write_idx(path: Path, arr: np.ndarray, magic: int, *, gz: bool = False) -> Path:
    """Write an IDX file (big-endian dims after the magic), optionally gzipped."""
    payload = struct.pack(">I", magic) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


def make_mnist_dir(root: Path, *, gz: bool = False, n_train: int = 30, n_test: int = 10,
                   seed: int = 0) -> tuple[Path, dict[str, np.ndarray]]:
    """A folder with the four MNIST IDX files holding random images and labels."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test).astype(np.uint8),
    }
    root.mkdir(parents=True, exist_ok=True)
    for name, arr in arrays.items():
        write_idx(root / name, arr, 0x803 if arr.ndim == 3 else 0x801, gz=gz)
    return root, arrays


def make_cifar_dir(root: Path, *, n_per_batch: int = 4, meta: bool = True, protocol: int = 2,
                   bytes_keys: bool = True) -> tuple[Path, list[dict]]:
    """A folder with data_batch_1..5 and test_batch as pickled dicts, like the python CIFAR-10 release."""
    rng = np.random.default_rng(1)
    root.mkdir(parents=True, exist_ok=True)
    key = (lambda k: k.encode()) if bytes_keys else (lambda k: k)
    batches = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            key("data"): rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
            key("labels"): [int(v) for v in rng.integers(0, 10, n_per_batch)],
            key("batch_label"): name.encode(),
        }
        (root / name).write_bytes(pickle.dumps(batch, protocol=protocol))
        batches.append(batch)
    if meta:
        names = [f"class{i}".encode() for i in range(10)]
        (root / "batches.meta").write_bytes(pickle.dumps({key("label_names"): names}, protocol=protocol))
    return root, batches


def write_png(path: Path, size: tuple[int, int], mode: str = "L", value: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    color = value if mode == "L" else (value, 255 - value, 7)
    Image.new(mode, size, color).save(path)


def assert_dataset_contract(ds: Dataset) -> None:
    """Invariants every loader must satisfy."""
    for x, y in (ds.split("train"), ds.split("test")):
        assert x.dtype == torch.float32 and x.ndim == 4 and x.is_contiguous()
        assert y.dtype == torch.int64 and y.shape == (x.shape[0],)
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
        assert int(y.min()) >= 0 and int(y.max()) < ds.num_classes
        assert tuple(x.shape[1:]) == ds.input_shape
    assert ds.fingerprint.startswith("sha256:") and len(ds.fingerprint) == 7 + 64
    assert ds.num_classes == len(ds.classes)
    desc = json.loads(json.dumps(ds.describe()))
    assert desc == {
        "name": ds.name, "spec": ds.spec, "fingerprint": ds.fingerprint,
        "input_shape": list(ds.input_shape), "classes": list(ds.classes),
        "n_train": ds.x_train.shape[0], "n_test": ds.x_test.shape[0],
    }


# ------------------------------------------------------------------------------------------
# digits


@pytest.fixture(scope="module")
def small_digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return generate_digits(n_train=200, n_test=200)


def test_generate_digits_shapes_dtypes_and_range(small_digits):
    x_train, y_train, x_test, y_test = small_digits
    assert x_train.shape == (200, 28, 28) and x_test.shape == (200, 28, 28)
    assert x_train.dtype == np.uint8 and x_test.dtype == np.uint8
    assert y_train.dtype == np.int64 and y_test.dtype == np.int64
    assert np.array_equal(np.bincount(y_train, minlength=10), np.full(10, 20))
    assert np.array_equal(np.bincount(y_test, minlength=10), np.full(10, 20))
    assert not np.array_equal(y_train[:20] % 10, np.arange(20) % 10), "labels should be shuffled"
    # light digit on dark ground, ink intensity within the drawn range and varying, glyph kept in frame
    brightest = x_train.reshape(len(x_train), -1).max(axis=1) / 255
    low, high = data._PEAK
    assert brightest.min() >= low - 1 / 255 and brightest.max() <= high + 1 / 255
    assert brightest.std() > 0.05, "ink intensity should vary between images"
    assert x_train.mean() / 255 < 0.35
    # blurred, soft edges: a good share of the ink is at intermediate grey levels
    ink = x_train[x_train > 0]
    assert ((ink > 0.1 * 255) & (ink < 0.5 * 255)).mean() > 0.25
    for x in (x_train, x_test):
        assert x[:, 0, :].max() == 0 and x[:, -1, :].max() == 0
        assert x[:, :, 0].max() == 0 and x[:, :, -1].max() == 0


def test_generate_digits_is_deterministic_and_seeded(small_digits):
    again = generate_digits(n_train=200, n_test=200)
    for a, b in zip(small_digits, again):
        assert a.tobytes() == b.tobytes()
    other = generate_digits(n_train=200, n_test=200, seed=1)
    assert other[0].tobytes() != small_digits[0].tobytes()


def test_generate_digits_same_bytes_in_another_process(small_digits):
    code = ("import hashlib; from advcli.data import generate_digits; "
            "a = generate_digits(n_train=200, n_test=200); "
            "print(hashlib.sha256(b''.join(x.tobytes() for x in a)).hexdigest())")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    here = hashlib.sha256(b"".join(x.tobytes() for x in small_digits)).hexdigest()
    assert out.stdout.strip() == here


def test_generate_digits_train_and_test_differ(small_digits):
    x_train, _, x_test, _ = small_digits
    train_rows = {img.tobytes() for img in x_train}
    assert not any(img.tobytes() in train_rows for img in x_test)
    assert len(train_rows) == len(x_train), "every train image should be distinct"


def test_digits_are_learnable_by_nearest_neighbour():
    """A cheap stand-in for the CNN check: 1-NN on raw pixels is far above chance (0.1)."""
    x_train, y_train, x_test, y_test = generate_digits(n_train=1000, n_test=200, seed=3)
    a = torch.from_numpy(x_train.reshape(1000, -1).astype(np.float32))
    b = torch.from_numpy(x_test.reshape(200, -1).astype(np.float32))
    pred = y_train[torch.cdist(b, a).argmin(dim=1).numpy()]
    assert (pred == y_test).mean() > 0.6


def test_digit_fonts_are_real_digit_typefaces():
    names = [p.name for p in data.digit_fonts()]
    assert len(names) >= 10
    assert "DejaVuSans.ttf" in names
    for bad in ("cmex10.ttf", "cmsy10.ttf", "DejaVuSansDisplay.ttf", "LastResortHE-Regular.ttf"):
        assert bad not in names
    assert not any(n.startswith(("STIXSiz", "STIXNonUni")) for n in names)


def test_load_default_digits_and_cache_round_trip(tmp_path, monkeypatch):
    ds = load_dataset(cache_dir=tmp_path)
    assert DEFAULT_DATA == "digits"
    assert (ds.name, ds.spec) == ("digits", "digits")
    assert ds.x_train.shape == (5000, 1, 28, 28) and ds.x_test.shape == (5000, 1, 28, 28)
    assert ds.input_shape == (1, 28, 28) and ds.num_classes == 10
    assert ds.classes == tuple("0123456789")
    assert torch.equal(torch.bincount(ds.y_train), torch.full((10,), 500))
    assert_dataset_contract(ds)
    cached = list(tmp_path.glob("*.npz"))
    assert len(cached) == 1 and f"v{data.DIGITS_VERSION}" in cached[0].name and "seed0" in cached[0].name
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]

    def refuse(*args, **kwargs):
        raise AssertionError("should have been read from the cache")

    monkeypatch.setattr(data, "generate_digits", refuse)
    again = load_dataset("digits", cache_dir=tmp_path)
    assert again.fingerprint == ds.fingerprint
    assert torch.equal(again.x_train, ds.x_train) and torch.equal(again.y_test, ds.y_test)


@pytest.fixture
def tiny_digits(monkeypatch):
    """Shrink the built-in set so cache tests run fast."""
    monkeypatch.setattr(data, "DIGITS_N_TRAIN", 40)
    monkeypatch.setattr(data, "DIGITS_N_TEST", 20)


@pytest.mark.parametrize("garbage", [b"", b"not a zip file at all", b"PK\x03\x04truncated"])
def test_corrupt_digits_cache_is_regenerated(tmp_path, tiny_digits, garbage):
    first = load_dataset("digits", cache_dir=tmp_path)
    (cache,) = tmp_path.glob("*.npz")
    cache.write_bytes(garbage)
    second = load_dataset("digits", cache_dir=tmp_path)
    assert second.fingerprint == first.fingerprint
    with np.load(cache) as z:  # rewritten as a valid cache
        assert z["x_train"].shape == (40, 28, 28)


def test_digits_cache_with_wrong_shapes_is_regenerated(tmp_path, tiny_digits):
    first = load_dataset("digits", cache_dir=tmp_path)
    (cache,) = tmp_path.glob("*.npz")
    np.savez(cache, x_train=np.zeros((3, 5, 5), np.uint8), y_train=np.zeros(3, np.int64),
             x_test=np.zeros((3, 5, 5), np.uint8), y_test=np.zeros(3, np.int64))
    assert load_dataset("digits", cache_dir=tmp_path).fingerprint == first.fingerprint


def test_unwritable_cache_dir_still_loads(tmp_path, tiny_digits):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    ds = load_dataset("digits", cache_dir=blocker / "cache")
    assert ds.x_train.shape == (40, 1, 28, 28)


def test_default_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("ADVCLI_CACHE_DIR", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert data.default_cache_dir() == tmp_path / "a"
    monkeypatch.delenv("ADVCLI_CACHE_DIR")
    assert data.default_cache_dir() == tmp_path / "x" / "advcli"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data.default_cache_dir() == tmp_path / "home" / ".cache" / "advcli"


def test_digits_uses_env_cache_dir(monkeypatch, tmp_path, tiny_digits):
    monkeypatch.setenv("ADVCLI_CACHE_DIR", str(tmp_path / "envcache"))
    load_dataset("digits")
    assert len(list((tmp_path / "envcache").glob("digits-*.npz"))) == 1


def test_digits_takes_no_path(tmp_path):
    with pytest.raises(DataError, match="digits takes no path"):
        load_dataset("digits:3", cache_dir=tmp_path)


# ------------------------------------------------------------------------------------------
# spec parsing and the registry


def test_parse_data_spec():
    assert parse_data_spec("digits") == ("digits", None)
    assert parse_data_spec("mnist:/a/b") == ("mnist", "/a/b")
    assert parse_data_spec("MNIST:dir:with:colons") == ("mnist", "dir:with:colons")
    assert parse_data_spec("npz:") == ("npz", None)


def test_registry_holds_all_formats():
    assert set(FORMATS) == {"digits", "mnist", "fashion-mnist", "cifar10", "npz", "folder"}


def test_unknown_format_lists_known_ones():
    with pytest.raises(DataError) as err:
        load_dataset("imagenet:/x")
    msg = str(err.value)
    assert "imagenet" in msg
    for name in FORMATS:
        assert name in msg
    assert issubclass(DataError, AdvcliError)


@pytest.mark.parametrize("spec, expected", [  # mnist, fashion-mnist, cifar10 download instead: test_downloads.py
    ("folder", "folder needs a folder: use folder:DIR"),
    ("npz", "npz needs a file: use npz:FILE"),
])
def test_spec_without_path(spec, expected):
    with pytest.raises(DataError, match=expected):
        load_dataset(spec)


def test_bad_split_name(tmp_path):
    root, _ = make_mnist_dir(tmp_path / "m")
    ds = load_dataset(f"mnist:{root}")
    with pytest.raises(DataError, match="validation"):
        ds.split("validation")


def test_data_package_does_not_touch_cuda():
    for path in (REPO / "advcli" / "data").rglob("*.py"):
        assert "cuda" not in path.read_text(), path


# ------------------------------------------------------------------------------------------
# MNIST / Fashion-MNIST


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_loads(tmp_path, gz):
    root, arrays = make_mnist_dir(tmp_path / "mnist", gz=gz)
    ds = load_dataset(f"mnist:{root}")
    assert_dataset_contract(ds)
    assert (ds.name, ds.spec) == ("mnist", f"mnist:{root}")
    assert ds.x_train.shape == (30, 1, 28, 28) and ds.x_test.shape == (10, 1, 28, 28)
    assert ds.classes == tuple("0123456789")
    expected = torch.from_numpy(arrays["train-images-idx3-ubyte"].astype(np.float32) / 255)
    assert torch.allclose(ds.x_train[:, 0], expected)
    assert torch.equal(ds.y_test, torch.from_numpy(arrays["t10k-labels-idx1-ubyte"].astype(np.int64)))
    # plain and gzipped copies of the same data fingerprint alike; reloading is stable
    assert load_dataset(f"mnist:{root}").fingerprint == ds.fingerprint


def test_plain_and_gz_fingerprints_match(tmp_path):
    plain = load_dataset(f"mnist:{make_mnist_dir(tmp_path / 'p')[0]}")
    gz = load_dataset(f"mnist:{make_mnist_dir(tmp_path / 'g', gz=True)[0]}")
    other = load_dataset(f"mnist:{make_mnist_dir(tmp_path / 'o', seed=5)[0]}")
    assert plain.fingerprint == gz.fingerprint != other.fingerprint


def test_fashion_mnist_classes(tmp_path):
    root, _ = make_mnist_dir(tmp_path / "fashion", gz=True)
    ds = load_dataset(f"fashion-mnist:{root}")
    assert ds.name == "fashion-mnist"
    assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot" and len(ds.classes) == 10


def test_mnist_missing_dir(tmp_path):
    with pytest.raises(DataError, match=f"mnist: {tmp_path / 'nope'}: no such folder"):
        load_dataset(f"mnist:{tmp_path / 'nope'}")


def test_mnist_missing_file(tmp_path):
    root, _ = make_mnist_dir(tmp_path / "m")
    (root / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="missing t10k-labels-idx1-ubyte"):
        load_dataset(f"mnist:{root}")


def test_mnist_bad_magic(tmp_path):
    root, _ = make_mnist_dir(tmp_path / "m")
    f = root / "train-images-idx3-ubyte"
    f.write_bytes(b"\x00\x00\x00\x00" + f.read_bytes()[4:])
    with pytest.raises(DataError) as err:
        load_dataset(f"mnist:{root}")
    assert str(err.value) == (f"mnist: {f}: bad magic number 0x00000000, expected 0x00000803 (IDX images)")


def test_mnist_labels_file_with_image_magic(tmp_path):
    root, _ = make_mnist_dir(tmp_path / "m")
    write_idx(root / "train-labels-idx1-ubyte", np.zeros((30, 28, 28), np.uint8), 0x803)
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte: bad magic number 0x00000803, expected 0x00000801"):
        load_dataset(f"mnist:{root}")


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_truncated(tmp_path, gz):
    root, arrays = make_mnist_dir(tmp_path / "m")
    f = root / "t10k-images-idx3-ubyte"
    payload = f.read_bytes()[:-100]
    if gz:
        f.unlink()
        f = f.with_name(f.name + ".gz")
        payload = gzip.compress(payload)
    f.write_bytes(payload)
    with pytest.raises(DataError, match=rf"{f.name}: truncated"):
        load_dataset(f"mnist:{root}")


def test_mnist_corrupt_gzip(tmp_path):
    root, _ = make_mnist_dir(tmp_path / "m", gz=True)
    f = root / "train-images-idx3-ubyte.gz"
    f.write_bytes(f.read_bytes()[:50])
    with pytest.raises(DataError, match=rf"{f.name}: corrupt gzip data"):
        load_dataset(f"mnist:{root}")


def test_mnist_count_mismatch(tmp_path):
    root, arrays = make_mnist_dir(tmp_path / "m")
    write_idx(root / "train-labels-idx1-ubyte", arrays["train-labels-idx1-ubyte"][:25], 0x801)
    with pytest.raises(DataError, match="train-images-idx3-ubyte holds 30 images but train-labels-idx1-ubyte holds 25"):
        load_dataset(f"mnist:{root}")


def test_mnist_label_out_of_range(tmp_path):
    root, arrays = make_mnist_dir(tmp_path / "m")
    labels = arrays["t10k-labels-idx1-ubyte"].copy()
    labels[3] = 12
    write_idx(root / "t10k-labels-idx1-ubyte", labels, 0x801)
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte: label 12 out of range 0..9"):
        load_dataset(f"mnist:{root}")


@pytest.mark.skipif(not REAL_MNIST.is_dir(), reason="real MNIST not present at ../shared/data/mnist")
def test_real_mnist_loads():
    ds = load_dataset(f"mnist:{REAL_MNIST}")
    assert ds.x_train.shape == (60000, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
    assert ds.y_train.shape == (60000,) and ds.y_test.shape == (10000,)
    assert_dataset_contract(ds)
    assert torch.bincount(ds.y_train).min() > 5000  # every digit well represented
    assert ds.y_train[:5].tolist() == [5, 0, 4, 1, 9]  # the famous first labels


# ------------------------------------------------------------------------------------------
# CIFAR-10


@pytest.mark.parametrize("protocol, bytes_keys", [(2, True), (pickle.HIGHEST_PROTOCOL, False)])
def test_cifar10_loads(tmp_path, protocol, bytes_keys):
    root, batches = make_cifar_dir(tmp_path / "cifar", protocol=protocol, bytes_keys=bytes_keys)
    ds = load_dataset(f"cifar10:{root}")
    assert_dataset_contract(ds)
    assert ds.x_train.shape == (20, 3, 32, 32) and ds.x_test.shape == (4, 3, 32, 32)
    assert ds.input_shape == (3, 32, 32)
    assert ds.classes == tuple(f"class{i}" for i in range(10))
    k = (lambda s: s.encode()) if bytes_keys else (lambda s: s)
    row = batches[0][k("data")][0]
    # rows are channel-major: the first 1024 bytes are the red plane, row by row
    assert torch.allclose(ds.x_train[0, 0], torch.from_numpy(row[:1024].reshape(32, 32) / 255).float())
    assert torch.allclose(ds.x_train[0, 2, 31, 31], torch.tensor(row[3071] / 255, dtype=torch.float32))
    assert ds.y_train[:4].tolist() == batches[0][k("labels")]
    assert ds.y_test.tolist() == batches[5][k("labels")]


def test_cifar10_default_class_names_without_meta(tmp_path):
    root, _ = make_cifar_dir(tmp_path / "cifar", meta=False)
    ds = load_dataset(f"cifar10:{root}")
    assert ds.classes[0] == "airplane" and ds.classes[9] == "truck"


def test_cifar10_missing_batch(tmp_path):
    root, _ = make_cifar_dir(tmp_path / "cifar")
    (root / "data_batch_4").unlink()
    with pytest.raises(DataError, match="missing data_batch_4"):
        load_dataset(f"cifar10:{root}")


class _Evil:
    """Unpickling this would run a shell command that creates a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cifar10_refuses_code_in_pickle(tmp_path):
    root, _ = make_cifar_dir(tmp_path / "cifar")
    marker = tmp_path / "pwned"
    payload = {b"data": _Evil(marker), b"labels": [0]}
    (root / "data_batch_2").write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(DataError) as err:
        load_dataset(f"cifar10:{root}")
    assert "data_batch_2" in str(err.value) and "disallowed global" in str(err.value)
    assert not marker.exists(), "the pickle payload was executed"


def test_cifar10_refuses_plain_class_reference(tmp_path):
    root, _ = make_cifar_dir(tmp_path / "cifar")
    (root / "test_batch").write_bytes(pickle.dumps({b"data": Path, b"labels": []}))
    with pytest.raises(DataError, match=r"test_batch: refusing to unpickle disallowed global pathlib"):
        load_dataset(f"cifar10:{root}")


def test_cifar10_garbage_and_bad_shapes(tmp_path):
    root, _ = make_cifar_dir(tmp_path / "cifar")
    (root / "data_batch_1").write_bytes(b"\x80\x02garbage")
    with pytest.raises(DataError, match="data_batch_1: not a valid CIFAR-10 pickle"):
        load_dataset(f"cifar10:{root}")
    make_cifar_dir(root)
    (root / "data_batch_3").write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(DataError, match=r"data_batch_3: 'data' must be uint8 \(N, 3072\)"):
        load_dataset(f"cifar10:{root}")
    make_cifar_dir(root)
    (root / "data_batch_5").write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}))
    with pytest.raises(DataError, match="data_batch_5: 2 images but 1 labels"):
        load_dataset(f"cifar10:{root}")


# ------------------------------------------------------------------------------------------
# npz


def _npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("layout", ["NHW", "NHW1", "NHW3", "N1HW", "N3HW"])
@pytest.mark.parametrize("dtype", ["uint8", "float32", "float64"])
def test_npz_layouts(tmp_path, layout, dtype):
    rng = np.random.default_rng(0)
    c = 3 if "3" in layout else 1
    base = rng.integers(0, 256, (12, c, 8, 6), dtype=np.uint8)  # reference NCHW
    shaped = {
        "NHW": base[:, 0], "NHW1": base.transpose(0, 2, 3, 1), "NHW3": base.transpose(0, 2, 3, 1),
        "N1HW": base, "N3HW": base,
    }[layout]
    x = shaped if dtype == "uint8" else (shaped / 255).astype(dtype)
    y = np.arange(12) % 4
    f = _npz(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x[:5], y_test=y[:5])
    ds = load_dataset(f"npz:{f}")
    assert_dataset_contract(ds)
    assert ds.input_shape == (c, 8, 6)
    assert ds.classes == ("0", "1", "2", "3")
    assert torch.allclose(ds.x_train, torch.from_numpy(base / 255).float(), atol=1e-6)
    assert ds.y_test.dtype == torch.int64 and ds.y_test.tolist() == [0, 1, 2, 3, 0]


def test_npz_class_names(tmp_path):
    x = np.zeros((4, 5, 5), np.uint8)
    f = _npz(tmp_path / "d.npz", x_train=x, y_train=np.array([0, 1, 2, 1]), x_test=x, y_test=np.zeros(4, int),
             classes=np.array(["cat", "dog", "eel"]))
    assert load_dataset(f"npz:{f}").classes == ("cat", "dog", "eel")
    f = _npz(tmp_path / "e.npz", x_train=x, y_train=np.array([0, 1, 2, 3]), x_test=x, y_test=np.zeros(4, int),
             classes=np.array(["cat", "dog", "eel"]))
    with pytest.raises(DataError, match="label 3 out of range for 3 classes"):
        load_dataset(f"npz:{f}")


def _good_npz_arrays() -> dict[str, np.ndarray]:
    x = np.full((4, 5, 5), 0.5, np.float32)
    return {"x_train": x, "y_train": np.array([0, 1, 0, 1]), "x_test": x.copy(), "y_test": np.array([1, 0, 1, 0])}


def test_npz_missing_key(tmp_path):
    arrays = _good_npz_arrays()
    del arrays["y_test"]
    f = _npz(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataError, match=rf"npz: {f}: missing array\(s\) y_test"):
        load_dataset(f"npz:{f}")


@pytest.mark.parametrize("bad, word", [(np.nan, "NaN"), (np.inf, "inf")])
def test_npz_non_finite(tmp_path, bad, word):
    arrays = _good_npz_arrays()
    arrays["x_test"][2, 1, 1] = bad
    f = _npz(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataError, match=rf"d.npz: x_test contains 1 non-finite values \({word}\)"):
        load_dataset(f"npz:{f}")


def test_npz_floats_out_of_range(tmp_path):
    arrays = _good_npz_arrays()
    arrays["x_train"] = arrays["x_train"] * 255
    f = _npz(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataError, match=r"d.npz: x_train float values span \[127.5, 127.5\], expected \[0, 1\]"):
        load_dataset(f"npz:{f}")


def test_npz_other_errors(tmp_path):
    with pytest.raises(DataError, match="missing.npz: no such file"):
        load_dataset(f"npz:{tmp_path / 'missing.npz'}")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"this is not a zip")
    with pytest.raises(DataError, match="junk.npz: "):
        load_dataset(f"npz:{junk}")
    arrays = _good_npz_arrays()
    arrays["x_train"] = arrays["x_train"].astype(np.int32)
    with pytest.raises(DataError, match="x_train has dtype int32"):
        load_dataset(f"npz:{_npz(tmp_path / 'i.npz', **arrays)}")
    arrays = _good_npz_arrays()
    arrays["y_train"] = np.array([0.0, 1.0, 0.0, 1.0])
    with pytest.raises(DataError, match="y_train must be a 1-D integer array"):
        load_dataset(f"npz:{_npz(tmp_path / 'l.npz', **arrays)}")
    arrays = _good_npz_arrays()
    arrays["x_test"] = np.zeros((4, 6, 6), np.float32)
    with pytest.raises(DataError, match=r"train images are \(1, 5, 5\)"):
        load_dataset(f"npz:{_npz(tmp_path / 's.npz', **arrays)}")


def test_npz_object_array_is_not_unpickled(tmp_path):
    arrays = _good_npz_arrays()
    arrays["classes"] = np.array([_Evil(tmp_path / "pwned"), "b"], dtype=object)
    f = _npz(tmp_path / "o.npz", **arrays)
    with pytest.raises(DataError, match="o.npz"):
        load_dataset(f"npz:{f}")
    assert not (tmp_path / "pwned").exists()


# ------------------------------------------------------------------------------------------
# folder of images


def test_folder_auto_split(tmp_path):
    root = tmp_path / "imgs"
    for cls, n in (("b_dog", 10), ("a_cat", 10), ("c_eel", 5)):
        for i in range(n):
            write_png(root / cls / f"{i:02d}.png", (7, 5), value=i * 10)
    (root / "README.txt").write_text("ignored")
    (root / "a_cat" / "notes.txt").write_text("ignored")
    ds = load_dataset(f"folder:{root}")
    assert_dataset_contract(ds)
    assert ds.classes == ("a_cat", "b_dog", "c_eel")
    assert ds.input_shape == (1, 5, 7)
    assert torch.bincount(ds.y_train).tolist() == [8, 8, 4]
    assert torch.bincount(ds.y_test).tolist() == [2, 2, 1]
    again = load_dataset(f"folder:{root}")
    assert again.fingerprint == ds.fingerprint and torch.equal(again.x_test, ds.x_test)


def test_folder_train_test_subfolders_rgb(tmp_path):
    root = tmp_path / "imgs"
    for split, n in (("train", 3), ("test", 2)):
        for cls in ("x", "y"):
            for i in range(n):
                write_png(root / split / cls / f"{i}.png", (4, 6), mode="RGB", value=40 * i)
    write_png(root / "train" / "x" / "gray.png", (4, 6), mode="L", value=200)  # gray joins an RGB set
    ds = load_dataset(f"folder:{root}")
    assert_dataset_contract(ds)
    assert ds.classes == ("x", "y") and ds.input_shape == (3, 6, 4)
    assert ds.x_train.shape[0] == 7 and ds.x_test.shape[0] == 4
    assert torch.allclose(ds.x_train[0, :, 0, 0], torch.tensor([0, 255, 7]) / 255)


def test_folder_mixed_sizes(tmp_path):
    root = tmp_path / "imgs"
    for i in range(4):
        write_png(root / "a" / f"{i}.png", (8, 8))
    write_png(root / "b" / "odd.png", (9, 8))
    with pytest.raises(DataError, match=r"odd.png: image is 9x8 but .* are 8x8"):
        load_dataset(f"folder:{root}")


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        load_dataset(f"folder:{tmp_path / 'absent'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class subfolders"):
        load_dataset(f"folder:{tmp_path / 'empty'}")
    bad = tmp_path / "bad"
    write_png(bad / "a" / "0.png", (4, 4))
    write_png(bad / "a" / "1.png", (4, 4))
    (bad / "a" / "2.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"2.png: not a readable image"):
        load_dataset(f"folder:{bad}")
    half = tmp_path / "half"
    write_png(half / "train" / "a" / "0.png", (4, 4))
    with pytest.raises(DataError, match="has train/ but no test/"):
        load_dataset(f"folder:{half}")
