"""``mnist:DIR``: the four MNIST IDX files, plain or .gz."""

from . import FORMATS, Format
from ._idx import idx_loader

MNIST_CLASSES: tuple[str, ...] = tuple(str(i) for i in range(10))

FORMATS.register("mnist", Format(idx_loader("mnist", MNIST_CLASSES), path_kind="DIR"))
