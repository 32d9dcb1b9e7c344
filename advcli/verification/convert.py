"""One torch.fx node -> one bound-graph operation (see :mod:`.graph` for the whole conversion)."""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from ..errors import AdvcliError
from .ops import (
    Add,
    BatchNorm,
    Conv,
    Getter,
    GlobalAvgPool,
    Identity,
    Linear,
    Op,
    Rearrange,
    Reshape,
    ScaleShift,
    conv_for_avg_pool,
)
from .relax import MaxPool, ReLU
from .tracing import fetch_attribute

FUNCTIONS: dict[Any, str] = {
    torch.relu: "relu", F.relu: "relu", torch.flatten: "reshape", torch.reshape: "reshape",
    operator.add: "add", torch.add: "add", operator.sub: "sub", torch.sub: "sub", operator.mul: "mul",
    torch.mul: "mul", operator.truediv: "div", torch.div: "div", operator.neg: "neg", torch.neg: "neg",
    F.linear: "linear", torch.matmul: "matmul", operator.matmul: "matmul", F.conv2d: "conv2d",
    torch.conv2d: "conv2d", F.max_pool2d: "max_pool2d", torch.max_pool2d: "max_pool2d",
    F.avg_pool2d: "avg_pool2d", F.adaptive_avg_pool2d: "adaptive_avg_pool2d", torch.mean: "mean",
    F.dropout: "dropout", torch.addmm: "addmm", torch.permute: "rearrange", torch.transpose: "rearrange",
    torch.flip: "rearrange",
}
METHODS: dict[str, str] = {
    "relu": "relu", "relu_": "relu", "view": "reshape", "reshape": "reshape", "flatten": "reshape",
    "contiguous": "identity", "add": "add", "sub": "sub", "mul": "mul", "div": "div", "neg": "neg", "mean": "mean",
    "permute": "rearrange", "transpose": "rearrange", "flip": "rearrange",
}


SUPPORTED = ("Conv2d, Linear (also F.linear, x @ W, addmm), ReLU, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d to 1x1, "
             "flatten/reshape/view, permute/transpose/flip, BatchNorm1d/2d, Identity, Dropout (eval), sum or difference of two branches, "
             "+ - * / by constants")


def unsupported(what: str, node: fx.Node) -> AdvcliError:
    """The one-line error for an operation the bound graph cannot represent; on a converted ONNX
    file it names the file's operator and node."""
    origin = node.meta.get("onnx_op")
    where = f"ONNX operator {origin}, node {node.meta.get('onnx_node')!r}" if origin else f"node {node.name}"
    return AdvcliError(f"verification does not support {what} ({where}); supported: {SUPPORTED}")



def _pair(value: Any) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


@dataclass
class Conversion:
    """What converting one node needs from the whole graph."""

    gm: fx.GraphModule
    index: dict[fx.Node, int]
    shapes: dict[fx.Node, Optional[tuple[int, ...]]]
    variable: set[fx.Node]
    example: Optional[torch.Tensor] = None  # one input, for constants that read its dtype or device

    def is_variable(self, arg: Any) -> bool:
        return isinstance(arg, fx.Node) and arg in self.variable

    def shape(self, node: fx.Node) -> tuple[int, ...]:
        shape = self.shapes.get(node)
        if shape is None:
            raise unsupported("operations that mix samples or return non-tensors", node)
        return shape

    def constant(self, arg: Any) -> Getter:
        """A function returning the constant `arg`'s current value (re-read at every call)."""
        if isinstance(arg, fx.Node):
            if arg in self.variable:
                raise AdvcliError(f"verification: node {arg.name} is not a constant")
            return lambda: self._evaluate(arg)
        if isinstance(arg, torch.Tensor):
            return lambda: arg
        if isinstance(arg, (int, float)) and not isinstance(arg, bool):
            value = torch.tensor(float(arg))
            return lambda: value
        raise AdvcliError(f"verification: unsupported constant {arg!r}")

    def _evaluate(self, node: fx.Node) -> Any:
        args = fx.node.map_arg(node.args, self._evaluate)
        kwargs = fx.node.map_arg(node.kwargs, self._evaluate)
        if node.op == "get_attr":
            return fetch_attribute(self.gm, str(node.target))
        if node.op == "placeholder" and self.example is not None:  # reached through a metadata query only
            return self.example
        if node.op == "call_function":
            return node.target(*args, **kwargs)
        if node.op == "call_method":
            return getattr(args[0], str(node.target))(*args[1:], **kwargs)
        raise AdvcliError(f"verification: cannot evaluate constant node {node.name}")


