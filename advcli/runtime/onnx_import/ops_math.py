"""Elementwise operators, reductions and Clip, with ONNX's broadcasting (numpy's, as torch's).

Shape arithmetic (Add/Sub/Mul/Div on :class:`Sym` shape vectors) is folded entry by entry, so
``Shape -> Gather -> Mul -> Reshape`` chains end as plain numbers.
"""

from __future__ import annotations

import operator
from typing import Any, Callable, Optional

import torch
from torch import nn

from .context import (
    Ctx,
    floor_div,
    is_scalar,
    item_arith,
    normalise_axis,
    op,
    rank_of,
    sym_from,
    sym_or_const,
    tensor_of,
)
from .values import Const, Value, dtype_of

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _int_div(a: torch.Tensor, b: Any) -> torch.Tensor:
    return torch.div(a, b, rounding_mode="trunc")


_ARITH: dict[str, tuple[Callable[..., Any], Callable[[int, int], int]]] = {
    "Add": (operator.add, operator.add),
    "Sub": (operator.sub, operator.sub),
    "Mul": (operator.mul, operator.mul),
    "Div": (operator.truediv, floor_div),
}


@op("Add", "Sub", "Mul", "Div")
def arithmetic(ctx: Ctx, a: Value, b: Value) -> Value:
    tensor_fn, int_fn = _ARITH[ctx.op_type]
    left, right = sym_from(a), sym_from(b)
    if left is not None and right is not None and (not isinstance(a, Const) or not isinstance(b, Const)):
        if len(left) == len(right) or len(left) == 1 or len(right) == 1:
            size = max(len(left), len(right))
            left, right = (left * size if len(left) == 1 else left), (right * size if len(right) == 1 else right)
            items = [item_arith(ctx, int_fn, x, y) for x, y in zip(left, right)]
            return sym_or_const(items, is_scalar(a) and is_scalar(b))
    a, b = tensor_of(ctx, a), tensor_of(ctx, b)
    if ctx.op_type == "Div" and dtype_of(a) not in _FLOATS:
        return ctx.call(_int_div, a, b)
    return ctx.call(tensor_fn, a, b, inline_scalars=True)


@op("Pow")
def power(ctx: Ctx, a: Value, b: Value) -> Value:
    if isinstance(b, Const) and b.value.dim() == 0 and float(b.value) == 2.0 and dtype_of(a) in _FLOATS:
        return ctx.call(operator.mul, a, a)  # what runtimes compute for a square, and exact
    return ctx.call(torch.pow, tensor_of(ctx, a), b.value.item() if isinstance(b, Const) and b.value.dim() == 0 else b)


_UNARY: dict[str, Callable[..., Any]] = {
    "Neg": torch.neg, "Abs": torch.abs, "Exp": torch.exp, "Log": torch.log, "Sqrt": torch.sqrt,
    "Reciprocal": torch.reciprocal, "Erf": torch.erf, "Floor": torch.floor, "Ceil": torch.ceil,
    "Round": torch.round, "Sign": torch.sign, "Not": torch.logical_not, "Sin": torch.sin, "Cos": torch.cos,
}


@op(*_UNARY)
def unary(ctx: Ctx, x: Value) -> Value:
    return ctx.call(_UNARY[ctx.op_type], tensor_of(ctx, x))


_BINARY: dict[str, Callable[..., Any]] = {
    "Equal": torch.eq, "Greater": torch.gt, "Less": torch.lt, "GreaterOrEqual": torch.ge, "LessOrEqual": torch.le,
    "And": torch.logical_and, "Or": torch.logical_or, "Xor": torch.logical_xor,
}


@op(*_BINARY)
def compare(ctx: Ctx, a: Value, b: Value) -> Value:
    return ctx.call(_BINARY[ctx.op_type], tensor_of(ctx, a), tensor_of(ctx, b))


@op("Where")
def where(ctx: Ctx, condition: Value, a: Value, b: Value) -> Value:
    return ctx.call(torch.where, tensor_of(ctx, condition), tensor_of(ctx, a), tensor_of(ctx, b))


