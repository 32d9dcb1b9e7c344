"""Tracing a torch model into a torch.fx graph whose nodes are standard torch layers and functions.

:class:`BoundTracer` keeps every standard ``torch.nn`` layer, and every subclass of one (advcli's
FewChannelConv2d is a Conv2d), as a single leaf node, so that the bound front end sees "Conv2d"
rather than the subclass's internals. Python control flow that asks only about the layout or shape
of a tensor (seed-cnn's ``features.dim() == 4 and not features.is_contiguous()`` fast path for
channels-last features) is answered on a concrete example input of the verified shape and the
default layout, which is what bound propagation computes on; a condition that depends on tensor
values is refused, since the traced branch would then hold only for some inputs. A model whose
convolution weights are held channels-last (as training holds them) is traced with them in the
default layout, put back afterwards: the layout changes which kernels run, not the function.
"""

from __future__ import annotations

import builtins
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from ..errors import AdvcliError

LEAF_TYPES: tuple[type[nn.Module], ...] = (
    nn.Conv2d, nn.Linear, nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten,
    nn.BatchNorm1d, nn.BatchNorm2d, nn.Identity, nn.Dropout,
)
"""Modules kept whole, subclasses included (other ``torch.nn`` modules are leaves by fx's own rule)."""

METADATA_METHODS = frozenset({"dim", "ndimension", "size", "numel", "nelement", "is_contiguous", "stride"})
METADATA_ATTRIBUTES = frozenset({"shape", "ndim", "dtype", "device", "is_cuda", "layout"})

EXAMPLE_BATCH = 2


def is_metadata_query(node: fx.Node) -> bool:
    """Whether `node` asks about a tensor's shape, layout, dtype or device rather than its values."""
    if node.op == "call_method":
        return node.target in METADATA_METHODS
    return (node.op == "call_function" and node.target is builtins.getattr and len(node.args) == 2
            and node.args[1] in METADATA_ATTRIBUTES)


def _depends_on_values(node: fx.Node) -> bool:
    """Whether a path from `node` back to a placeholder avoids every metadata query."""
    seen: set[fx.Node] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        if current in seen or is_metadata_query(current):
            continue
        seen.add(current)
        if current.op == "placeholder":
            return True
        stack.extend(current.all_input_nodes)
    return False


class BoundTracer(fx.Tracer):
    """fx tracer that keeps standard layers whole and answers layout/shape questions concretely."""

    def __init__(self, example: torch.Tensor) -> None:
        super().__init__()
        self.example = example
        self._evaluating = False

    def call_module(self, m: nn.Module, forward: Any, args: Any, kwargs: Any) -> Any:
        if self._evaluating:  # a concrete evaluation runs modules as they are, recording nothing
            return forward(*args, **kwargs)
        return super().call_module(m, forward, args, kwargs)

    def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict) -> Any:
        if self._evaluating:
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, LEAF_TYPES) or super().is_leaf_module(m, module_qualified_name)

    def to_bool(self, obj: fx.Proxy) -> bool:
        node = obj.node
        if _depends_on_values(node):
            raise AdvcliError(f"verification cannot trace control flow that depends on input values (node {node.name})")
        self._evaluating = True
        try:
            return bool(self._evaluate(node))
        finally:
            self._evaluating = False

    def _evaluate(self, target: fx.Node) -> Any:
        """The value of `target` (built so far) on the example input."""
        values: dict[fx.Node, Any] = {}
        for node in self.graph.nodes:
            args = fx.node.map_arg(node.args, lambda n: values[n])
            kwargs = fx.node.map_arg(node.kwargs, lambda n: values[n])
            if node.op == "placeholder":
                values[node] = self.example
            elif node.op == "get_attr":
                values[node] = fetch_attribute(self.root, str(node.target))
            elif node.op == "call_module":
                values[node] = self.root.get_submodule(str(node.target))(*args, **kwargs)
            elif node.op == "call_function":
                values[node] = node.target(*args, **kwargs)
            elif node.op == "call_method":
                values[node] = getattr(args[0], str(node.target))(*args[1:], **kwargs)
            if node is target:
                return values[node]
        raise AdvcliError(f"verification: node {target.name} is not in the traced graph")


def fetch_attribute(root: nn.Module, target: str) -> Any:
    """``root.a.b.c`` for the dotted name ``"a.b.c"`` (an fx get_attr target)."""
    value: Any = root
    for part in target.split("."):
        value = getattr(value, part)
    return value


def trace(model: nn.Module, input_shape: tuple[int, ...]) -> fx.GraphModule:
    """`model` as an fx GraphModule of standard leaves, for inputs of per-sample `input_shape`.

    A GraphModule is returned as it is (the ONNX front end builds one directly)."""
    if isinstance(model, fx.GraphModule):
        return model
    parameter = next(iter(model.parameters()), None)
    dtype = parameter.dtype if parameter is not None else torch.float32
    device = parameter.device if parameter is not None else torch.device("cpu")
    example = torch.full((EXAMPLE_BATCH, *input_shape), 0.5, dtype=dtype, device=device)
    tracer = BoundTracer(example)
    modes = [(module, module.training) for module in model.modules()]
    channels_last = _holds_channels_last(model)
    model.eval()  # the example evaluation must not touch batch-norm running statistics
    try:
        if channels_last:
            model.to(memory_format=torch.contiguous_format)
        with torch.no_grad():
            graph = tracer.trace(model)
    except fx.proxy.TraceError as error:
        raise AdvcliError(f"verification cannot trace {type(model).__name__}: {str(error).splitlines()[0]}") from None
    finally:
        if channels_last:
            model.to(memory_format=torch.channels_last)
        for module, training in modes:
            module.training = training
    return fx.GraphModule(tracer.root, graph, type(model).__name__)


def _holds_channels_last(model: nn.Module) -> bool:
    """Whether some 4-D parameter of `model` is held channels-last (and not also contiguous)."""
    return any(p.ndim == 4 and not p.is_contiguous() and p.is_contiguous(memory_format=torch.channels_last)
               for p in model.parameters())