def _argument(node: fx.Node, position: int, name: str, default: Any = None) -> Any:
    if len(node.args) > position:
        return node.args[position]
    return node.kwargs.get(name, default)


def convert_node(c: Conversion, node: fx.Node, position: int) -> tuple[Op, list[fx.Node]]:
    """The operation computing `node`, and the variable nodes it reads (in order)."""
    if node.op == "call_module":
        module = c.gm.get_submodule(str(node.target))
        if len(node.args) != 1 or node.kwargs or not c.is_variable(node.args[0]):
            raise unsupported(f"{type(module).__name__} with several inputs", node)
        return _module_op(c, node, module, position), [node.args[0]]
    if node.op == "call_function":
        kind = FUNCTIONS.get(node.target)
        name = getattr(node.target, "__name__", str(node.target))
    elif node.op == "call_method":
        kind, name = METHODS.get(str(node.target)), str(node.target)
    else:
        raise unsupported(node.op, node)
    if kind is None:
        raise unsupported(name, node)
    if kind in ("add", "sub", "mul", "div", "neg"):
        return _arithmetic(c, node, kind)
    if kind == "addmm":  # bias + x @ W, the form a Gemm often takes
        x = node.args[1] if len(node.args) > 1 else node.kwargs.get("mat1")
        weight = c.constant(_argument(node, 2, "mat2"))
        if (not c.is_variable(x) or c.is_variable(_argument(node, 0, "input")) or len(c.shape(x)) != 1
                or node.kwargs.get("beta", 1) != 1 or node.kwargs.get("alpha", 1) != 1):
            raise unsupported("addmm other than bias + x @ constant", node)
        return Linear(c.shape(x), c.shape(node), lambda: weight().t(), c.constant(_argument(node, 0, "input"))), [x]
    x = node.args[0] if node.args else node.kwargs.get("input")
    if not c.is_variable(x) or any(c.is_variable(arg) for arg in [*node.args[1:], *node.kwargs.values()]):
        raise unsupported(f"{name} on several variable tensors", node)
    return _function_op(c, node, kind, name, x), [x]


def _module_op(c: Conversion, node: fx.Node, module: nn.Module, position: int) -> Op:
    in_shape, out_shape = c.shape(node.args[0]), c.shape(node)
    name = type(module).__name__
    if isinstance(module, nn.Conv2d):
        if module.padding_mode != "zeros":
            raise unsupported(f"{name} with padding_mode {module.padding_mode!r}", node)
        return Conv(in_shape, out_shape, lambda: module.weight, lambda: module.bias, module.stride,
                    _conv_padding(module.padding, module.kernel_size, module.dilation, node), module.dilation,
                    module.groups)
    if isinstance(module, nn.Linear):
        return Linear(in_shape, out_shape, lambda: module.weight, lambda: module.bias)
    if isinstance(module, nn.ReLU):
        return ReLU()
    if isinstance(module, nn.MaxPool2d):
        return _max_pool(node, in_shape, out_shape, module.kernel_size, module.stride, module.padding,
                         module.dilation, module.ceil_mode, module.return_indices)
    if isinstance(module, nn.AvgPool2d):
        return _avg_pool(node, in_shape, out_shape, module.kernel_size, module.stride, module.padding,
                         module.ceil_mode, module.count_include_pad, module.divisor_override)
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return _adaptive(node, in_shape, out_shape, module.output_size)
    if isinstance(module, nn.Flatten):
        return Reshape(in_shape, out_shape)
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return BatchNorm(in_shape, module, position)
    if isinstance(module, (nn.Identity, nn.Dropout)):
        return Identity(in_shape, module)
    raise unsupported(name, node)


