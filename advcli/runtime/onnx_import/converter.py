"""ONNX graph -> torch.fx GraphModule, read as data and never executed.

:func:`convert` walks the nodes in order, converting each through the operator registry
(:data:`OPS`) into standard torch leaves and functions; constant sub-graphs fold away and shapes
that follow the batch stay symbolic. The result has two modules over the same weights: ``module``
computes what the file computes, ``logits_module`` what an attack should differentiate (the input
of a trailing Softmax, when there is one).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import torch
from torch import fx, nn

from . import ops_math, ops_nn, ops_shape, resize  # noqa: F401  (they register their operators)
from .context import OPS, Ctx
from .errors import ConversionError, UnsupportedOperators
from .loading import TORCH_DTYPES, ModelSource, attributes, normalise, read_model, to_torch
from .values import Const, Dyn, GraphBuilder, Value, check_elements

QUANTIZED_OPS = frozenset({
    "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul",
    "ConvInteger", "MatMulInteger", "QLinearAdd", "QLinearMul", "QLinearSigmoid", "QLinearGlobalAveragePool",
})
PROBE_BATCHES = (2, 3)
IMAGE_DTYPES = (torch.float32, torch.float64, torch.float16, torch.uint8)


@dataclass
class ConvertedModel:
    """A converted ONNX classifier: torch modules over the file's weights, and what was found on the way.

    ``module`` maps what the file takes (its layout, range and dtype, as float) to its first output;
    ``logits_module`` stops before a trailing Softmax (:attr:`softmax_cut`), else it is ``module``.
    Both are fx GraphModules in eval mode whose nodes are torch leaves and functions. With a batch size
    fixed in the file (:attr:`fixed_batch`) they take exactly that many inputs; :meth:`forward_any_batch`
    runs any number.
    """

    module: fx.GraphModule
    logits_module: fx.GraphModule
    input_name: str
    output_name: str
    input_shape: tuple[Optional[int], ...]  # as declared by the file, None for a symbolic size
    input_dtype: torch.dtype
    opset: int
    softmax_cut: bool
    pre_softmax_name: Optional[str]
    fixed_batch: Optional[int]
    seconds: float
    notes: list[str] = field(default_factory=list)
    operators: dict[str, int] = field(default_factory=dict)


def _unsupported(graph: Any) -> None:
    counts: dict[str, int] = {}
    for node in graph.node:
        if node.op_type not in OPS or node.op_type in QUANTIZED_OPS:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    if not counts:
        return
    quantized = sorted(name for name in counts if name in QUANTIZED_OPS)
    other = sorted(name for name in counts if name not in QUANTIZED_OPS)
    parts = []
    if other:
        parts.append("unsupported ONNX operators: " + ", ".join(f"{n} ({counts[n]})" for n in other))
    if quantized:
        parts.append("quantized operators are not supported: " + ", ".join(f"{n} ({counts[n]})" for n in quantized))
    raise UnsupportedOperators("; ".join(parts))


def _image_input(graph: Any, initializers: set[str], input_dims: Optional[Sequence[int]]) -> tuple[Any, list[Optional[int]], torch.dtype]:
    runtime = [value for value in graph.input if value.name not in initializers]
    if len(runtime) != 1:
        raise ConversionError(f"expected one image input, found {len(runtime)}: {', '.join(v.name for v in runtime)}")
    value = runtime[0]
    tensor_type = value.type.tensor_type
    dtype = TORCH_DTYPES.get(tensor_type.elem_type)
    if dtype not in IMAGE_DTYPES:
        raise ConversionError(f"input {value.name!r} has element type {tensor_type.elem_type}; expected float or uint8 images")
    dims: list[Optional[int]] = [d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim]
    if not dims:
        raise ConversionError(f"input {value.name!r} has no declared shape; expected a batch of images")
    if input_dims is not None:
        if len(input_dims) != len(dims) - 1 or any(d is not None and d != w for d, w in zip(dims[1:], input_dims)):
            raise ConversionError(f"input_dims {tuple(input_dims)} do not fit the file's input {dims}")
        dims = [dims[0], *input_dims]
    if any(d is None for d in dims[1:]):
        raise ConversionError(f"input {value.name!r} has symbolic sizes {dims}; pass input_dims with its non-batch sizes")
    return value, dims, dtype


def _trailing_softmax(graph: Any, output: str) -> Optional[int]:
    """The index of the Softmax node whose output (through Identity nodes) is the graph's first output."""
    producers = {name: index for index, node in enumerate(graph.node) for name in node.output}
    index = producers.get(output)
    while index is not None and graph.node[index].op_type == "Identity":
        index = producers.get(graph.node[index].input[0])
    return index if index is not None and graph.node[index].op_type == "Softmax" else None


