"""``folder:DIR``: one subfolder per class of PNG/JPEG images, optionally under ``train/`` and ``test/``."""

from __future__ import annotations

import pathlib
import warnings
from contextlib import contextmanager
from typing import Any, Iterator, Optional

import numpy as np

from ...errors import DataError
from ..dataset import Dataset, make_dataset
from ..limits import DataLimits, resolve_limits
from ..spec import need_dir
from . import FORMATS, Format

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


@contextmanager
def _image(src: str, path: pathlib.Path, problem: str) -> Iterator[Any]:
    """`path` opened by Pillow, its decompression-bomb warning an error; any failure a DataError."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                yield im
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(f"{src}: {path}: too large to decode safely ({exc})") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{src}: {path}: {problem}: {' '.join(str(exc).split())}") from None


def _read_images(src: str, files: list[pathlib.Path], limits: DataLimits) -> np.ndarray:
    """Decode images that must all share one size -> uint8 NCHW (1 channel if all grayscale, else RGB).
    Every header is read and checked against `limits` before any image is decoded."""
    size: tuple[int, int] | None = None
    first: pathlib.Path | None = None
    gray = True
    for f in files:  # pass 1: headers only (cheap), to report the odd one out before decoding
        with _image(src, f, "not a readable image") as im:
            im_size, mode = im.size, im.mode
        limits.check_image(f"{src}: {f}", im_size[1], im_size[0])
        if size is None:
            size, first = im_size, f
        elif im_size != size:
            raise DataError(f"{src}: {f}: image is {im_size[0]}x{im_size[1]} but {first.name} "
                            f"(and the rest so far) are {size[0]}x{size[1]}; all images must share one size")
        gray = gray and mode in _GRAY_MODES
    assert size is not None
    mode = "L" if gray else "RGB"
    limits.check_images(src, [(len(files), 1 if gray else 3, size[1], size[0])])
    out = np.empty((len(files), size[1], size[0], 1 if gray else 3), dtype=np.uint8)
    for i, f in enumerate(files):
        with _image(src, f, "cannot decode image") as im:
            out[i] = np.asarray(im.convert(mode), dtype=np.uint8).reshape(out.shape[1:])
    return out.transpose(0, 3, 1, 2)


def _load_folder(path: str | None, *, cache_dir: pathlib.Path | None = None,
                 limits: Optional[DataLimits] = None) -> Dataset:
    """Load DIR/<class>/*.png|jpg (split 80/20 per class, seeded) or DIR/{train,test}/<class>/..."""
    root = need_dir("folder", path)
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
    limits = resolve_limits(limits)
    limits.check_classes(src, len(classes), "class folders")
    x_all = _read_images(src, train_files + test_files, limits)
    x_train, x_test = x_all[: len(train_files)], x_all[len(train_files):]
    return make_dataset("folder", f"folder:{path}", np.ascontiguousarray(x_train),
                         np.asarray(train_y, dtype=np.int64), np.ascontiguousarray(x_test),
                         np.asarray(test_y, dtype=np.int64), classes)



FORMATS.register("folder", Format(_load_folder, path_kind="DIR"))