def _function_op(c: Conversion, node: fx.Node, kind: str, name: str, x: fx.Node) -> Op:
    in_shape, out_shape = c.shape(x), c.shape(node)
    if kind == "relu":
        return ReLU()
    if kind == "reshape":
        return Reshape(in_shape, out_shape)
    if kind == "identity":
        return Identity(in_shape)
    if kind == "rearrange":
        return _rearrange(node, in_shape, out_shape)
    if kind == "linear":
        bias = _argument(node, 2, "bias")
        return Linear(in_shape, out_shape, c.constant(_argument(node, 1, "weight")),
                      (lambda: None) if bias is None else c.constant(bias))
    if kind == "matmul":
        weight = c.constant(_argument(node, 1, "other"))
        if weight().dim() != 2 or len(in_shape) != 1:
            raise unsupported("matmul other than a batch of vectors by a constant matrix", node)
        return Linear(in_shape, out_shape, lambda: weight().t(), lambda: None)
    if kind == "conv2d":
        bias = _argument(node, 2, "bias")
        weight = c.constant(_argument(node, 1, "weight"))
        dilation = _pair(_argument(node, 5, "dilation", 1))
        return Conv(in_shape, out_shape, weight, (lambda: None) if bias is None else c.constant(bias),
                    _pair(_argument(node, 3, "stride", 1)),
                    _conv_padding(_argument(node, 4, "padding", 0), weight().shape[2:], dilation, node), dilation,
                    int(_argument(node, 6, "groups", 1)))
    if kind == "max_pool2d":
        kernel = _argument(node, 1, "kernel_size")
        return _max_pool(node, in_shape, out_shape, kernel, _argument(node, 2, "stride") or kernel,
                         _argument(node, 3, "padding", 0), _argument(node, 4, "dilation", 1),
                         _argument(node, 5, "ceil_mode", False), _argument(node, 6, "return_indices", False))
    if kind == "avg_pool2d":
        kernel = _argument(node, 1, "kernel_size")
        return _avg_pool(node, in_shape, out_shape, kernel, _argument(node, 2, "stride") or kernel,
                         _argument(node, 3, "padding", 0), _argument(node, 4, "ceil_mode", False),
                         _argument(node, 5, "count_include_pad", True), _argument(node, 6, "divisor_override"))
    if kind == "adaptive_avg_pool2d":
        return _adaptive(node, in_shape, out_shape, _argument(node, 1, "output_size"))
    if kind == "mean":
        dims = _argument(node, 1, "dim")
        dims = {d % 4 for d in ((dims,) if isinstance(dims, int) else dims or ())}
        if len(in_shape) != 3 or dims != {2, 3}:
            raise unsupported("mean other than over the spatial dimensions", node)
        return GlobalAvgPool(in_shape, out_shape)
    if kind == "dropout":
        if _argument(node, 2, "training", True):
            raise unsupported("dropout in training mode", node)
        return Identity(in_shape)
    raise unsupported(name, node)


