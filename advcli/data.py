"""Datasets for advcli: the built-in synthetic ``digits`` set and loaders for common file formats.

A dataset is named by a *spec* string, ``FORMAT`` or ``FORMAT:PATH`` (e.g. ``digits``,
``mnist:~/data/mnist``, ``npz:my.npz``).  Every loader returns a :class:`Dataset` holding
float32 NCHW images in [0, 1] and int64 labels, plus a content fingerprint so runs can record
exactly which data they used.  Every problem with the input raises :class:`DataError` with one
line naming the file and what is wrong.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import json
import logging
import math
import os
import pathlib
import pickle
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from advcli.errors import DataError

if TYPE_CHECKING:  # Pillow is imported lazily at run time: only digits and folder need it
    from PIL import Image

__all__ = [
    "DEFAULT_DATA",
    "DIGITS_VERSION",
    "Dataset",
    "LOADERS",
    "default_cache_dir",
    "digit_fonts",
    "generate_digits",
    "load_dataset",
    "parse_data_spec",
]

_log = logging.getLogger(__name__)

DEFAULT_DATA = "digits"

#: Bump whenever the digits generator changes its output, so stale caches are not reused.
DIGITS_VERSION = 3
#: Seed of the built-in ``digits`` set: fixed so every user gets the same data.
DIGITS_SEED = 0
DIGITS_N_TRAIN = 5000
DIGITS_N_TEST = 5000

MNIST_CLASSES: tuple[str, ...] = tuple(str(i) for i in range(10))
FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)


# --------------------------------------------------------------------------------------------
# Dataset


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


def _make_dataset(
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


# --------------------------------------------------------------------------------------------
# Spec parsing and the registry


class Loader(Protocol):
    """A format loader: takes the PATH part of the spec (None when absent)."""

    def __call__(self, path: str | None, *, cache_dir: pathlib.Path | None = None) -> Dataset: ...


def parse_data_spec(spec: str) -> tuple[str, str | None]:
    """Split ``FORMAT[:PATH]`` into (format, path); the format is lower-cased, an empty path is None."""
    if not isinstance(spec, str) or not spec.strip():
        raise DataError(f"empty data spec; use one of: {', '.join(_known_specs())}")
    name, sep, path = spec.strip().partition(":")
    name = name.strip().lower()
    return name, (path if sep and path else None)


def _known_specs() -> list[str]:
    return [f"{n}:{_PATH_KIND[n]}" if n in _PATH_KIND else n for n in LOADERS]


def _need_path(name: str, path: str | None, kind: str) -> pathlib.Path:
    """The PATH part of the spec as a Path, or a DataError saying how to give it."""
    if path is None:
        article = "an" if kind[0] in "aeiou" else "a"
        raise DataError(f"{name} needs {article} {kind}: use {name}:{_PATH_KIND[name]}")
    return pathlib.Path(path).expanduser()


def _downloaded(name: str, cache_dir: pathlib.Path | None) -> pathlib.Path:
    """The dataset's folder in the cache, downloaded and verified on first use (advcli.downloads)."""
    from advcli.downloads import fetch_dataset

    return fetch_dataset(name, cache_dir=cache_dir if cache_dir is not None else default_cache_dir())


def _spec(name: str, path: str | None) -> str:
    """The spec a dataset records: ``name`` for the download cache, ``name:PATH`` for a folder."""
    return name if path is None else f"{name}:{path}"


def _need_dir(name: str, path: str | None) -> pathlib.Path:
    d = _need_path(name, path, "folder")
    if not d.exists():
        raise DataError(f"{name}: {d}: no such folder")
    if not d.is_dir():
        raise DataError(f"{name}: {d}: not a folder")
    return d


def load_dataset(spec: str = DEFAULT_DATA, *, cache_dir: pathlib.Path | None = None) -> Dataset:
    """Load the dataset named by ``spec`` (see module docstring); cache_dir holds ``digits`` and the
    downloads of ``mnist``, ``fashion-mnist`` and ``cifar10`` given without a PATH."""
    name, path = parse_data_spec(spec)
    loader = LOADERS.get(name)
    if loader is None:
        raise DataError(f"unknown data format {name!r} in {spec!r}; known formats: "
                        f"{', '.join(_known_specs())}")
    return loader(path, cache_dir=cache_dir)