def convert(source: ModelSource, *, input_dims: Optional[Sequence[int]] = None) -> ConvertedModel:
    """Convert an ONNX classifier (path, bytes or ModelProto) to torch; see :class:`ConvertedModel`.

    `input_dims` gives the image input's non-batch sizes when the file leaves them symbolic.
    Raises :class:`~advcli.runtime.onnx_import.errors.ConversionError` (one line) when the graph cannot be
    converted, :class:`UnsupportedOperators` naming every operator that is missing.
    """
    started = time.perf_counter()
    proto, opset, notes = normalise(read_model(source))
    graph = proto.graph
    if len(graph.sparse_initializer):
        raise ConversionError("sparse initializers are not supported")
    _unsupported(graph)
    env: dict[str, Value] = {tensor.name: Const(to_torch(tensor)) for tensor in graph.initializer}
    image, dims, dtype = _image_input(graph, set(env), input_dims)
    check_elements([d or 1 for d in dims], f"input {image.name!r}")
    fixed_batch = dims[0]
    builder = GraphBuilder()
    generator = torch.Generator().manual_seed(0)
    batches = (fixed_batch, fixed_batch) if fixed_batch else PROBE_BATCHES
    scale = 255.0 if dtype == torch.uint8 else 1.0
    probes = tuple(torch.rand(b, *dims[1:], generator=generator).mul_(scale) for b in batches)
    env[image.name] = builder.placeholder("x", probes)  # type: ignore[arg-type]
    _record_origin(builder, "input", image.name)
    output_name = graph.output[0].name
    softmax_index = _trailing_softmax(graph, output_name)
    softmax = graph.node[softmax_index] if softmax_index is not None else None
    consumed = {name for node in graph.node for name in node.input} | {value.name for value in graph.output}
    pre_softmax: Optional[Value] = None
    operators: dict[str, int] = {}
    for index, node in enumerate(graph.node):
        operators[node.op_type] = operators.get(node.op_type, 0) + 1
        outputs = _convert_node(builder, opset, node, index, env, consumed)
        if index == softmax_index:
            pre_softmax = env[node.input[0]]
        for name, value in zip(node.output, outputs):
            if name:
                env[name] = value
    result = env.get(output_name)
    if not isinstance(result, Dyn):
        raise ConversionError(f"output {output_name!r} does not depend on the input")
    if len(graph.output) > 1:
        notes.append(f"the file has {len(graph.output)} outputs; the first ({output_name!r}) is the classifier's")
    cut = isinstance(pre_softmax, Dyn) and pre_softmax.rank == 2 and softmax is not None and \
        _softmax_axis(softmax, opset) in (1, -1)
    module = builder.graph_module(result, "ConvertedOnnx")
    logits = builder.graph_module(pre_softmax, "ConvertedOnnxLogits") if cut else module  # type: ignore[arg-type]
    if fixed_batch:
        notes.append(f"the file fixes the batch size at {fixed_batch}: batches run {fixed_batch} at a time")
    return ConvertedModel(
        module=module, logits_module=logits, input_name=image.name, output_name=output_name,
        input_shape=tuple(dims), input_dtype=dtype, opset=opset, softmax_cut=cut,
        pre_softmax_name=softmax.input[0] if cut else None, fixed_batch=fixed_batch,
        seconds=time.perf_counter() - started, notes=notes, operators=operators,
    )


def _softmax_axis(node: Any, opset: int) -> int:
    for attribute in node.attribute:
        if attribute.name == "axis":
            return attribute.i
    return -1 if opset >= 13 else 1


def _convert_node(builder: GraphBuilder, opset: int, node: Any, index: int, env: dict[str, Value],
                  consumed: set[str]) -> list[Value]:
    name = node.name or f"{node.op_type}_{index}"
    ctx = Ctx(builder, opset, node.op_type, name, attributes(node), outputs=len(node.output))
    missing = [value for value in node.input if value and value not in env]
    if missing:
        raise ConversionError(f"node {name!r} ({node.op_type}) reads {missing[0]!r}, which no earlier node produces "
                              "(graph not in topological order, or a sub-graph input)")
    inputs = [env[value] if value else None for value in node.input]
    while inputs and inputs[-1] is None:
        inputs.pop()
    try:
        produced = OPS[node.op_type](ctx, *inputs)
    except ConversionError:
        raise
    except (RuntimeError, ValueError, TypeError, IndexError) as error:
        message = " ".join(str(error).split())[:200]
        raise ConversionError(f"node {name!r} ({node.op_type}): cannot convert ({message})") from None
    _record_origin(builder, node.op_type, name)
    produced = list(produced) if isinstance(produced, (list, tuple)) else [produced]
    extra = [value for value in node.output[len(produced):] if value in consumed]
    if extra:
        raise ConversionError(f"node {name!r} ({node.op_type}): output {extra[0]!r} (beyond the first "
                              f"{len(produced)}) is not supported")
    return produced


def _record_origin(builder: GraphBuilder, op_type: str, name: str) -> None:
    """Mark the fx nodes just added with the ONNX node they compute (``meta["onnx_op"]`` and
    ``meta["onnx_node"]``), so that a later refusal of one of them can name the file's operator."""
    for fx_node in reversed(builder.graph.nodes):
        if "onnx_op" in fx_node.meta:
            return
        fx_node.meta["onnx_op"], fx_node.meta["onnx_node"] = op_type, name


def forward_any_batch(module: nn.Module, x: torch.Tensor, fixed_batch: Optional[int]) -> torch.Tensor:
    """`module` on any number of inputs: in chunks of `fixed_batch` (the last padded with copies of its
    final row, whose outputs are dropped) when the file fixes the batch size."""
    if not fixed_batch or len(x) == fixed_batch:
        return module(x)
    outputs = []
    for start in range(0, len(x), fixed_batch):
        chunk = x[start:start + fixed_batch]
        short = fixed_batch - len(chunk)
        if short:
            chunk = torch.cat([chunk, chunk[-1:].expand(short, *chunk.shape[1:])])
        outputs.append(module(chunk)[:fixed_batch - short])
    return torch.cat(outputs)


__all__ = ["ConvertedModel", "convert", "forward_any_batch", "QUANTIZED_OPS"]