def _rearrange(node: fx.Node, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> Op:
    """A permute, transpose or flip, as where each output element comes from (found by applying
    the node to the elements' own indices)."""
    index = torch.arange(math.prod(in_shape), dtype=torch.float64).reshape(1, *in_shape)
    args, kwargs = node.args[1:], dict(node.kwargs)
    if node.op == "call_method":
        moved = getattr(index, str(node.target))(*args, **kwargs)
    else:
        moved = node.target(index, *args, **kwargs)  # type: ignore[operator]
    if tuple(moved.shape[1:]) != tuple(out_shape):
        raise unsupported(f"{node.target} that moves the batch dimension", node)
    return Rearrange(in_shape, out_shape, moved.reshape(-1).to(torch.long), str(getattr(node.target, "__name__", node.target)))


def _arithmetic(c: Conversion, node: fx.Node, kind: str) -> tuple[Op, list[fx.Node]]:
    """x + - * / constant (either side where it is linear in x), the negation, or the sum or the
    difference of two variable tensors of one shape."""
    first = node.args[0] if node.args else node.kwargs.get("input")
    if kind == "neg":
        return ScaleShift(c.shape(first), scale=c.constant(-1.0)), [first]
    second = node.args[1] if len(node.args) > 1 else node.kwargs.get("other")
    extra = {key: value for key, value in node.kwargs.items() if key not in ("input", "other")}
    if extra.get("alpha", 1) != 1 or extra.get("rounding_mode") is not None:
        raise unsupported(f"{kind} with {', '.join(extra)}", node)
    first_variable, second_variable = c.is_variable(first), c.is_variable(second)
    out_shape = c.shape(node)
    if first_variable and second_variable:
        if kind not in ("add", "sub"):
            raise unsupported(f"{kind} of two variable tensors", node)
        if c.shape(first) != out_shape or c.shape(second) != out_shape:
            raise unsupported(f"{kind} of two branches of different shapes", node)
        return Add(1.0 if kind == "add" else -1.0), [first, second]
    x, constant = (first, second) if first_variable else (second, first)
    in_shape = c.shape(x)
    value = c.constant(constant)
    full = (1, *in_shape)
    try:
        fits = torch.broadcast_shapes(tuple(torch.as_tensor(value()).shape), full) == full
    except RuntimeError:
        fits = False
    if not fits or out_shape != in_shape:
        raise unsupported(f"{kind} by a constant that changes the shape", node)
    if kind == "add":
        return ScaleShift(in_shape, shift=value), [x]
    if kind == "sub":
        if first_variable:
            return ScaleShift(in_shape, shift=lambda: -value()), [x]
        return ScaleShift(in_shape, scale=c.constant(-1.0), shift=value), [x]
    if kind == "mul":
        return ScaleShift(in_shape, scale=value), [x]
    if not first_variable:
        raise unsupported("division by a variable tensor", node)
    return ScaleShift(in_shape, scale=lambda: 1.0 / value()), [x]


def _conv_padding(padding: Any, kernel: Any, dilation: Any, node: fx.Node) -> tuple[int, int]:
    if padding == "valid":
        return 0, 0
    if padding == "same":
        totals = [d * (k - 1) for k, d in zip(_pair(tuple(kernel)), _pair(dilation))]
        if any(total % 2 for total in totals):
            raise unsupported("Conv2d with asymmetric 'same' padding", node)
        return totals[0] // 2, totals[1] // 2
    return _pair(padding)


def _max_pool(node, in_shape, out_shape, kernel, stride, padding, dilation, ceil_mode, return_indices) -> Op:
    if _pair(dilation) != (1, 1) or ceil_mode or return_indices:
        raise unsupported("MaxPool2d with dilation, ceil_mode or return_indices", node)
    return MaxPool(in_shape, out_shape, _pair(kernel), _pair(stride), _pair(padding))


def _avg_pool(node, in_shape, out_shape, kernel, stride, padding, ceil_mode, count_include_pad, divisor) -> Op:
    if ceil_mode or not count_include_pad or divisor is not None:
        raise unsupported("AvgPool2d with ceil_mode, count_include_pad=False or divisor_override", node)
    return conv_for_avg_pool(in_shape, out_shape, _pair(kernel), _pair(stride), _pair(padding))


def _adaptive(node, in_shape, out_shape, output_size) -> Op:
    size = _pair(output_size) if output_size is not None else None
    if size == (1, 1):
        return GlobalAvgPool(in_shape, out_shape)
    if len(in_shape) == 3 and size == tuple(in_shape[1:]):
        return Identity(in_shape)
    raise unsupported(f"AdaptiveAvgPool2d to {output_size}", node)
