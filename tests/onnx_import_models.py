"""Small third-party-style classifiers for the onnx_import tests: torch modules to export, and files
written node by node the way other converters write them (Identity-passed weights, NHWC with
Transpose, an old opset with a fixed batch)."""

from __future__ import annotations

import numpy as np
import torch
from onnx import TensorProto, helper
from onnx_import_helpers import tensor
from torch import nn


def _randomise_batch_norms(model: nn.Module, seed: int) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                size = module.num_features
                module.running_mean.copy_(torch.rand(size, generator=generator) - 0.5)
                module.running_var.copy_(torch.rand(size, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(size, generator=generator) + 0.5)
                module.bias.copy_(torch.rand(size, generator=generator) - 0.5)
    return model.eval()


class BatchNormCNN(nn.Module):
    """Conv - ReLU - BatchNorm - MaxPool - Conv - ReLU - flatten by view - Linear - BatchNorm1d - ReLU - Linear.
    The BatchNorms follow ReLUs, so no exporter folds them into a convolution."""

    def __init__(self, channels: int = 1, size: int = 12, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 6, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.fc1 = nn.Linear(8 * (size // 2) ** 2, 16)
        self.bn2 = nn.BatchNorm1d(16)
        self.fc2 = nn.Linear(16, classes)
        _randomise_batch_norms(self, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.max_pool2d(self.bn1(torch.relu(self.conv1(x))), 2)
        x = torch.relu(self.conv2(x))
        x = torch.relu(self.bn2(self.fc1(x.view(x.size(0), -1))))
        return self.fc2(x)


class SmallResNet(nn.Module):
    """A stem and two residual blocks (identity and strided 1x1 shortcut), then global average pool and
    Linear, or (`flatten_to`: the features' spatial size) a Linear on the flattened features."""

    def __init__(self, channels: int = 3, classes: int = 10, flatten_to: int = 0) -> None:
        super().__init__()
        self.flatten_to = flatten_to
        self.stem = nn.Conv2d(channels, 8, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(8)
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.shortcut = nn.Conv2d(8, 16, 1, stride=2)
        self.fc = nn.Linear(16 * max(flatten_to, 1) ** 2, classes)
        _randomise_batch_norms(self, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn0(self.stem(x)))
        x = torch.relu(self.bn1(self.conv1(x))) + x
        x = torch.relu(self.conv2(x) + self.shortcut(x))
        if self.flatten_to:
            return self.fc(x.reshape(x.shape[0], -1))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class Normalised(nn.Module):
    """Per-channel (x - mean) / std at the front, inside the file."""

    def __init__(self, inner: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.inner = inner
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner((x - self.mean) / self.std)


class ChannelsLast(nn.Module):
    """Takes (N, H, W, C) as Keras models do."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.permute(0, 3, 1, 2))


class Byte255(nn.Module):
    """Takes pixels in 0..255 (float, or uint8 when exported with a uint8 example)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.float() / 255.0)


class WithSoftmax(nn.Module):
    def __init__(self, inner: nn.Module, explicit: bool = False) -> None:
        super().__init__()
        self.inner, self.explicit = inner, explicit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.inner(x)
        if self.explicit:  # written out by hand: no Softmax node for the converter to find
            exp = torch.exp(logits - logits.max(1, keepdim=True).values)
            return exp / exp.sum(1, keepdim=True)
        return torch.softmax(logits, 1)


def identity_weights_file(seed: int = 0, classes: int = 10, opset: int = 13) -> bytes:
    """A torchvision-style classifier whose weights reach Conv and Gemm through Identity nodes."""
    rng = np.random.default_rng(seed)

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.3).astype(np.float32)

    node = helper.make_node
    nodes = [
        node("Identity", ["conv.weight"], ["w1"]), node("Identity", ["conv.bias"], ["b1"]),
        node("Conv", ["x", "w1", "b1"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]), node("Relu", ["c"], ["r"]),
        node("GlobalAveragePool", ["r"], ["g"]), node("Flatten", ["g"], ["f"], axis=1),
        node("Identity", ["fc.weight"], ["w2"]), node("Identity", ["w2"], ["w2b"]),
        node("Gemm", ["f", "w2b", "fc.bias"], ["y"], transB=1),
    ]
    initializers = [tensor("conv.weight", w(8, 3, 3, 3)), tensor("conv.bias", w(8)), tensor("fc.weight", w(classes, 8)),
                    tensor("fc.bias", w(classes))]
    return _file(nodes, ["N", 3, 12, 12], initializers, opset)


def keras_style_file(conv_w: np.ndarray, conv_b: np.ndarray, fc_w: np.ndarray, fc_b: np.ndarray,
                     size: int, opset: int = 13) -> bytes:
    """A tf2onnx-style file: NHWC input with a symbolic batch, Transpose to NCHW around the Conv (SAME,
    stride 2), Relu, back to NHWC, Reshape to [-1, features] by a constant shape, MatMul + Add, Softmax.
    `fc_w` is (classes, features) with features in NHWC order."""
    node = helper.make_node
    nodes = [
        node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
        node("Conv", ["t", "k", "kb"], ["c"], kernel_shape=list(conv_w.shape[2:]), auto_pad="SAME_UPPER", strides=[2, 2]),
        node("Relu", ["c"], ["r"]),
        node("Transpose", ["r"], ["back"], perm=[0, 2, 3, 1]),
        node("Reshape", ["back", "flat_shape"], ["flat"]),
        node("MatMul", ["flat", "dense"], ["d"]), node("Add", ["d", "dense_bias"], ["logits"]),
        node("Softmax", ["logits"], ["y"], axis=-1),
    ]
    initializers = [tensor("k", conv_w), tensor("kb", conv_b), tensor("flat_shape", np.array([-1, fc_w.shape[1]], np.int64)),
                    tensor("dense", fc_w.T.copy()), tensor("dense_bias", fc_b)]
    return _file(nodes, ["unk__12", size, size, conv_w.shape[1]], initializers, opset)


def matlab_style_file(mean_image: np.ndarray, conv_w: np.ndarray, conv_b: np.ndarray, fc_w: np.ndarray,
                      fc_b: np.ndarray, opset: int = 9) -> bytes:
    """An exportONNXNetwork-style file: opset 9, batch fixed at 1, the mean image subtracted in the
    graph, Conv, BatchNormalization, Relu, MaxPool, Flatten, Gemm, Softmax."""
    node = helper.make_node
    channels, height, width = mean_image.shape
    out = conv_w.shape[0]
    nodes = [
        node("Sub", ["x", "mean"], ["z"]),
        node("Conv", ["z", "k", "kb"], ["c"], kernel_shape=list(conv_w.shape[2:]), pads=[1, 1, 1, 1]),
        node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"], epsilon=1e-5),
        node("Relu", ["n"], ["r"]),
        node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        node("Flatten", ["p"], ["f"], axis=1),
        node("Gemm", ["f", "fc", "fcb"], ["logits"], transB=1),
        node("Softmax", ["logits"], ["y"], axis=1),
    ]
    ones, zeros = np.ones(out, np.float32), np.zeros(out, np.float32)
    initializers = [tensor("mean", mean_image[None].astype(np.float32)), tensor("k", conv_w), tensor("kb", conv_b),
                    tensor("s", ones), tensor("b", zeros), tensor("m", zeros), tensor("v", ones),
                    tensor("fc", fc_w), tensor("fcb", fc_b)]
    return _file(nodes, [1, channels, height, width], initializers, opset)


def _file(nodes: list, input_dims: list, initializers: list, opset: int) -> bytes:
    graph = helper.make_graph(nodes, "classifier", [helper.make_tensor_value_info("x", TensorProto.FLOAT, input_dims)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=initializers)
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="third-party")
    model.ir_version = helper.find_min_ir_version_for(opsets)
    return model.SerializeToString()
