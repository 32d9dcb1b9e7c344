"""Shape and data-movement operators: Shape, Reshape, Flatten, (Un)Squeeze, Transpose, Concat, Gather,
Slice, Cast, ConstantOfShape, Range, Expand, Tile, Split, Pad, Constant, Identity.

Each works on constants (folded), on runtime tensors, and where it matters on :class:`Sym` shape
vectors, so dynamic-batch shape code from exporters folds to static sizes.
"""

from __future__ import annotations

import operator
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .context import (
    Ctx,
    dim_item,
    item_probe,
    items_of,
    normalise_axis,
    op,
    product,
    rank_of,
    reshape,
    static_shape,
    sym_from,
    sym_or_const,
    tensor_of,
    torch_pads,
)
from .loading import TORCH_DTYPES
from .values import Const, Dyn, Item, Sym, Value, check_elements, dtype_of

INT_TYPES = (torch.int64, torch.int32)


@op("Identity", "Dropout")
def identity(ctx: Ctx, x: Value, *rest: Optional[Value]) -> Value:
    if ctx.op_type == "Dropout":
        training = rest[1] if len(rest) > 1 else None
        if training is not None and bool(ctx.const(training, "training_mode").reshape(-1)[0]):
            raise ctx.error("Dropout in training mode is random; only inference graphs are converted")
    return x


@op("Constant")
def constant(ctx: Ctx) -> Value:
    for key, dtype in (("value_float", torch.float32), ("value_floats", torch.float32),
                       ("value_int", torch.int64), ("value_ints", torch.int64)):
        if key in ctx.attrs:
            return Const(torch.tensor(ctx.attrs[key], dtype=dtype))
    if isinstance(ctx.attr("value"), torch.Tensor):
        return Const(ctx.attr("value"))
    raise ctx.error(f"constant of kind {', '.join(ctx.attrs) or 'none'} is not supported (strings and sparse tensors)")


@op("Shape")
def shape(ctx: Ctx, x: Value) -> Value:
    rank = rank_of(x)
    start, end = ctx.attr("start", 0), ctx.attr("end", rank)
    axes = range(rank)[slice(start, end)]
    if isinstance(x, Sym):
        return Const(torch.tensor([len(x.items)] if not x.scalar else [], dtype=torch.int64)[slice(start, end)])
    return sym_or_const([dim_item(ctx, x, axis) for axis in axes], scalar=False)


@op("Size")
def size(ctx: Ctx, x: Value) -> Value:
    return sym_or_const([product(ctx, [dim_item(ctx, x, a) for a in range(rank_of(x))])], scalar=True)


@op("Reshape")
def reshape_op(ctx: Ctx, x: Value, target: Value) -> Value:
    items = items_of(ctx, target, "shape")
    if not ctx.attr("allowzero", 0):
        items = [dim_item(ctx, x, axis) if isinstance(item, int) and item == 0 else item for axis, item in enumerate(items)]
    elif any(isinstance(item, int) and item == 0 for item in items) and -1 in items:
        raise ctx.error("allowzero=1 with both 0 and -1 in the shape is invalid")
    if isinstance(x, Sym):
        if len(items) == 1 or not items:
            return Sym(x.items, scalar=not items)
        x = tensor_of(ctx, x)
    return reshape(ctx, x, items)


@op("Flatten")
def flatten(ctx: Ctx, x: Value) -> Value:
    rank = rank_of(x)
    axis = ctx.attr("axis", 1)
    axis = axis + rank if axis < 0 else axis
    if axis == 1 and rank > 2 and isinstance(x, Dyn):
        return ctx.module(nn.Flatten(1), x)
    lead = product(ctx, [dim_item(ctx, x, a) for a in range(axis)])
    return reshape(ctx, tensor_of(ctx, x), [lead, -1])


def _axes(ctx: Ctx, value: Optional[Value]) -> Optional[list[int]]:
    if ctx.opset >= 13:
        return ctx.ints(value, "axes") if value is not None else None
    return list(ctx.attr("axes")) if ctx.attr("axes") is not None else None


