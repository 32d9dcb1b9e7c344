"""Architectures: one file per model, each registering its factory under the file's name.

To add one, add ``advcli/models/architectures/<name>.py`` defining an ``nn.Module`` built as
``Model(input_shape, num_classes)`` (pixel inputs in [0, 1]; normalisation inside the model) and call
``MODELS.register("<name>", Model)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from ...registry import Registry

if TYPE_CHECKING:
    from torch import nn

InputShape = tuple[int, int, int]
ModelFactory = Callable[[InputShape, int], "nn.Module"]

MODELS: Registry[ModelFactory] = Registry("model", param="arch", package=__name__,
                                          order=("seed-cnn", "mnist-small", "preact-resnet18"))

DEFAULT_MODEL = "seed-cnn"
