"""``npz:FILE``: arrays x_train, y_train, x_test, y_test (uint8 or float in [0, 1]; NHW, NHWC or NCHW)
and an optional string array ``classes``. Object arrays, which need pickle, are refused.

Every member's ``.npy`` header is read first and checked against the member's size in the archive
and against :class:`advcli.data.limits.DataLimits`; only then are the arrays read, each into an
array of the size its header declared.
"""

from __future__ import annotations

import math
import pathlib
import zipfile
import zlib
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from ...errors import DataError
from ..dataset import Dataset, make_dataset
from ..limits import DataLimits, resolve_limits
from ..spec import need_path
from . import FORMATS, Format

_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
_NPY_MAGIC = b"\x93NUMPY"
_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
_READ_ERRORS = (OSError, EOFError, zipfile.BadZipFile, zlib.error, ValueError, NotImplementedError)


@dataclass(frozen=True)
class _Member:
    """One ``.npy`` member of the archive, as its header describes it."""

    key: str
    info: zipfile.ZipInfo
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def count(self) -> int:
        return math.prod(self.shape)


def _header(src: str, archive: zipfile.ZipFile, info: zipfile.ZipInfo, key: str) -> _Member:
    """The member's header, checked: a plain dtype, and exactly as many bytes as the header declares."""
    try:
        with archive.open(info) as handle:
            version = np.lib.format.read_magic(handle)
            if version not in _HEADER_READERS:
                raise ValueError(f".npy format version {version[0]}.{version[1]} is not supported")
            shape, _, dtype = _HEADER_READERS[version](handle)
            header_size = handle.tell()
    except _READ_ERRORS as exc:
        raise DataError(f"{src}: {key}.npy is not a readable .npy array ({' '.join(str(exc).split())})") from None
    if dtype.hasobject:
        raise DataError(f"{src}: {key} holds Python objects (an object array, which would need pickle); "
                        "store numbers or strings")
    member = _Member(key, info, tuple(int(d) for d in shape), dtype)
    declared = member.count * dtype.itemsize
    held = info.file_size - header_size
    if held != declared:
        raise DataError(f"{src}: {key}.npy's header says {'x'.join(map(str, member.shape)) or 'a scalar'} "
                        f"{dtype} = {declared} bytes, but the member holds {held}")
    return member


def _read(src: str, archive: zipfile.ZipFile, member: _Member) -> np.ndarray:
    try:
        with archive.open(member.info) as handle:
            return np.lib.format.read_array(handle, allow_pickle=False)
    except _READ_ERRORS as exc:
        raise DataError(f"{src}: cannot read {member.key}.npy: {' '.join(str(exc).split())}") from None


def _npz_images(src: str, key: str, x: np.ndarray) -> np.ndarray:
    """Images in any accepted layout/dtype -> NCHW uint8 or float32 (checked to lie in [0, 1])."""
    x = _nchw(src, key, x)
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


def _nchw(src: str, key: str, x: Any) -> Any:
    """The (N, C, H, W) view of an image array, or the (N, C, H, W) shape of a member not yet read;
    a DataError naming the layouts accepted when it has none."""
    shape = tuple(x.shape)
    array = isinstance(x, np.ndarray)
    if len(shape) == 3:
        return x[:, None] if array else (shape[0], 1, *shape[1:])
    if len(shape) == 4:
        if shape[3] in (1, 3) and shape[1] not in (1, 3):  # channels-last
            return x.transpose(0, 3, 1, 2) if array else (shape[0], shape[3], *shape[1:3])
        if shape[1] in (1, 3):
            return x if array else shape
        raise DataError(f"{src}: {key} has shape {shape}: expected (N,H,W), (N,H,W,C) or (N,C,H,W) with C in {{1,3}}")
    raise DataError(f"{src}: {key} has shape {shape}: expected (N,H,W), (N,H,W,C) or (N,C,H,W)")


def _npz_labels(src: str, key: str, y: np.ndarray) -> np.ndarray:
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise DataError(f"{src}: {key} must be a 1-D integer array, got {y.dtype} {y.shape}")
    if y.size and y.min() < 0:
        raise DataError(f"{src}: {key} has negative label {int(y.min())}")
    return y.astype(np.int64)


def _members(src: str, archive: zipfile.ZipFile, limits: DataLimits) -> dict[str, _Member]:
    """Every array's header, checked against the limits before any array is read."""
    infos = {info.filename[:-4]: info for info in archive.infolist() if info.filename.endswith(".npy")}
    missing = [key for key in _NPZ_KEYS if key not in infos]
    if missing:
        raise DataError(f"{src}: missing array(s) {', '.join(missing)} (has: {', '.join(infos) or 'none'})")
    members = {key: _header(src, archive, infos[key], key) for key in (*_NPZ_KEYS, "classes") if key in infos}
    limits.check_images(src, [_nchw(src, key, members[key]) for key in ("x_train", "x_test")])
    if "classes" in members:
        limits.check_classes(src, members["classes"].shape[0] if members["classes"].shape else 1, "class names")
    return members


def _classes(src: str, raw: Optional[np.ndarray], top: int, limits: DataLimits) -> tuple[str, ...]:
    if raw is None:
        limits.check_classes(src, top + 1, f"labels up to {top} (and no `classes` array)")
        return tuple(str(i) for i in range(top + 1))
    if raw.ndim != 1 or raw.dtype.kind not in "US":
        raise DataError(f"{src}: classes must be a 1-D string array, got {raw.dtype} {raw.shape}")
    classes = tuple(c.decode("utf-8", "replace") if isinstance(c, bytes) else str(c) for c in raw.tolist())
    if top >= len(classes):
        raise DataError(f"{src}: label {top} out of range for {len(classes)} classes")
    return classes


def _open_archive(src: str, file: pathlib.Path) -> zipfile.ZipFile:
    with open(file, "rb") as handle:
        start = handle.read(len(_NPY_MAGIC))
    if start == _NPY_MAGIC:
        raise DataError(f"{src}: a single .npy array, not an .npz archive; save the four arrays x_train, "
                        "y_train, x_test, y_test with numpy.savez")
    try:
        return zipfile.ZipFile(file)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise DataError(f"{src}: not an .npz archive (a zip file of .npy arrays): {exc}") from None


def _load_npz(path: str | None, *, cache_dir: pathlib.Path | None = None,
              limits: Optional[DataLimits] = None) -> Dataset:
    """Load x_train/y_train/x_test/y_test (and optional string `classes`) from a .npz file."""
    limits = resolve_limits(limits)
    file = need_path("npz", path, "file")
    src = f"npz: {file}"
    if not file.is_file():
        raise DataError(f"{src}: no such file")
    with _open_archive(src, file) as archive:
        members = _members(src, archive, limits)
        raw = {key: _read(src, archive, member) for key, member in members.items()}
    x_train = _npz_images(src, "x_train", raw["x_train"])
    x_test = _npz_images(src, "x_test", raw["x_test"])
    y_train = _npz_labels(src, "y_train", raw["y_train"])
    y_test = _npz_labels(src, "y_test", raw["y_test"])
    if x_train.dtype != x_test.dtype:
        raise DataError(f"{src}: x_train is {x_train.dtype} but x_test is {x_test.dtype}; use one dtype")
    top = int(max(y_train.max(initial=0), y_test.max(initial=0)))
    classes = _classes(src, raw.get("classes"), top, limits)
    return make_dataset("npz", f"npz:{path}", x_train, y_train, x_test, y_test, classes)


FORMATS.register("npz", Format(_load_npz, path_kind="FILE"))
