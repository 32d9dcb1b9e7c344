"""Tiny deterministic models for the verification tests: each exercises some supported layer types,
small enough that bounds and sampling take milliseconds; plus helpers to sample the input box."""

from __future__ import annotations

import functools
from typing import Callable

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from advcli.models import Normalize, build_model


def _seeded(seed: int) -> None:
    torch.manual_seed(seed)


class ConvNet(nn.Module):
    """Conv (stride 1, padding 1) - ReLU - Conv (stride 2) - ReLU - Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 3, 3, padding=1)
        self.conv2 = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.fc = nn.Linear(4 * 3 * 3, 4)

    def forward(self, x):
        return self.fc(torch.flatten(torch.relu(self.conv2(torch.relu(self.conv1(x)))), 1))


class PoolNet(nn.Module):
    """Max pooling before a ReLU (as seed-cnn), and an overlapping, padded max pooling inside the
    input windows of a later convolution."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 3, 3, padding=1)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(3, 4, 3, padding=1)
        self.pool2 = nn.MaxPool2d(3, stride=2, padding=1)
        self.conv3 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 2 * 2, 4)

    def forward(self, x):
        x = torch.relu(self.pool1(self.conv1(x)))
        x = F.relu(self.pool2(self.conv2(x)))
        x = torch.relu(self.conv3(x))
        return self.fc(x.view(x.size(0), -1))


class AvgNet(nn.Module):
    """A depthwise convolution and average pooling inside a later convolution's input windows,
    adaptive average pooling to 1x1, nn.Flatten."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.depthwise = nn.Conv2d(4, 4, 3, padding=1, groups=4)
        self.pool = nn.AvgPool2d(2)
        self.conv2 = nn.Conv2d(4, 5, 3, padding=1)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 4))
        with torch.no_grad():  # wider pre-activations, so that the last ReLU has unstable neurons too
            self.depthwise.weight.mul_(3)
            self.conv2.weight.mul_(3)

    def forward(self, x):
        x = self.pool(torch.relu(self.depthwise(torch.relu(self.conv1(x)))))
        return self.head(torch.relu(self.conv2(x)))


class NormNet(nn.Module):
    """Normalisation inside the model, BatchNorm2d and BatchNorm1d (with non-trivial statistics), dropout."""

    def __init__(self) -> None:
        super().__init__()
        self.normalize = Normalize((0.3,), (0.2,))
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn2d = nn.BatchNorm2d(4)
        self.fc1 = nn.Linear(4 * 6 * 6, 8)
        self.bn1d = nn.BatchNorm1d(8)
        self.dropout = nn.Dropout(0.3)
        self.fc2 = nn.Linear(8, 4)
        for bn in (self.bn2d, self.bn1d):
            with torch.no_grad():
                bn.running_mean.uniform_(-0.5, 0.5)
                bn.running_var.uniform_(0.5, 2.0)
                bn.weight.uniform_(-1.5, 1.5)
                bn.bias.uniform_(-0.5, 0.5)

    def forward(self, x):
        x = torch.relu(self.bn2d(self.conv(self.normalize(x))))
        x = torch.relu(self.bn1d(self.fc1(x.flatten(1))))
        return self.fc2(self.dropout(x))


class ResidualNet(nn.Module):
    """A residual sum, a difference of branches, arithmetic with constants, identity layers."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(2, 4, 3, padding=1)
        self.conv_a = nn.Conv2d(4, 4, 3, padding=1)
        self.conv_b = nn.Conv2d(4, 4, 3, padding=1)
        self.shortcut = nn.Conv2d(4, 4, 1, stride=2)
        self.down = nn.Conv2d(4, 4, 3, stride=2, padding=1)
        self.identity = nn.Identity()
        self.fc = nn.Linear(4 * 3 * 3, 4)
        self.register_buffer("offset", torch.linspace(-0.2, 0.2, 4).view(1, 4, 1, 1))

    def forward(self, x):
        x = torch.relu(self.stem(1 - x) * 2 + self.offset)
        x = torch.relu(x + self.conv_b(torch.relu(self.conv_a(x))))
        x = torch.relu(self.down(x) - self.shortcut(x) / 3)
        return self.fc(torch.reshape(-self.identity(x), (x.shape[0], -1)))


