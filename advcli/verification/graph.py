"""Bound graphs: a model turned into a list of supported operations in topological order.

:func:`build_graph` accepts any torch model (traced by :mod:`.tracing`) or any torch.fx
GraphModule made of standard layers and torch functions (the ONNX front end builds those), and
converts each node that depends on the input into an :mod:`.ops` operation; constants (buffers,
parameters, numbers and expressions of them) are folded into the operations that use them and read
afresh at every call. Per-sample shapes come from running the graph on examples of two batch sizes,
which also refuses operations that mix samples. The converted graph is checked against the model
on a random input before it is returned, so a layer that is not what its class promises fails here
rather than yielding wrong bounds.
"""

from __future__ import annotations

import math
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional

import torch
import torch.fx as fx
from torch import nn

from ..errors import AdvcliError
from . import convert
from .convert import unsupported
from .ops import AffineOp, Context, Op
from .relax import MaxPool, ReLU
from .tracing import is_metadata_query, trace

SHAPE_BATCHES = (2, 3)
CHECK_TOLERANCE = 1e-4
_CACHE_SIZE = 4


@dataclass
class GraphNode:
    """One value of the graph: the input (no op) or an operation on earlier nodes."""

    index: int
    name: str
    op: Optional[Op]
    inputs: tuple[int, ...]
    shape: tuple[int, ...]  # per sample

    @property
    def shape_numel(self) -> int:
        return math.prod(self.shape)


class BoundGraph:
    """Nodes in topological order; node 0 is the input, the last node the output (logits)."""

    def __init__(self, nodes: list[GraphNode], root: nn.Module, input_shape: tuple[int, ...]) -> None:
        self.nodes, self.root, self.input_shape = nodes, root, tuple(input_shape)
        self.output = len(nodes) - 1
        self.consumers: list[list[int]] = [[] for _ in nodes]
        for node in nodes:
            for source in node.inputs:
                self.consumers[source].append(node.index)
        self.relaxed = {node.inputs[0] for node in nodes if isinstance(node.op, (ReLU, MaxPool))}
        self.exact = self._exact_intervals()

    def _exact_intervals(self) -> set[int]:
        """Nodes whose interval bounds are exact: one affine map of the input with at most one mixing op."""
        mixing = {0: 0}
        for node in self.nodes[1:]:
            op = node.op
            if isinstance(op, AffineOp) and node.inputs[0] in mixing:
                count = mixing[node.inputs[0]] + (1 if op.mixing else 0)
                if count <= 1:
                    mixing[node.index] = count
        return set(mixing)

    def activations(self) -> frozenset[int]:
        """The nodes before the output computed by a nonlinear op: where interval bounds stop."""
        return frozenset(node.index for node in self.nodes[1:self.output] if not node.op.linear)

    def cone(self, index: int) -> list[int]:
        """`index` and every node it depends on, in increasing order."""
        seen, stack = {index}, [index]
        while stack:
            for source in self.nodes[stack.pop()].inputs:
                if source not in seen:
                    seen.add(source)
                    stack.append(source)
        return sorted(seen)

    def patchable(self, index: int) -> bool:
        """Whether per-neuron windows can carry the backward pass from spatial node `index` to the input."""
        cone = self.cone(index)
        return all(len(self.nodes[i].shape) == 3 for i in cone) and all(
            self.nodes[i].op.patchable for i in cone if i != 0)

    def context(self, dtype: torch.dtype = torch.float32, device: Optional[torch.device] = None) -> Context:
        return Context(dtype=dtype, device=device)

    def forward(self, x: torch.Tensor, ctx: Optional[Context] = None) -> torch.Tensor:
        """The model's output at `x`; in training mode this also records batch-norm statistics in `ctx`."""
        ctx = ctx or self.context(x.dtype, x.device)
        values: list[Optional[torch.Tensor]] = [None] * len(self.nodes)
        values[0] = x
        remaining = [len(c) for c in self.consumers]
        for node in self.nodes[1:]:
            values[node.index] = node.op.forward(ctx, *(values[i] for i in node.inputs))
            for source in node.inputs:
                remaining[source] -= 1
                if remaining[source] == 0:
                    values[source] = None
        return values[self.output]

    def describe(self) -> list[str]:
        return [f"{node.name}: {node.op.label if node.op else 'input'} {node.shape}" for node in self.nodes]


