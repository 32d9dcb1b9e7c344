"""``mnist-small``: the small MNIST network of Wong et al. (2020)."""

from __future__ import annotations

import torch
from torch import nn

from ...errors import AdvcliError
from ..layers import FewChannelConv2d
from . import MODELS, InputShape


class SmallMNISTCNN(nn.Module):
    """The small MNIST network of Wong et al. (2020): conv4x4·16 stride 2 – ReLU – conv4x4·32 stride 2 –
    ReLU – fully connected 100 – ReLU – fully connected. About 25 times cheaper than the reference
    network, and the one behind their published MNIST figures, so results compare like for like."""

    def __init__(self, input_shape: InputShape, num_classes: int) -> None:
        super().__init__()
        channels, height, width = input_shape
        reduced = [_strided_size(_strided_size(size)) for size in (height, width)]
        if min(reduced) < 1:
            raise AdvcliError(f"model mnist-small: input shape {tuple(input_shape)} is too small (needs 4x4 or more)")
        self.features = nn.Sequential(
            FewChannelConv2d(channels, 16, kernel_size=4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, kernel_size=4, stride=2, padding=1),
            nn.ReLU(),
        )
        self.classifier = nn.Sequential(
            nn.Linear(32 * reduced[0] * reduced[1], 100),
            nn.ReLU(),
            nn.Linear(100, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def _strided_size(size: int) -> int:
    """Output length of a 4-wide, stride-2, padding-1 convolution."""
    return (size + 2 - 4) // 2 + 1


MODELS.register("mnist-small", SmallMNISTCNN)
