"""The fx front end: which models become bound graphs, and the one-line errors for those that cannot."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import advcli
from advcli.errors import AdvcliError
from advcli.models.layers import FewChannelConv2d
from advcli.verification import build_graph, trace


class _Wrapped(nn.Module):
    """`inner` applied after a small convolution, so the unsupported piece sits mid-graph."""

    def __init__(self, inner) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.inner = inner

    def forward(self, x):
        return self.inner(self.conv(x)).flatten(1)


class _Function(nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


UNSUPPORTED = [
    (_Wrapped(nn.Softmax(dim=1)), "Softmax"),
    (_Wrapped(nn.LeakyReLU()), "LeakyReLU"),
    (_Wrapped(nn.Sigmoid()), "Sigmoid"),
    (_Wrapped(_Function(torch.tanh)), "tanh"),
    (_Wrapped(_Function(lambda x: x * x)), "mul of two variable tensors"),
    (_Wrapped(_Function(lambda x: 1 / x)), "division by a variable tensor"),
    (_Wrapped(_Function(lambda x: x.view(2, -1))), "mix samples"),
    (_Wrapped(nn.MaxPool2d(2, ceil_mode=True)), "MaxPool2d with dilation, ceil_mode"),
    (_Wrapped(nn.AdaptiveAvgPool2d(2)), "AdaptiveAvgPool2d to 2"),
]


@pytest.mark.parametrize("model,named", UNSUPPORTED, ids=[named for _, named in UNSUPPORTED])
def test_unsupported_operations_raise_one_line_errors_naming_them(one_thread, model, named):
    with pytest.raises(AdvcliError) as caught:
        build_graph(model.eval(), (1, 4, 4))
    message = str(caught.value)
    assert named in message and "\n" not in message
    assert "supported:" in message or "mix samples" in message


def test_value_dependent_control_flow_is_refused(one_thread):
    def branchy(x):
        return x if x.sum() > 0 else -x

    with pytest.raises(AdvcliError, match="depends on input values"):
        build_graph(_Wrapped(_Function(branchy)).eval(), (1, 4, 4))


def test_seed_cnn_layout_branch_is_resolved_and_standard_layers_stay_whole(one_thread):
    model = advcli.build_model("seed-cnn", (1, 12, 12), 10).eval()
    gm = trace(model, (1, 12, 12))
    modules = [type(gm.get_submodule(str(node.target))) for node in gm.graph.nodes if node.op == "call_module"]
    assert FewChannelConv2d in modules and nn.MaxPool2d in modules
    graph = build_graph(model, (1, 12, 12))
    labels = [node.op.label for node in graph.nodes[1:]]
    assert labels == ["Conv2d", "ReLU", "Conv2d", "MaxPool2d", "ReLU", "reshape", "Linear"]
    x = torch.rand(5, 1, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(graph.forward(x), model(x))


@pytest.mark.parametrize("name,shape", [("seed-cnn", (1, 12, 12)), ("mnist-small", (1, 12, 12)),
                                        ("preact-resnet18", (3, 8, 8))])
def test_advcli_models_convert_and_reproduce_their_outputs(one_thread, name, shape):
    model = advcli.build_model(name, shape, 10).eval()
    graph = build_graph(model, shape)
    x = torch.rand(3, *shape)
    with torch.no_grad():
        torch.testing.assert_close(graph.forward(x), model(x), atol=1e-5, rtol=1e-5)


def test_a_layer_that_is_not_what_its_class_promises_is_refused(one_thread):
    class ShiftedConv(nn.Conv2d):
        def forward(self, x):
            return super().forward(x) + 1.0

    model = nn.Sequential(ShiftedConv(1, 2, 3), nn.Flatten()).eval()
    with pytest.raises(AdvcliError, match="does not reproduce the model"):
        build_graph(model, (1, 5, 5))


def test_graph_module_with_functional_layers_is_accepted(one_thread):
    """The shape an ONNX converter produces: get_attr constants and torch functions, no modules."""
    import torch.fx as fx

    root = nn.Module()
    root.weight = nn.Parameter(torch.randn(3, 1, 3, 3))
    root.mean = torch.tensor(0.5)
    graph = fx.Graph()
    x = graph.placeholder("x")
    centred = graph.call_function(torch.sub, (x, graph.get_attr("mean")))
    conv = graph.call_function(F.conv2d, (centred, graph.get_attr("weight")), {"padding": 1})
    pooled = graph.call_function(F.max_pool2d, (graph.call_function(F.relu, (conv,)), 2))
    graph.output(graph.call_method("flatten", (graph.call_function(F.adaptive_avg_pool2d, (pooled, 1)), 1)))
    gm = fx.GraphModule(root, graph)
    bound = build_graph(gm, (1, 6, 6))
    assert [node.op.label for node in bound.nodes[1:]] == [
        "elementwise affine", "Conv2d", "ReLU", "MaxPool2d", "AdaptiveAvgPool2d", "reshape"]


def test_gemm_as_addmm_is_a_linear_layer(one_thread):
    import torch.fx as fx

    root = nn.Module()
    root.weight = nn.Parameter(torch.randn(16, 3))
    root.bias = nn.Parameter(torch.randn(3))
    graph = fx.Graph()
    x = graph.placeholder("x")
    flat = graph.call_function(torch.flatten, (x, 1))
    graph.output(graph.call_function(torch.addmm, (graph.get_attr("bias"), flat, graph.get_attr("weight"))))
    gm = fx.GraphModule(root, graph)
    bound = build_graph(gm, (1, 4, 4))
    assert [node.op.label for node in bound.nodes[1:]] == ["reshape", "Linear"]
    inputs = torch.rand(3, 1, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(bound.forward(inputs), gm(inputs))


def test_graph_follows_parameter_updates(one_thread):
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2)).eval()
    graph = build_graph(model, (1, 2, 2))
    x = torch.rand(2, 1, 2, 2)
    with torch.no_grad():
        model[1].weight.mul_(3)
        torch.testing.assert_close(graph.forward(x), model(x))
    assert build_graph(model, (1, 2, 2)) is graph
