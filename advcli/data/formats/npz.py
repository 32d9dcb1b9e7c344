"""``npz:FILE``: arrays x_train, y_train, x_test, y_test (uint8 or float in [0, 1]; NHW, NHWC or NCHW)
and an optional string array ``classes``. Object arrays, which need pickle, are refused."""

from __future__ import annotations

import pathlib
import zipfile
import zlib
from typing import Optional

import numpy as np

from ...errors import DataError
from ..dataset import Dataset, make_dataset
from ..spec import need_path
from . import FORMATS, Format, Progress

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


def _load_npz(path: str | None, *, cache_dir: pathlib.Path | None = None,
              on_progress: Optional[Progress] = None) -> Dataset:
    """Load x_train/y_train/x_test/y_test (and optional string `classes`) from a .npz file."""
    file = need_path("npz", path, "file")
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
    return make_dataset("npz", f"npz:{path}", x_train, y_train, x_test, y_test, classes)



FORMATS.register("npz", Format(_load_npz, path_kind="FILE"))