# --------------------------------------------------------------------------------------------
# Built-in synthetic digits


_DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_RENDER_SIZE = 64       # font size (px) glyphs are rendered at before the transform
_CANVAS = 56            # transform canvas, 2x the output; box-reduced to 28 for anti-aliasing
_OUT = 28
_MAX_OUTLINE = 1        # widest extra outline (px at render size) added to thicken a glyph
_MAX_STEM = 10.0        # boldest stroke (px at render size) the thickening aims for
_BLUR = (0.5, 1.0)      # Gaussian blur sigma range, in output pixels: soft, pen-like edges
_PEAK = (0.7, 1.0)      # brightest-pixel range: digits of varying ink intensity
_MARGIN = 7.0           # canvas pixels kept free at each border, so no glyph (or its blur) touches the edge
_MAX_SHIFT = 4.0        # canvas pixels the glyph centre may move off centre (2 px at 28x28)


def _fonts_dir() -> pathlib.Path:
    """matplotlib's bundled TTF folder, found without importing matplotlib (slow, and not needed)."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or spec.origin is None:
        raise DataError("digits: matplotlib is not installed; its fonts are what the digits are drawn with")
    return pathlib.Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf"


def _maps_real_digits(font_path: pathlib.Path) -> bool:
    """True when the font's cmap maps '0'..'9' to digit glyphs (not symbols like cmsy10's '∞')."""
    from fontTools.ttLib import TTFont, TTLibError  # a matplotlib dependency

    try:
        with TTFont(str(font_path), lazy=True) as tt:
            cmap = tt.getBestCmap() or {}
    except (TTLibError, OSError, struct.error) as exc:
        _log.debug("skipping font %s: %s", font_path.name, exc)
        return False
    for d, word in enumerate(_DIGIT_NAMES):
        glyph = cmap.get(0x30 + d)
        if glyph is None:
            return False
        ok = (glyph.lower().startswith(word) or glyph.lower() in (f"uni{0x30 + d:04x}", f"u{0x30 + d:04x}"))
        if not ok:
            return False
    return True


def _renders_distinct_digits(font_path: pathlib.Path) -> bool:
    """True when '0'..'9' all render with ink and differ from each other (rules out .notdef boxes)."""
    from PIL import ImageFont

    try:
        font = ImageFont.truetype(str(font_path), 32)
    except OSError as exc:
        _log.debug("skipping font %s: %s", font_path.name, exc)
        return False
    seen: set[bytes] = set()
    for d in range(10):
        mask = font.getmask(str(d))
        if mask.size[0] == 0 or mask.size[1] == 0 or max(mask) == 0:
            return False
        key = bytes(mask) + repr(mask.size).encode()
        if key in seen:
            return False
        seen.add(key)
    return True


@lru_cache(maxsize=1)
def digit_fonts() -> tuple[pathlib.Path, ...]:
    """The matplotlib-shipped TTF fonts with real, distinct digit glyphs, sorted by file name."""
    paths = sorted(_fonts_dir().glob("*.ttf"), key=lambda p: p.name)
    fonts = tuple(p for p in paths if _renders_distinct_digits(p) and _maps_real_digits(p))
    if not fonts:
        raise DataError(f"digits: {_fonts_dir()}: no usable TTF fonts with digit glyphs found")
    return fonts


def _fonts_key() -> str:
    """Short hash of the available fonts and the Pillow version, which both shape the generated bytes.

    Part of the cache file name, so a matplotlib/Pillow upgrade never reuses a stale cache; cheap
    (file names and sizes only) so a cache hit does not pay for scanning the fonts.
    """
    import PIL

    h = hashlib.sha256(PIL.__version__.encode())
    folder = _fonts_dir()
    try:
        for p in sorted(folder.glob("*.ttf"), key=lambda p: p.name):
            h.update(f"{p.name}:{p.stat().st_size};".encode())
    except OSError as exc:
        raise DataError(f"digits: {folder}: cannot list fonts: {exc}") from exc
    return h.hexdigest()[:12]


@lru_cache(maxsize=None)
def _glyph(font_path: pathlib.Path, digit: int, stroke: int) -> Image.Image:
    """The digit drawn white-on-black at _RENDER_SIZE, outlined ``stroke`` px thicker, cropped to its ink."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(font_path), _RENDER_SIZE)
    side = 2 * _RENDER_SIZE + 4 * stroke
    img = Image.new("L", (side, side), 0)
    ImageDraw.Draw(img).text((side / 2, side / 2), str(digit), font=font, fill=255,
                             anchor="mm", stroke_width=stroke, stroke_fill=255)
    box = img.getbbox()
    if box is None:  # cannot happen for fonts that passed digit_fonts()
        raise DataError(f"digits: {font_path}: digit {digit} renders empty")
    return img.crop(box)