class _ShapeRecorder(fx.Interpreter):
    """Runs a GraphModule and records each node's tensor shape (None for other values). Lighter
    than torch.fx's ShapeProp, which imports sympy (seconds) on first use."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.shapes: dict[fx.Node, Optional[tuple[int, ...]]] = {}

    def run_node(self, node: fx.Node):
        result = super().run_node(node)
        self.shapes[node] = tuple(result.shape) if isinstance(result, torch.Tensor) else None
        return result


def _per_sample_shapes(gm: fx.GraphModule, input_shape: tuple[int, ...], example_dtype, device) -> dict:
    """node -> per-sample shape for tensor nodes, or None where the batch dimension is not kept."""
    runs = []
    for batch in SHAPE_BATCHES:
        recorder = _ShapeRecorder(gm)
        with torch.no_grad():
            recorder.run(torch.rand(batch, *input_shape, dtype=example_dtype, device=device))
        runs.append(recorder.shapes)
    shapes = {}
    for node in gm.graph.nodes:
        sizes = [run.get(node) for run in runs]
        if all(size is not None for size in sizes):
            kept = all(len(size) > 0 and size[0] == batch for size, batch in zip(sizes, SHAPE_BATCHES))
            shapes[node] = sizes[0][1:] if kept and sizes[0][1:] == sizes[1][1:] else None
    return shapes


def _variable_nodes(gm: fx.GraphModule) -> set[fx.Node]:
    """Nodes whose value depends on the input's values (metadata queries do not)."""
    variable: set[fx.Node] = set()
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            variable.add(node)
        elif node.op != "output" and not is_metadata_query(node) and any(
                source in variable for source in node.all_input_nodes):
            variable.add(node)
    return variable


def _live(output: fx.Node) -> set[fx.Node]:
    live, stack = set(), [output]
    while stack:
        node = stack.pop()
        if node not in live:
            live.add(node)
            stack.extend(node.all_input_nodes)
    return live


def _convert(gm: fx.GraphModule, root: nn.Module, input_shape: tuple[int, ...], example_dtype, device) -> BoundGraph:
    placeholders = [node for node in gm.graph.nodes if node.op == "placeholder"]
    if len(placeholders) != 1:
        raise AdvcliError(f"verification needs a model with one input, this one takes {len(placeholders)}")
    output = next(node for node in gm.graph.nodes if node.op == "output")
    result = output.args[0]
    if not isinstance(result, fx.Node):
        raise unsupported("outputs other than one tensor", output)
    shapes = _per_sample_shapes(gm, input_shape, example_dtype, device)
    variable = _variable_nodes(gm)
    if result not in variable:
        raise AdvcliError("verification: the model's output does not depend on its input")
    live = _live(result)
    index: dict[fx.Node, int] = {}
    nodes: list[GraphNode] = []
    example = torch.zeros(1, *input_shape, dtype=example_dtype, device=device)
    context = convert.Conversion(gm, index, shapes, variable, example)
    for node in gm.graph.nodes:
        if node not in live or node not in variable:
            continue
        shape = shapes.get(node)
        if shape is None:
            raise unsupported("operations that mix samples or return non-tensors", node)
        if node.op == "placeholder":
            op, inputs = None, ()
        else:
            op, sources = convert.convert_node(context, node, len(nodes))
            inputs = tuple(index[source] for source in sources)
        index[node] = len(nodes)
        nodes.append(GraphNode(len(nodes), node.name, op, inputs, tuple(shape)))
    if index[result] != len(nodes) - 1:
        raise AdvcliError("verification: the output is not the graph's last value")
    return BoundGraph(nodes, root, input_shape)


def _check(graph: BoundGraph, model: nn.Module, dtype, device) -> None:
    """Refuse a conversion that does not reproduce the model on a random input."""
    generator = torch.Generator(device=device).manual_seed(0)
    example = torch.rand(SHAPE_BATCHES[0], *graph.input_shape, dtype=dtype, device=device, generator=generator)
    with torch.no_grad():
        expected = model(example)
        got = graph.forward(example)
    if not isinstance(expected, torch.Tensor) or expected.shape != got.shape:
        raise AdvcliError("verification: the converted graph's output shape differs from the model's")
    difference = float((expected - got).abs().max())
    if not difference <= CHECK_TOLERANCE * (1 + float(expected.abs().max())):
        raise AdvcliError(
            f"verification: the converted graph does not reproduce the model (difference {difference:.3g})")


_cache: "OrderedDict[tuple[int, tuple[int, ...]], tuple[weakref.ref, BoundGraph]]" = OrderedDict()


def build_graph(model: nn.Module | BoundGraph, input_shape: tuple[int, ...]) -> BoundGraph:
    """The bound graph of `model` (an nn.Module or fx GraphModule) for per-sample `input_shape`.

    The last few graphs built are kept and reused while their model lives; a BoundGraph passes through.
    """
    if isinstance(model, BoundGraph):
        if tuple(model.input_shape) != tuple(input_shape):
            raise AdvcliError(
                f"verification: the graph was built for inputs {model.input_shape}, got {tuple(input_shape)}")
        return model
    key = (id(model), tuple(input_shape))
    cached = _cache.get(key)
    if cached is not None and cached[0]() is model:
        _cache.move_to_end(key)
        return cached[1]
    parameter = next(iter(model.parameters()), None)
    dtype = parameter.dtype if parameter is not None else torch.float32
    device = parameter.device if parameter is not None else torch.device("cpu")
    modes = [(module, module.training) for module in model.modules()]
    model.eval()  # shape and check runs must not move batch-norm running statistics
    try:
        gm = trace(model, tuple(input_shape))
        graph = _convert(gm, model, tuple(input_shape), dtype, device)
        _check(graph, model, dtype, device)
    finally:
        for module, training in modes:
            module.training = training
    _cache[key] = (weakref.ref(model), graph)
    while len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)
    return graph
