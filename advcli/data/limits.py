"""What a data file may make advcli allocate, checked against the file's own headers before anything
large is allocated or decoded.

A data file states the size of its contents (IDX and ``.npy`` headers, PNG headers, pickle lengths)
before it holds them, and compressed files expand. Each loader checks those declared sizes first
against the file itself (a header claiming more than the file holds is malformed) and then against
these limits, so a crafted or mistaken file is refused with one line before it can take the
machine's memory. The defaults are generous for image classification; each can be raised:

* ``ADVCLI_MAX_DATA_BYTES`` (default 8 GiB): the decoded dataset, both splits, as float32;
* ``ADVCLI_MAX_IMAGE_PIXELS`` (default 2048 x 2048 = 4,194,304): height x width of one image;
* ``ADVCLI_MAX_CLASSES`` (default 100,000): the classes of one dataset or model.

Values are integers, optionally with a unit (``16GiB``, ``500MB``, ``4M``).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Iterable, Optional

from ..errors import DataError

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
FLOAT_BYTES = 4  # every dataset is held as float32
ENVIRONMENT = {"max_bytes": "ADVCLI_MAX_DATA_BYTES", "max_image_pixels": "ADVCLI_MAX_IMAGE_PIXELS",
               "max_classes": "ADVCLI_MAX_CLASSES"}
_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
          "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": KiB, "mib": MiB, "gib": GiB, "tib": 1 << 40}
_AMOUNT = re.compile(r"\s*([0-9][0-9_,]*)\s*([a-zA-Z]*)\s*")


def format_bytes(count: int) -> str:
    """``1.5 GiB``, ``512 MiB``, ``700 bytes``."""
    for unit, size in (("TiB", 1 << 40), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if count >= size:
            return f"{count / size:.3g} {unit}"
    return f"{count} bytes"


def _amount(variable: str, text: str) -> int:
    match = _AMOUNT.fullmatch(text)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _UNITS:
        raise DataError(f"${variable} must be a positive integer, optionally with a unit (16GiB, 500MB), "
                        f"got {text!r}")
    value = int(match.group(1).replace("_", "").replace(",", "")) * _UNITS[unit]
    if value < 1:
        raise DataError(f"${variable} must be at least 1, got {text!r}")
    return value


@dataclass(frozen=True)
class DataLimits:
    """Upper bounds on a dataset: its decoded size as float32 (`max_bytes`), the pixels of one image
    (`max_image_pixels`, height x width) and its number of classes (`max_classes`)."""

    max_bytes: int = 8 * GiB
    max_image_pixels: int = 2048 * 2048
    max_classes: int = 100_000

    @classmethod
    def current(cls) -> "DataLimits":
        """The defaults, with any limit the environment sets (``ADVCLI_MAX_*``) in its place."""
        values = {name: _amount(variable, os.environ[variable]) for name, variable in ENVIRONMENT.items()
                  if os.environ.get(variable, "").strip()}
        return cls(**values)

    def check_image(self, source: str, height: int, width: int) -> None:
        """One image of `height` x `width` pixels is within the limit."""
        if height * width > self.max_image_pixels:
            raise DataError(f"{source}: images of {width}x{height} pixels are larger than the limit of "
                            f"{self.max_image_pixels:,} pixels per image (raise it with "
                            f"${ENVIRONMENT['max_image_pixels']})")

    def check_images(self, source: str, shapes: Iterable[tuple[int, ...]]) -> None:
        """Image arrays of `shapes` (N, C, H, W), together one dataset, are within the limits."""
        shapes = [tuple(int(d) for d in shape) for shape in shapes]
        for shape in shapes:
            self.check_image(source, shape[-2], shape[-1])
        total = sum(math.prod(shape) for shape in shapes) * FLOAT_BYTES
        if total > self.max_bytes:
            described = " + ".join("x".join(map(str, shape)) for shape in shapes)
            raise DataError(f"{source}: {described} images take {format_bytes(total)} as float32, more than the "
                            f"limit of {format_bytes(self.max_bytes)} (raise it with ${ENVIRONMENT['max_bytes']})")

    def check_classes(self, source: str, count: int, what: str = "classes") -> None:
        if count > self.max_classes:
            raise DataError(f"{source}: {what} make {count:,} classes, more than the limit of {self.max_classes:,} "
                            f"(raise it with ${ENVIRONMENT['max_classes']})")

    def check_file_bytes(self, source: str, size: int) -> None:
        """Files of `size` bytes, to be read whole (pickles), are within the limit; what they decode
        to is checked by :meth:`check_images` once their arrays' shapes are known."""
        if size > self.max_bytes:
            raise DataError(f"{source}: {format_bytes(size)} of files to read, more than the limit of "
                            f"{format_bytes(self.max_bytes)} (raise it with ${ENVIRONMENT['max_bytes']})")


def resolve_limits(limits: Optional[DataLimits]) -> DataLimits:
    """`limits`, or the current ones (defaults and environment) when None."""
    return limits if limits is not None else DataLimits.current()