_VARIADIC: dict[str, Callable[..., Any]] = {"Max": torch.maximum, "Min": torch.minimum, "Sum": torch.add, "Mean": torch.add}


@op("Max", "Min", "Sum", "Mean")
def variadic(ctx: Ctx, *inputs: Optional[Value]) -> Value:
    values = [tensor_of(ctx, value) for value in inputs if value is not None]
    result = values[0]
    for value in values[1:]:
        result = ctx.call(_VARIADIC[ctx.op_type], result, value)
    if ctx.op_type == "Mean" and len(values) > 1:
        result = ctx.call(operator.truediv, result, float(len(values)))
    return result


@op("Clip")
def clip(ctx: Ctx, x: Value, low: Optional[Value] = None, high: Optional[Value] = None) -> Value:
    if ctx.opset < 11:
        low = Const(torch.tensor(ctx.attr("min"))) if "min" in ctx.attrs else None
        high = Const(torch.tensor(ctx.attr("max"))) if "max" in ctx.attrs else None
    scalars = [v is None or (isinstance(v, Const) and v.value.numel() == 1) for v in (low, high)]
    if all(scalars) and dtype_of(x) in _FLOATS and low is not None and high is not None:
        lo, hi = float(ctx.const(low, "min")), float(ctx.const(high, "max"))
        if lo <= hi:
            return ctx.module(nn.Hardtanh(lo, hi), x)
    if all(scalars):
        bounds = [None if v is None else ctx.const(v, "bound").reshape(()).item() for v in (low, high)]
        if bounds[0] is not None and bounds[1] is not None and bounds[0] > bounds[1]:
            bounds[0] = bounds[1]  # ONNX: min above max sets everything to max, as torch.clamp does
        return ctx.call(torch.clamp, x, *bounds)
    return ctx.call(torch.clamp, x, low, high)


# Reductions -------------------------------------------------------------------------------------

_REDUCTIONS: dict[str, Callable[..., Any]] = {
    "ReduceMean": torch.mean, "ReduceSum": torch.sum, "ReduceMax": torch.amax, "ReduceMin": torch.amin,
    "ReduceProd": torch.prod, "ReduceL2": torch.linalg.vector_norm, "ReduceSumSquare": torch.sum,
}
_AXES_INPUT_SINCE = {"ReduceSum": 13}  # the other reductions take axes as an input from opset 18


@op(*_REDUCTIONS)
def reduce(ctx: Ctx, x: Value, axes_input: Optional[Value] = None) -> Value:
    rank = rank_of(x)
    if ctx.opset >= _AXES_INPUT_SINCE.get(ctx.op_type, 18):
        axes = ctx.ints(axes_input, "axes") if axes_input is not None else []
    else:
        axes = list(ctx.attr("axes", []))
    keepdims = bool(ctx.attr("keepdims", 1))
    if not axes:
        if ctx.attr("noop_with_empty_axes", 0):
            return x
        axes = list(range(rank))
    dims = sorted({normalise_axis(ctx, axis, rank) for axis in axes})
    x = tensor_of(ctx, x)
    if ctx.op_type == "ReduceSumSquare":
        x = ctx.call(operator.mul, x, x)
    if ctx.op_type == "ReduceProd":
        for dim in reversed(dims):
            x = ctx.call(torch.prod, x, dim, keepdim=keepdims)
        return x
    return ctx.call(_REDUCTIONS[ctx.op_type], x, dim=dims, keepdim=keepdims)


@op("ArgMax", "ArgMin")
def arg_extreme(ctx: Ctx, x: Value) -> Value:
    axis = normalise_axis(ctx, ctx.attr("axis", 0), rank_of(x))
    keepdims = bool(ctx.attr("keepdims", 1))
    fn = torch.argmax if ctx.op_type == "ArgMax" else torch.argmin
    if ctx.attr("select_last_index", 0):
        flipped = ctx.call(torch.flip, x, [axis])
        index = ctx.call(fn, flipped, dim=axis, keepdim=keepdims)
        size = ctx.method("size", x, axis)
        return ctx.call(operator.sub, ctx.call(operator.sub, size, 1), index)
    return ctx.call(fn, x, dim=axis, keepdim=keepdims)