@op("Squeeze")
def squeeze(ctx: Ctx, x: Value, axes_input: Optional[Value] = None) -> Value:
    rank, shape_now = rank_of(x), static_shape(x)
    axes = _axes(ctx, axes_input)
    dims = sorted({normalise_axis(ctx, a, rank) for a in axes}) if axes else [a for a, s in enumerate(shape_now) if s == 1]
    if any(shape_now[d] not in (1, None) for d in dims):
        raise ctx.error(f"cannot squeeze axes {dims} of shape {shape_now}")
    if isinstance(x, Sym):
        return Sym(x.items, scalar=True)
    return ctx.call(torch.squeeze, x, tuple(dims)) if dims else x


@op("Unsqueeze")
def unsqueeze(ctx: Ctx, x: Value, axes_input: Optional[Value] = None) -> Value:
    axes = _axes(ctx, axes_input) or []
    rank = rank_of(x) + len(axes)
    dims = sorted({normalise_axis(ctx, a, rank) for a in axes})
    if isinstance(x, Sym) and x.scalar and dims == [0]:
        return Sym(x.items, scalar=False)
    x = tensor_of(ctx, x)
    for dim in dims:
        x = ctx.call(torch.unsqueeze, x, dim)
    return x


@op("Transpose")
def transpose(ctx: Ctx, x: Value) -> Value:
    rank = rank_of(x)
    perm = list(ctx.attr("perm", list(reversed(range(rank)))))
    if perm == list(range(rank)):
        return x
    return ctx.call(torch.permute, tensor_of(ctx, x), perm)


@op("Concat")
def concat(ctx: Ctx, *inputs: Optional[Value]) -> Value:
    values = [v for v in inputs if v is not None]
    if any(isinstance(v, Sym) for v in values):
        parts = [sym_from(v) for v in values]
        if all(p is not None for p in parts):
            return sym_or_const([item for p in parts for item in p], scalar=False)  # type: ignore[union-attr]
    axis = normalise_axis(ctx, ctx.attr("axis"), rank_of(values[0]))
    values = [tensor_of(ctx, v) for v in values if static_shape(v)[axis] != 0 or len(values) == 1]
    return ctx.call(torch.cat, values, dim=axis)


def onnx_gather(data: torch.Tensor, indices: torch.Tensor, axis: int) -> torch.Tensor:
    """ONNX Gather: `data` indexed along `axis` by `indices` of any shape (negative ones count from the end)."""
    indices = torch.where(indices < 0, indices + data.shape[axis], indices)
    picked = torch.index_select(data, axis, indices.reshape(-1))
    return picked.reshape(*data.shape[:axis], *indices.shape, *data.shape[axis + 1:])


@op("Gather")
def gather(ctx: Ctx, data: Value, indices: Value) -> Value:
    axis = normalise_axis(ctx, ctx.attr("axis", 0), rank_of(data))
    if isinstance(data, Sym) and isinstance(indices, Const):
        picked = [data.items[i] for i in ctx.ints(indices, "indices")]
        return sym_or_const(picked, scalar=indices.value.dim() == 0)
    if isinstance(indices, Const) and indices.value.dim() == 0 and isinstance(data, Dyn):
        return ctx.call(torch.select, data, axis, int(indices.value))
    if isinstance(indices, Const) and indices.value.dim() == 1 and isinstance(data, Dyn) and data.dim(axis) is not None:
        index = [i % data.dim(axis) for i in ctx.ints(indices, "indices")]  # type: ignore[operator]
        return ctx.call(torch.index_select, data, axis, Const(torch.tensor(index, dtype=torch.int64)))
    return ctx.call(onnx_gather, tensor_of(ctx, data), tensor_of(ctx, indices), axis)