class RearrangeNet(nn.Module):
    """Elements moved around, as input contracts and ONNX Transposes do: a channel flip (BGR), a
    permute to channels-last with a ReLU there and back (NHWC), a transpose of the spatial axes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.fc = nn.Linear(3 * 6 * 6, 4)
        self.register_buffer("shift", torch.tensor([-0.3, 0.2]))

    def forward(self, x):
        x = torch.relu(x.flip(1).permute(0, 2, 3, 1) * 2 + self.shift)
        x = torch.transpose(torch.permute(x, (0, 3, 1, 2)), 2, 3)
        return self.fc(torch.relu(self.conv(x)).flatten(1))


class Mlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 10), nn.ReLU(),
                                    nn.Linear(10, 4))

    def forward(self, x):
        return self.layers(x)


def fx_graph_module() -> fx.GraphModule:
    """A GraphModule as an ONNX converter builds one: get_attr weights and torch functions."""
    root = nn.Module()
    root.w1 = nn.Parameter(torch.randn(3, 1, 3, 3) * 0.6)
    root.b1 = nn.Parameter(torch.randn(3) * 0.1)
    root.w2 = nn.Parameter(torch.randn(4, 3 * 4 * 4) * 0.3)
    root.b2 = nn.Parameter(torch.randn(4) * 0.1)
    graph = fx.Graph()
    x = graph.placeholder("x")
    conv = graph.call_function(F.conv2d, (x, graph.get_attr("w1"), graph.get_attr("b1")), {"stride": 2, "padding": 1})
    relu = graph.call_function(F.relu, (conv,))
    flat = graph.call_function(torch.flatten, (relu, 1))
    graph.output(graph.call_function(F.linear, (flat, graph.get_attr("w2"), graph.get_attr("b2"))))
    return fx.GraphModule(root, graph)


ZOO: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "conv": (ConvNet, (2, 6, 6)),
    "pool": (PoolNet, (1, 8, 8)),
    "avg": (AvgNet, (1, 8, 8)),
    "norm": (NormNet, (1, 6, 6)),
    "residual": (ResidualNet, (2, 6, 6)),
    "mlp": (Mlp, (1, 4, 4)),
    "rearrange": (RearrangeNet, (2, 6, 6)),
    "fx-graph": (fx_graph_module, (1, 8, 8)),
    "seed-cnn": (lambda: build_model("seed-cnn", (1, 10, 10), 5), (1, 10, 10)),
    "mnist-small": (lambda: build_model("mnist-small", (1, 12, 12), 5), (1, 12, 12)),
}


def zoo_model(name: str, seed: int = 0) -> tuple[nn.Module, tuple[int, ...]]:
    factory, shape = ZOO[name]
    _seeded(seed)
    return factory().eval(), shape


def box_points(x: torch.Tensor, eps: float, count: int, generator: torch.Generator) -> torch.Tensor:
    """[count, N, ...]: half uniform in the box around each x, half random corners of it."""
    lower, upper = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    shape = (count, *x.shape)
    uniform = torch.rand(shape, generator=generator)
    corners = (torch.rand(shape, generator=generator) < 0.5).to(x.dtype)
    weights = torch.cat([uniform[:count // 2], corners[count // 2:]])
    return lower + weights * (upper - lower)


def margins(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """z_y - z_j for every class j, [N, K]."""
    return logits.gather(1, y[:, None]) - logits


def quadrant_data(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Four classes of 1x6x6 images: a bright 3x3 quadrant (the class) over dim noise."""
    generator = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (count,), generator=generator)
    x = torch.rand(count, 1, 6, 6, generator=generator) * 0.3
    for label in range(4):
        rows, cols = divmod(label, 2)
        chosen = y == label
        x[chosen, :, 3 * rows:3 * rows + 3, 3 * cols:3 * cols + 3] += 0.5
    return x, y


class SmallCertifiable(nn.Module):
    """Conv - BatchNorm - ReLU - Linear - ReLU - Linear on 1x6x6 inputs, 4 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(4 * 6 * 6, 16), nn.ReLU(), nn.Linear(16, 4))

    def forward(self, x):
        return self.classifier(self.features(x))


def ibp_train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, seed: int = 0) -> None:
    """IBP training (Gowal et al.): eps ramped up over the first half of the steps, kappa 1 -> 0.5."""
    from advcli.verification import ibp_loss

    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    for step in range(steps):
        ramp = min(1.0, step / (steps / 2))
        batch = torch.randint(0, len(x), (64,), generator=generator)
        result = ibp_loss(model, x[batch], y[batch], eps * ramp, kappa=1 - 0.5 * ramp)
        optimiser.zero_grad()
        result.loss.backward()
        optimiser.step()
    model.eval()


TRAIN_EPS = 0.1


@functools.lru_cache(maxsize=1)
def certified_model() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A :class:`SmallCertifiable` IBP-trained at eps 0.1 for 200 steps (once per session), with test data."""
    torch.manual_seed(0)
    model = SmallCertifiable()
    x, y = quadrant_data(512, 0)
    ibp_train(model, x, y, TRAIN_EPS, steps=200)
    x_test, y_test = quadrant_data(128, 1)
    return model, x_test, y_test
