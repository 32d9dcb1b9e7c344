"""Model registry: architectures shaped from the data, all taking pixel-space inputs in [0, 1]."""

from __future__ import annotations

from enum import Enum
from typing import Callable

import torch
from torch import nn

from .errors import AdvcliError
from .layers import FewChannelConv2d

InputShape = tuple[int, int, int]


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


class Normalize(nn.Module):
    """Per-channel standardisation inside the model, so attacks stay in pixel space."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class PreActBlock(nn.Module):
    """Pre-activation residual block (He et al., 2016), as used by Wong et al. (2020)."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(torch.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet18(nn.Module):
    """PreAct ResNet-18 for small colour images (the architecture of Wong et al., 2020)."""

    CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
    CIFAR_STD = (0.2471, 0.2435, 0.2616)

    def __init__(self, input_shape: InputShape, num_classes: int) -> None:
        super().__init__()
        channels = input_shape[0]
        mean = self.CIFAR_MEAN if channels == 3 else (0.5,) * channels
        std = self.CIFAR_STD if channels == 3 else (0.5,) * channels
        self.normalize = Normalize(mean, std)
        self.conv1 = nn.Conv2d(channels, 64, 3, stride=1, padding=1, bias=False)
        layers: list[nn.Module] = []
        in_planes = 64
        for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            for block_stride in (stride, 1):
                layers.append(PreActBlock(in_planes, planes, block_stride))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(512)
        self.linear = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(self.conv1(self.normalize(x)))
        out = torch.relu(self.bn(out))
        out = torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1)
        return self.linear(out)


ModelFactory = Callable[[InputShape, int], nn.Module]

MODELS: dict[str, ModelFactory] = {
    "seed-cnn": SeedCNN,
    "mnist-small": SmallMNISTCNN,
    "preact-resnet18": PreActResNet18,
}

ModelName = Enum("ModelName", {name: name for name in MODELS}, type=str)  # type: ignore[misc]

DEFAULT_MODEL = "seed-cnn"


def build_model(name: str, input_shape: InputShape, num_classes: int) -> nn.Module:
    """Build a registered architecture for inputs of `input_shape` (C, H, W) and `num_classes`."""
    try:
        factory = MODELS[name]
    except KeyError:
        raise AdvcliError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}") from None
    channels, height, width = input_shape
    if channels < 1 or height < 2 or width < 2:
        raise AdvcliError(f"model {name}: input shape {tuple(input_shape)} is too small")
    if num_classes < 2:
        raise AdvcliError(f"model {name}: needs at least 2 classes, got {num_classes}")
    return factory(tuple(input_shape), num_classes)