@op("Slice")
def slice_op(ctx: Ctx, data: Value, starts: Value, ends: Value, axes: Optional[Value] = None,
             steps: Optional[Value] = None) -> Value:
    begin, finish = items_of(ctx, starts, "starts"), items_of(ctx, ends, "ends")
    rank = rank_of(data)
    axis_list = [normalise_axis(ctx, a, rank) for a in ctx.ints(axes, "axes")] if axes is not None else list(range(len(begin)))
    step_list = ctx.ints(steps, "steps") if steps is not None else [1] * len(begin)
    if isinstance(data, Sym):
        if any(not isinstance(i, int) for i in begin + finish):
            data = tensor_of(ctx, data)
        else:
            return sym_or_const(list(data.items)[slice(begin[0], finish[0], step_list[0])], scalar=False)
    index: list[Any] = [slice(None)] * rank
    result = tensor_of(ctx, data)
    for axis, start, stop, step in zip(axis_list, begin, finish, step_list):
        if step == 0:
            raise ctx.error("slice step 0")
        if step > 0:
            index[axis] = slice(start, stop, step)
            continue
        size = static_shape(data)[axis]
        if size is None or not isinstance(start, int) or not isinstance(stop, int):
            raise ctx.error("a negative slice step needs static sizes")
        picked = list(range(size))[slice(start, stop, step)]
        result = ctx.call(torch.index_select, result, axis, Const(torch.tensor(picked, dtype=torch.int64)))
    if any(part != slice(None) for part in index):
        result = ctx.call(operator.getitem, result, tuple(index))
    return result


@op("Cast", "CastLike")
def cast(ctx: Ctx, x: Value, like: Optional[Value] = None) -> Value:
    if ctx.op_type == "CastLike":
        dtype = dtype_of(like)  # type: ignore[arg-type]
    else:
        to = ctx.attr("to")
        if to not in TORCH_DTYPES:
            raise ctx.error(f"cast to ONNX type {to} is not supported")
        dtype = TORCH_DTYPES[to]
    if isinstance(x, Sym) and dtype in INT_TYPES:
        return x
    x = tensor_of(ctx, x)
    return x if dtype_of(x) == dtype else ctx.method("to", x, dtype)


def _shape_items(ctx: Ctx, value: Value, what: str) -> list[Item]:
    items = items_of(ctx, value, what)
    check_elements([item_probe(i, 0) for i in items], what)
    return items


@op("ConstantOfShape")
def constant_of_shape(ctx: Ctx, target: Value) -> Value:
    fill = ctx.attr("value", torch.zeros(1))
    items = _shape_items(ctx, target, "ConstantOfShape shape")
    if all(isinstance(i, int) for i in items):
        return Const(torch.full(items, fill.reshape(-1)[0].item(), dtype=fill.dtype))
    return ctx.call(torch.full, Sym(tuple(items)), fill.reshape(-1)[0].item(), dtype=fill.dtype, device=ctx.builder.device())