@lru_cache(maxsize=None)
def _stem_width(font_path: pathlib.Path) -> float:
    """Typical stroke thickness of the font's digits at render size: ink area / half its outline."""
    from PIL import ImageFilter

    widths = []
    for d in range(10):
        g = _glyph(font_path, d, 0)
        ink = np.asarray(g) > 127
        inner = np.asarray(g.filter(ImageFilter.MinFilter(3))) > 127
        edge = int((ink & ~inner).sum())
        widths.append(2.0 * ink.sum() / edge if edge else 1.0)
    return float(np.mean(widths))


def _outline_width(font_path: pathlib.Path, u: float) -> int:
    """Outline (px) that moves the font's stroke to a weight drawn uniformly from [own stem, _MAX_STEM].

    Weight is relative to the font so thin fonts may become bold, while bold fonts are not
    thickened into blobs whose counters close (an '8' is then hard to tell from a '0').
    """
    stem = _stem_width(font_path)
    target = stem + u * max(0.0, _MAX_STEM - stem)
    return int(min(_MAX_OUTLINE, max(0, round((target - stem) / 2))))


def _render_split(n: int, seed: np.random.SeedSequence,
                  fonts: tuple[pathlib.Path, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Render n balanced, shuffled digit images (uint8 (n,28,28)) and their int64 labels."""
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n, dtype=np.int64) % 10)
    font_idx = rng.integers(0, len(fonts), size=n)
    weights = rng.uniform(0.0, 1.0, size=n)      # thin .. bold, relative to each font
    angles = np.deg2rad(rng.uniform(-45.0, 45.0, size=n))
    heights = rng.uniform(0.60, 0.80, size=n)    # glyph height / canvas, before the fit-in-frame cap
    aspects = rng.uniform(0.90, 1.10, size=n)    # horizontal stretch
    shifts = rng.uniform(-1.0, 1.0, size=(n, 2))  # fraction of the free margin to move by
    blurs = rng.uniform(*_BLUR, size=n) * (_CANVAS / _OUT)  # sigma in canvas pixels
    peaks = rng.uniform(*_PEAK, size=n).astype(np.float32)
    out = np.empty((n, _OUT, _OUT), dtype=np.uint8)
    for i in range(n):
        font = fonts[font_idx[i]]
        g = _glyph(font, int(labels[i]), _outline_width(font, float(weights[i])))
        w, h = g.size
        c, s = math.cos(angles[i]), math.sin(angles[i])
        sx_unit, sy_unit = aspects[i] * w, h     # glyph extent per unit scale
        rot_w = abs(c) * sx_unit + abs(s) * sy_unit
        rot_h = abs(s) * sx_unit + abs(c) * sy_unit
        room = _CANVAS - 2 * _MARGIN
        k = min(heights[i] * _CANVAS / h, room / rot_w, room / rot_h)
        free_x = min((room - k * rot_w) / 2, _MAX_SHIFT)
        free_y = min((room - k * rot_h) / 2, _MAX_SHIFT)
        tx = _CANVAS / 2 + shifts[i, 0] * free_x
        ty = _CANVAS / 2 + shifts[i, 1] * free_y
        # Forward: out = t + R(angle) @ diag(k*aspect, k) @ (in - centre); PIL wants the inverse.
        kx, ky = k * aspects[i], k
        a, b = c / kx, s / kx
        d, e = -s / ky, c / ky
        cx, cy = w / 2, h / 2
        coeffs = (a, b, cx - a * tx - b * ty, d, e, cy - d * tx - e * ty)
        canvas = g.transform((_CANVAS, _CANVAS), Image.Transform.AFFINE, coeffs,
                             resample=Image.Resampling.BILINEAR, fillcolor=0)
        canvas = canvas.filter(ImageFilter.GaussianBlur(float(blurs[i])))
        out[i] = np.asarray(canvas.reduce(_CANVAS // _OUT), dtype=np.uint8)
    # Stretch each image so its brightest pixel is its drawn peak intensity: thin strokes stay as
    # visible as bold ones, and ink intensity varies from image to image rather than by typeface.
    brightest = out.reshape(n, -1).max(axis=1).astype(np.float32)
    scale = np.float32(255.0) * peaks / np.maximum(brightest, np.float32(1.0))
    out = np.minimum(np.rint(out.astype(np.float32) * scale[:, None, None]), 255).astype(np.uint8)
    return out, labels


def generate_digits(
    n_train: int = DIGITS_N_TRAIN, n_test: int = DIGITS_N_TEST, *, seed: int = DIGITS_SEED
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Synthesize (x_train, y_train, x_test, y_test): uint8 (N,28,28) light-on-dark digits, int64 labels.

    Glyphs of 0-9 from many typefaces, randomly rotated (±45°), scaled, stretched, shifted,
    thickened, blurred (soft pen-like edges) and drawn at varying ink intensity, in the spirit of
    MATLAB's digitTrain4DArrayData.  Train and test come from two
    independent random streams spawned from ``seed``; output is byte-identical for a given seed
    (and font set / Pillow version).
    """
    if n_train < 0 or n_test < 0:
        raise DataError(f"digits: image counts must be >= 0, got n_train={n_train}, n_test={n_test}")
    fonts = digit_fonts()
    train_seq, test_seq = np.random.SeedSequence(seed).spawn(2)
    x_train, y_train = _render_split(n_train, train_seq, fonts)
    x_test, y_test = _render_split(n_test, test_seq, fonts)
    return x_train, y_train, x_test, y_test


def default_cache_dir() -> pathlib.Path:
    """$ADVCLI_CACHE_DIR, else $XDG_CACHE_HOME/advcli, else ~/.cache/advcli."""
    if os.environ.get("ADVCLI_CACHE_DIR"):
        return pathlib.Path(os.environ["ADVCLI_CACHE_DIR"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return pathlib.Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "advcli"
    return pathlib.Path.home() / ".cache" / "advcli"


_DIGITS_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _read_digits_cache(path: pathlib.Path, n_train: int, n_test: int) -> tuple[np.ndarray, ...] | None:
    """The cached arrays, or None when the file is absent or unreadable/malformed (then regenerate)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = tuple(np.array(z[k]) for k in _DIGITS_KEYS)
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        _log.warning("digits cache %s is unreadable (%s); regenerating", path, exc)
        return None
    expected = (((n_train, _OUT, _OUT), np.uint8), ((n_train,), np.int64),
                ((n_test, _OUT, _OUT), np.uint8), ((n_test,), np.int64))
    for arr, (shape, dtype) in zip(arrays, expected):
        if arr.shape != shape or arr.dtype != dtype:
            _log.warning("digits cache %s holds %s %s, expected %s %s; regenerating",
                         path, arr.dtype, arr.shape, np.dtype(dtype), shape)
            return None
    if any(y.size and (y.min() < 0 or y.max() > 9) for y in arrays[1::2]):
        _log.warning("digits cache %s has labels outside 0..9; regenerating", path)
        return None
    return arrays


def _write_digits_cache(path: pathlib.Path, arrays: tuple[np.ndarray, ...]) -> None:
    """Write the arrays atomically (temp file in the same folder, then os.replace); skip if not writable."""
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **dict(zip(_DIGITS_KEYS, arrays)))
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        _log.info("not caching digits at %s: %s", path, exc)
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass  # best effort: the temp file may never have been created


def _load_digits(path: str | None, *, cache_dir: pathlib.Path | None = None) -> Dataset:
    """The built-in digits set (seed 0, 5000 + 5000), from the cache or freshly generated."""
    if path is not None:
        raise DataError(f"digits takes no path (got {path!r}): use digits")
    seed, n_train, n_test = DIGITS_SEED, DIGITS_N_TRAIN, DIGITS_N_TEST
    folder = pathlib.Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    cache = folder / f"digits-v{DIGITS_VERSION}-seed{seed}-{n_train}x{n_test}-{_fonts_key()}.npz"
    arrays = _read_digits_cache(cache, n_train, n_test)
    if arrays is None:
        arrays = generate_digits(n_train, n_test, seed=seed)
        _write_digits_cache(cache, arrays)
    x_train, y_train, x_test, y_test = arrays
    return _make_dataset("digits", "digits", x_train[:, None], y_train, x_test[:, None], y_test,
                         MNIST_CLASSES)


# --------------------------------------------------------------------------------------------
# MNIST / Fashion-MNIST (IDX files)


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


def _idx_loader(name: str, classes: tuple[str, ...]) -> Loader:
    """A loader for an MNIST-layout folder of four IDX files."""

    def load(path: str | None, *, cache_dir: pathlib.Path | None = None) -> Dataset:
        folder = _need_dir(name, path) if path is not None else _downloaded(name, cache_dir)
        x_train, y_train = _load_idx_split(name, folder, "train")
        x_test, y_test = _load_idx_split(name, folder, "test")
        if x_train.shape[1:] != x_test.shape[1:]:
            raise DataError(f"{name}: {folder}: train images are {x_train.shape[2]}x{x_train.shape[3]} "
                            f"but t10k images are {x_test.shape[2]}x{x_test.shape[3]}")
        return _make_dataset(name, _spec(name, path), x_train, y_train, x_test, y_test, classes)

    load.__doc__ = f"Load {name} from a folder of the four IDX files (plain or .gz), or the download cache."
    return load


# --------------------------------------------------------------------------------------------
# CIFAR-10 (python-version pickled batches)


def _latin1_bytes(text: str, encoding: str = "utf-8") -> bytes:
    """Stand-in for ``_codecs.encode`` in pickles: only the latin-1 str->bytes step protocol 2 uses."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode is only allowed for latin1 text, got {encoding!r}")
    return text.encode("latin1")


def _numpy_reconstructors() -> dict[tuple[str, str], Any]:
    """The only globals a CIFAR batch pickle may name: numpy's array/dtype reconstruction."""
    try:
        from numpy._core.multiarray import _reconstruct
        from numpy._core.numeric import _frombuffer
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
        from numpy.core.numeric import _frombuffer  # type: ignore[no-redef]
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_bytes,  # how Python 3 writes bytes in protocol-2 pickles
    }
    for mod in ("numpy.core", "numpy._core"):
        allowed[(f"{mod}.multiarray", "_reconstruct")] = _reconstruct
        allowed[(f"{mod}.numeric", "_frombuffer")] = _frombuffer  # protocol-5 array pickles
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy array-reconstruction globals, so a file cannot run code."""

    def __init__(self, file: io.BufferedIOBase, *, source: str) -> None:
        super().__init__(file, encoding="bytes")
        self._source = source
        self._allowed = _numpy_reconstructors()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise DataError(f"{self._source}: refusing to unpickle disallowed global "
                            f"{module}.{name} (only numpy arrays are allowed)") from None

    def persistent_load(self, pid: Any) -> Any:
        raise DataError(f"{self._source}: refusing to unpickle persistent id (only numpy arrays are allowed)")


def _unpickle(path: pathlib.Path) -> Any:
    """Load a CIFAR pickle through the restricted unpickler."""
    source = f"cifar10: {path}"
    try:
        with path.open("rb") as f:
            return _RestrictedUnpickler(f, source=source).load()
    except OSError as exc:
        raise DataError(f"{source}: cannot read: {exc.strerror or exc}") from exc
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, struct.error, OverflowError, UnicodeDecodeError) as exc:
        raise DataError(f"{source}: not a valid CIFAR-10 pickle: {type(exc).__name__}: {exc}") from exc


def _get(d: Mapping[Any, Any], key: str) -> Any:
    """d[key] for bytes keys (the original Python-2 pickles) or str keys (re-pickled files)."""
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    raise KeyError(key)


def _load_cifar_batch(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> (uint8 (N,3,32,32), int64 labels)."""
    obj = _unpickle(path)
    if not isinstance(obj, dict):
        raise DataError(f"cifar10: {path}: expected a pickled dict, got {type(obj).__name__}")
    try:
        data, labels = _get(obj, "data"), _get(obj, "labels")
    except KeyError as exc:
        raise DataError(f"cifar10: {path}: missing key {exc.args[0]!r}") from None
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"cifar10: {path}: 'data' must be uint8 (N, 3072), got {desc}")
    try:
        y = np.asarray(labels)
    except (TypeError, ValueError) as exc:
        raise DataError(f"cifar10: {path}: 'labels' is not a list of integers: {exc}") from exc
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise DataError(f"cifar10: {path}: 'labels' must be a list of integers, got {y.dtype} {y.shape}")
    if y.shape[0] != data.shape[0]:
        raise DataError(f"cifar10: {path}: {data.shape[0]} images but {y.shape[0]} labels")
    if y.size and (y.min() < 0 or y.max() > 9):
        raise DataError(f"cifar10: {path}: labels span {y.min()}..{y.max()}, expected 0..9")
    return data.reshape(-1, 3, 32, 32), y.astype(np.int64)


def _load_cifar10(path: str | None, *, cache_dir: pathlib.Path | None = None) -> Dataset:
    """Load CIFAR-10 from the python-version batches (data_batch_1..5, test_batch, batches.meta)."""
    folder = _need_dir("cifar10", path) if path is not None else _downloaded("cifar10", cache_dir)
    if not (folder / "data_batch_1").exists() and (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"  # the extracted archive's own subfolder
    files = [folder / f"data_batch_{i}" for i in range(1, 6)] + [folder / "test_batch"]
    for f in files:
        if not f.is_file():
            raise DataError(f"cifar10: {folder}: missing {f.name}")
    train = [_load_cifar_batch(f) for f in files[:5]]
    x_test, y_test = _load_cifar_batch(files[5])
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    classes = CIFAR10_CLASSES
    meta = folder / "batches.meta"
    if meta.is_file():
        obj = _unpickle(meta)
        try:
            names = _get(obj, "label_names") if isinstance(obj, dict) else None
        except KeyError:
            names = None
        if not isinstance(names, list) or len(names) != 10 or \
                not all(isinstance(n, (bytes, str)) for n in names):
            raise DataError(f"cifar10: {meta}: expected 'label_names', a list of 10 strings")
        classes = tuple(n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in names)
    return _make_dataset("cifar10", _spec("cifar10", path), x_train, y_train, x_test, y_test, classes)


# --------------------------------------------------------------------------------------------
# npz


_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _npz_images(src: str, key: str, x: np.ndarray) -> np.ndarray:
    """Images in any accepted layout/dtype -> NCHW uint8 or float32 (checked to lie in [0, 1])."""
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        if x.shape[3] in (1, 3) and x.shape[1] not in (1, 3):
            x = x.transpose(0, 3, 1, 2)  # channels-last -> NCHW
        elif x.shape[1] not in (1, 3):
            raise DataError(f"{src}: {key} has shape {x.shape}: expected (N,H,W), (N,H,W,C) or "
                            f"(N,C,H,W) with C in {{1,3}}")
    else:
        raise DataError(f"{src}: {key} has shape {x.shape}: expected (N,H,W), (N,H,W,C) or (N,C,H,W)")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if x.dtype.kind != "f":
        raise DataError(f"{src}: {key} has dtype {x.dtype}: expected uint8 (0..255) or float in [0, 1]")
    bad = ~np.isfinite(x)
    if bad.any():
        kinds = sorted({"NaN" if np.isnan(v) else "inf" for v in x[bad][:1000]})
        raise DataError(f"{src}: {key} contains {int(bad.sum())} non-finite values ({'/'.join(kinds)})")
    if x.size:
        lo, hi = float(x.min()), float(x.max())
        if lo < 0.0 or hi > 1.0:
            raise DataError(f"{src}: {key} float values span [{lo:g}, {hi:g}], expected [0, 1] "
                            "(divide by 255 or store uint8)")
    return np.ascontiguousarray(x, dtype=np.float32)


def _npz_labels(src: str, key: str, y: np.ndarray) -> np.ndarray:
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise DataError(f"{src}: {key} must be a 1-D integer array, got {y.dtype} {y.shape}")
    if y.size and y.min() < 0:
        raise DataError(f"{src}: {key} has negative label {int(y.min())}")
    return y.astype(np.int64)


def _load_npz(path: str | None, *, cache_dir: pathlib.Path | None = None) -> Dataset:
    """Load x_train/y_train/x_test/y_test (and optional string `classes`) from a .npz file."""
    file = _need_path("npz", path, "file")
    src = f"npz: {file}"
    if not file.is_file():
        raise DataError(f"{src}: no such file")
    try:
        with np.load(file, allow_pickle=False) as z:
            missing = [k for k in _NPZ_KEYS if k not in z.files]
            if missing:
                raise DataError(f"{src}: missing array(s) {', '.join(missing)} "
                                f"(has: {', '.join(z.files) or 'none'})")
            raw = {k: z[k] for k in _NPZ_KEYS}
            raw_classes = z["classes"] if "classes" in z.files else None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"{src}: cannot read as .npz: {exc}") from exc
    except ValueError as exc:  # e.g. object arrays, which need pickle
        raise DataError(f"{src}: unreadable array (object arrays are not allowed): {exc}") from exc
    x_train = _npz_images(src, "x_train", raw["x_train"])
    x_test = _npz_images(src, "x_test", raw["x_test"])
    y_train = _npz_labels(src, "y_train", raw["y_train"])
    y_test = _npz_labels(src, "y_test", raw["y_test"])
    if x_train.dtype != x_test.dtype:
        raise DataError(f"{src}: x_train is {x_train.dtype} but x_test is {x_test.dtype}; use one dtype")
    top = int(max(y_train.max(initial=0), y_test.max(initial=0)))
    if raw_classes is None:
        classes = tuple(str(i) for i in range(top + 1))
    else:
        if raw_classes.ndim != 1 or raw_classes.dtype.kind not in "US":
            raise DataError(f"{src}: classes must be a 1-D string array, got {raw_classes.dtype} "
                            f"{raw_classes.shape}")
        classes = tuple(c.decode("utf-8", "replace") if isinstance(c, bytes) else str(c)
                        for c in raw_classes.tolist())
        if top >= len(classes):
            raise DataError(f"{src}: label {top} out of range for {len(classes)} classes")
    return _make_dataset("npz", f"npz:{path}", x_train, y_train, x_test, y_test, classes)


# --------------------------------------------------------------------------------------------
# Folder of images


_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
_GRAY_MODES = {"1", "L", "LA"}
_FOLDER_SPLIT_SEED = 0
_FOLDER_TEST_FRACTION = 0.2


def _subdirs(folder: pathlib.Path) -> list[pathlib.Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: p.name)


def _class_images(src: str, class_dir: pathlib.Path) -> list[pathlib.Path]:
    files = sorted((p for p in class_dir.iterdir()
                    if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in _IMAGE_SUFFIXES),
                   key=lambda p: p.name)
    if not files:
        raise DataError(f"{src}: {class_dir}: no PNG/JPEG images in class folder")
    return files


def _read_images(src: str, files: list[pathlib.Path]) -> np.ndarray:
    """Decode images that must all share one size -> uint8 NCHW (1 channel if all grayscale, else RGB)."""
    from PIL import Image, UnidentifiedImageError

    size: tuple[int, int] | None = None
    first: pathlib.Path | None = None
    gray = True
    for f in files:  # pass 1: headers only (cheap), to report the odd one out before decoding
        try:
            with Image.open(f) as im:
                im_size, mode = im.size, im.mode
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"{src}: {f}: not a readable image: {exc}") from exc
        if size is None:
            size, first = im_size, f
        elif im_size != size:
            raise DataError(f"{src}: {f}: image is {im_size[0]}x{im_size[1]} but {first.name} "
                            f"(and the rest so far) are {size[0]}x{size[1]}; all images must share one size")
        gray = gray and mode in _GRAY_MODES
    assert size is not None
    mode = "L" if gray else "RGB"
    out = np.empty((len(files), size[1], size[0], 1 if gray else 3), dtype=np.uint8)
    for i, f in enumerate(files):
        try:
            with Image.open(f) as im:
                out[i] = np.asarray(im.convert(mode), dtype=np.uint8).reshape(out.shape[1:])
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"{src}: {f}: cannot decode image: {exc}") from exc
    return out.transpose(0, 3, 1, 2)


