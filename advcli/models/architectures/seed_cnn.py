"""``seed-cnn``: the reference example's network."""

from __future__ import annotations

import torch
from torch import nn

from ..layers import FewChannelConv2d
from . import MODELS, InputShape


class SeedCNN(nn.Module):
    """The reference network: conv3x3·32 – ReLU – conv3x3·64 – ReLU – maxpool2 – fully connected.

    No input normalisation, as in the reference example (inputs are already in [0, 1]). The second
    ReLU runs after the max-pool: the two commute exactly (outputs and gradients alike, ties
    included), and the ReLU then touches a quarter of the values. Parameter names are unchanged.
    """

    def __init__(self, input_shape: InputShape, num_classes: int) -> None:
        super().__init__()
        channels, height, width = input_shape
        self.features = nn.Sequential(
            FewChannelConv2d(channels, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=3, padding=1),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.ReLU(),
        )
        self.classifier = nn.Linear(64 * (height // 2) * (width // 2), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.features(x)
        if features.dim() == 4 and not features.is_contiguous() and features.is_contiguous(
                memory_format=torch.channels_last):
            # Flatten channels-last features in their memory order (a view, not a copy) and take the
            # classifier's weights in that order: the same function, without a layout conversion
            # forward and back.
            channels, height, width = features.shape[1:]
            weight = self.classifier.weight.view(-1, channels, height, width).permute(0, 2, 3, 1).flatten(1)
            return nn.functional.linear(features.permute(0, 2, 3, 1).flatten(1), weight, self.classifier.bias)
        return self.classifier(torch.flatten(features, 1))


MODELS.register("seed-cnn", SeedCNN)