@op("Range")
def range_op(ctx: Ctx, start: Value, limit: Value, delta: Value) -> Value:
    values = [sym_from(v) if isinstance(v, Sym) else v for v in (start, limit, delta)]
    if all(isinstance(v, Const) for v in values):
        first, last, step = (v.value.item() for v in values)  # type: ignore[union-attr]
        if step == 0:
            raise ctx.error("Range delta 0")
        check_elements([max(0, int(-(-(last - first) // step)))], "Range")
        return Const(torch.arange(first, last, step, dtype=start.value.dtype))  # type: ignore[union-attr]
    scalars = [v[0] if isinstance(v, list) else v for v in values]
    return ctx.call(torch.arange, *scalars, dtype=dtype_of(start), device=ctx.builder.device(), inline_scalars=True)


@op("Expand")
def expand(ctx: Ctx, x: Value, target: Value) -> Value:
    items = _shape_items(ctx, target, "Expand shape")
    x = tensor_of(ctx, x)
    rank_in, rank_out = rank_of(x), max(rank_of(x), len(items))
    in_shape = [1] * (rank_out - rank_in) + static_shape(x)
    padded: list[Item] = [1] * (rank_out - len(items)) + list(items)
    final: list[Item] = []
    for axis, (have, want) in enumerate(zip(in_shape, padded)):
        new_axis = axis < rank_out - rank_in
        if isinstance(want, int) and want == 1:
            final.append(1 if new_axis else -1)
        elif isinstance(want, int) and have == want and not new_axis:
            final.append(-1)
        else:
            final.append(want)
    if rank_out > rank_in:
        x = reshape(ctx, x, [1] * (rank_out - rank_in) + [dim_item(ctx, x, a) for a in range(rank_in)])
    if all(f == -1 for f in final):
        return x
    return ctx.method("expand", x, Sym(tuple(final)) if any(isinstance(f, Dyn) for f in final) else final)


@op("Tile")
def tile(ctx: Ctx, x: Value, repeats: Value) -> Value:
    counts = ctx.ints(repeats, "repeats")
    check_elements([(size or 1) * count for size, count in zip(static_shape(x), counts)], "Tile output")
    return ctx.method("repeat", tensor_of(ctx, x), counts)


@op("Split")
def split(ctx: Ctx, x: Value, sizes: Optional[Value] = None) -> list[Value]:
    axis = normalise_axis(ctx, ctx.attr("axis", 0), rank_of(x))
    total = static_shape(x)[axis]
    if total is None:
        raise ctx.error("Split along an axis that follows the batch")
    parts = ctx.ints(sizes, "split") if sizes is not None else list(ctx.attr("split", []))
    if not parts:
        count = ctx.attr("num_outputs", ctx.outputs)
        chunk = -(-total // count)
        parts = [min(chunk, total - i * chunk) for i in range(count)]
    if sum(parts) != total:
        raise ctx.error(f"split sizes {parts} do not add up to {total}")
    results = []
    offset = 0
    for part in parts:
        results.append(ctx.call(torch.narrow, tensor_of(ctx, x), axis, offset, part))
        offset += part
    return results


_PAD_MODULES = {("constant", 1): nn.ConstantPad1d, ("constant", 2): nn.ConstantPad2d, ("constant", 3): nn.ConstantPad3d,
                ("reflect", 1): nn.ReflectionPad1d, ("reflect", 2): nn.ReflectionPad2d, ("reflect", 3): nn.ReflectionPad3d,
                ("edge", 1): nn.ReplicationPad1d, ("edge", 2): nn.ReplicationPad2d, ("edge", 3): nn.ReplicationPad3d}


@op("Pad")
def pad(ctx: Ctx, x: Value, pads: Optional[Value] = None, value: Optional[Value] = None,
        axes: Optional[Value] = None) -> Value:
    rank = rank_of(x)
    mode = ctx.attr("mode", "constant")
    amounts = ctx.ints(pads, "pads") if ctx.opset >= 11 else list(ctx.attr("pads"))
    fill = float(ctx.const(value, "constant_value").reshape(-1)[0]) if value is not None else float(ctx.attr("value", 0.0))
    axis_list = [normalise_axis(ctx, a, rank) for a in ctx.ints(axes, "axes")] if axes is not None else list(range(rank))
    begins, ends = [0] * rank, [0] * rank
    for i, axis in enumerate(axis_list):
        begins[axis], ends[axis] = amounts[i], amounts[i + len(axis_list)]
    check_elements([max(0, (size or 1) + b + e) for size, b, e in zip(static_shape(x), begins, ends)], "Pad output")
    padded = [a for a in range(rank) if begins[a] or ends[a]]
    if not padded:
        return x
    first = min(padded)
    spatial = rank - first
    module = _PAD_MODULES.get((mode, spatial))
    if module is not None and first >= 2 and rank == spatial + 2 and min(begins + ends) >= 0:
        pairs = torch_pads(begins[first:], ends[first:])
        return ctx.module(module(pairs, fill) if mode == "constant" else module(pairs), tensor_of(ctx, x))
    torch_mode = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}.get(mode)
    if torch_mode is None:
        raise ctx.error(f"pad mode {mode!r} is not supported")
    pairs = torch_pads(begins[first:], ends[first:])
    if torch_mode == "constant":
        return ctx.call(F.pad, tensor_of(ctx, x), pairs, mode="constant", value=fill)
    return ctx.call(F.pad, tensor_of(ctx, x), pairs, mode=torch_mode)