def _load_folder(path: str | None, *, cache_dir: pathlib.Path | None = None) -> Dataset:
    """Load DIR/<class>/*.png|jpg (split 80/20 per class, seeded) or DIR/{train,test}/<class>/..."""
    root = _need_dir("folder", path)
    src = f"folder: {root}"
    train_dir, test_dir = root / "train", root / "test"
    if train_dir.is_dir() != test_dir.is_dir():
        have, lack = ("train", "test") if train_dir.is_dir() else ("test", "train")
        raise DataError(f"{src}: has {have}/ but no {lack}/; give both or neither")
    train_files: list[pathlib.Path] = []
    test_files: list[pathlib.Path] = []
    train_y: list[int] = []
    test_y: list[int] = []
    if train_dir.is_dir():
        class_dirs = _subdirs(train_dir)
        if not class_dirs:
            raise DataError(f"{src}: {train_dir}: no class subfolders")
        classes = tuple(p.name for p in class_dirs)
        for label, d in enumerate(class_dirs):
            files = _class_images(src, d)
            train_files += files
            train_y += [label] * len(files)
        index = {c: i for i, c in enumerate(classes)}
        for d in _subdirs(test_dir):
            if d.name not in index:
                raise DataError(f"{src}: {d}: class {d.name!r} is not among train/ classes "
                                f"({', '.join(classes)})")
            files = _class_images(src, d)
            test_files += files
            test_y += [index[d.name]] * len(files)
    else:
        class_dirs = _subdirs(root)
        if not class_dirs:
            raise DataError(f"{src}: no class subfolders (expected DIR/<class>/*.png or DIR/train, DIR/test)")
        classes = tuple(p.name for p in class_dirs)
        for label, d in enumerate(class_dirs):
            files = _class_images(src, d)
            rng = np.random.default_rng([_FOLDER_SPLIT_SEED, label])
            order = rng.permutation(len(files))
            n_test = int(round(len(files) * _FOLDER_TEST_FRACTION))
            if len(files) >= 2:
                n_test = max(1, n_test)
            test_idx = set(order[:n_test].tolist())
            for j, f in enumerate(files):
                (test_files if j in test_idx else train_files).append(f)
                (test_y if j in test_idx else train_y).append(label)
    if not test_files:
        raise DataError(f"{src}: no test images (need train/ and test/, or at least 2 images per class)")
    x_all = _read_images(src, train_files + test_files)
    x_train, x_test = x_all[: len(train_files)], x_all[len(train_files):]
    return _make_dataset("folder", f"folder:{path}", np.ascontiguousarray(x_train),
                         np.asarray(train_y, dtype=np.int64), np.ascontiguousarray(x_test),
                         np.asarray(test_y, dtype=np.int64), classes)


# --------------------------------------------------------------------------------------------
# Registry


#: Format name -> loader of the spec's PATH part.  The CLI lists these in its help.
LOADERS: dict[str, Loader] = {
    "digits": _load_digits,
    "mnist": _idx_loader("mnist", MNIST_CLASSES),
    "fashion-mnist": _idx_loader("fashion-mnist", FASHION_MNIST_CLASSES),
    "cifar10": _load_cifar10,
    "npz": _load_npz,
    "folder": _load_folder,
}

#: What the PATH part of each format's spec names (formats absent here take no path).
_PATH_KIND: dict[str, str] = {
    "mnist": "DIR",
    "fashion-mnist": "DIR",
    "cifar10": "DIR",
    "npz": "FILE",
    "folder": "DIR",
}
