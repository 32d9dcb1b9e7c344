"""Building a registered architecture for a dataset's shape and classes."""

from __future__ import annotations

from torch import nn

from ..errors import AdvcliError
from .architectures import MODELS, InputShape


def build_model(name: str, input_shape: InputShape, num_classes: int) -> nn.Module:
    """Build a registered architecture for inputs of `input_shape` (C, H, W) and `num_classes`."""
    factory = MODELS.get(name)
    channels, height, width = input_shape
    if channels < 1 or height < 2 or width < 2:
        raise AdvcliError(f"model {name}: input shape {tuple(input_shape)} is too small")
    if num_classes < 2:
        raise AdvcliError(f"model {name}: needs at least 2 classes, got {num_classes}")
    return factory(tuple(input_shape), num_classes)
