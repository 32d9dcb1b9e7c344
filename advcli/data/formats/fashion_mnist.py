"""``fashion-mnist:DIR``: Fashion-MNIST's four IDX files, plain or .gz."""

from . import FORMATS, Format
from ._idx import idx_loader

FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

FORMATS.register("fashion-mnist", Format(idx_loader("fashion-mnist", FASHION_MNIST_CLASSES), path_kind="DIR"))
