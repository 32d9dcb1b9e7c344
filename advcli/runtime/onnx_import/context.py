"""The operator registry and what each operator's converter gets: the builder, the opset, the node's
attributes, and helpers for shapes that may follow the batch."""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import torch

from .errors import ConversionError
from .values import Const, Dyn, GraphBuilder, Item, Sym, Value, make_sym

Handler = Callable[..., Any]
OPS: dict[str, Handler] = {}


def op(*names: str) -> Callable[[Handler], Handler]:
    """Register a converter for the ONNX operators `names`."""

    def register(handler: Handler) -> Handler:
        for name in names:
            OPS[name] = handler
        return handler

    return register


@dataclass
class Ctx:
    """One node being converted."""

    builder: GraphBuilder
    opset: int
    op_type: str
    name: str
    attrs: dict[str, Any] = field(default_factory=dict)
    outputs: int = 1  # how many outputs the node declares

    def attr(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)

    def error(self, message: str) -> ConversionError:
        return ConversionError(f"node {self.name!r} ({self.op_type}): {message}")

    def const(self, value: Optional[Value], what: str) -> torch.Tensor:
        """A constant input's tensor; a runtime one is refused with `what` named."""
        if isinstance(value, Const):
            return value.value
        if value is None:
            raise self.error(f"{what} is missing")
        raise self.error(f"{what} must be a constant (it is computed at run time)")

    def ints(self, value: Optional[Value], what: str) -> list[int]:
        return [int(v) for v in self.const(value, what).reshape(-1).tolist()]

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Value:
        return self.builder.call(fn, *args, **kwargs)

    def method(self, name: str, receiver: Value, *args: Any, **kwargs: Any) -> Value:
        return self.builder.method(name, receiver, *args, **kwargs)

    def module(self, leaf: torch.nn.Module, *args: Value) -> Value:
        return self.builder.module(leaf, *args, hint=type(leaf).__name__)


def rank_of(value: Value) -> int:
    if isinstance(value, Const):
        return value.value.dim()
    if isinstance(value, Dyn):
        return value.rank
    return 0 if value.scalar else 1


def static_shape(value: Value) -> list[Optional[int]]:
    if isinstance(value, Const):
        return list(value.value.shape)
    if isinstance(value, Dyn):
        return value.static_shape()
    return [] if value.scalar else [len(value.items)]


def normalise_axis(ctx: Ctx, axis: int, rank: int) -> int:
    if not -rank <= axis < max(rank, 1):
        raise ctx.error(f"axis {axis} is out of range for rank {rank}")
    return axis % rank if rank else 0


def dim_item(ctx: Ctx, value: Value, axis: int) -> Item:
    """The size of `axis`: an int when static, else a runtime int (``x.size(axis)``)."""
    size = static_shape(value)[axis]
    if size is not None:
        return size
    assert isinstance(value, Dyn)
    node = ctx.builder.graph.call_method("size", (value.node, axis))
    return Dyn(node, (value.probes[0].shape[axis], value.probes[1].shape[axis]))


def items_of(ctx: Ctx, value: Optional[Value], what: str) -> list[Item]:
    """The entries of a 1-D integer shape input (constant or :class:`Sym`)."""
    if isinstance(value, Sym):
        return list(value.items)
    return ctx.ints(value, what)


def item_probe(item: Item, probe: int) -> int:
    return item if isinstance(item, int) else int(item.probes[probe])


def item_arith(ctx: Ctx, fn: Callable[[Any, Any], Any], left: Item, right: Item) -> Item:
    """`fn` on two shape entries: a plain int when both are known."""
    if isinstance(left, int) and isinstance(right, int):
        return int(fn(left, right))
    result = ctx.builder.call(fn, left, right)
    assert isinstance(result, Dyn)
    return result


def floor_div(left: int, right: int) -> int:
    """Integer division of shape entries, truncating towards zero as ONNX's Div does."""
    return int(left / right) if (left < 0) != (right < 0) else left // right


def product(ctx: Ctx, items: Sequence[Item]) -> Item:
    total: Item = 1
    for item in items:
        total = item_arith(ctx, operator.mul, total, item)
    return total


def reshape(ctx: Ctx, x: Value, items: Sequence[Item]) -> Value:
    """`x` reshaped to `items` (-1 allowed, no zeros): static sizes become ints, and when at most one
    size follows the batch it becomes -1, so the graph carries no shape arithmetic. A reshape that
    flattens everything after the batch axis becomes ``nn.Flatten``."""
    if isinstance(x, Const) and all(isinstance(item, int) for item in items):
        return Const(x.value.reshape(list(items)))  # type: ignore[arg-type]
    if not isinstance(x, Dyn):
        x = ctx.builder.call(_materialise, x) if isinstance(x, Sym) else x
    if isinstance(x, Const):
        out_probes = [x.value.reshape([item_probe(item, p) for item in items]) for p in (0, 1)]
        return _emit_reshape(ctx, x, items, out_probes)
    assert isinstance(x, Dyn)
    try:
        out_probes = [x.probes[p].reshape([item_probe(item, p) for item in items]) for p in (0, 1)]
    except RuntimeError as error:
        raise ctx.error(f"cannot reshape {list(x.probes[0].shape)} to {[item_probe(i, 0) for i in items]}: "
                        f"{str(error).splitlines()[0]}") from None
    if x.rank > 2 and all(out.shape == (probe.shape[0], probe[0].numel()) for out, probe in zip(out_probes, x.probes)):
        return ctx.module(torch.nn.Flatten(1), x)
    return _emit_reshape(ctx, x, items, out_probes)


def _emit_reshape(ctx: Ctx, x: Value, items: Sequence[Item], out_probes: list[torch.Tensor]) -> Value:
    first, second = out_probes[0].shape, out_probes[1].shape
    dynamic = [axis for axis, (a, b) in enumerate(zip(first, second)) if a != b]
    if len(dynamic) <= 1:
        target: list[Any] = [-1 if axis in dynamic else size for axis, size in enumerate(first)]
    else:
        target = list(items)
    return ctx.method("reshape", x, Sym(tuple(target)) if any(isinstance(t, Dyn) for t in target) else target)


def _materialise(items: Sequence[Any]) -> torch.Tensor:
    """A shape vector of runtime ints as an int64 tensor (shape arithmetic that could not be folded)."""
    return torch.tensor(list(items), dtype=torch.int64)


def tensor_of(ctx: Ctx, value: Value) -> Value:
    """`value` as a tensor value: a :class:`Sym` becomes a runtime int64 tensor."""
    if isinstance(value, Sym):
        result = ctx.builder.call(_materialise, value)
        if value.scalar:
            result = ctx.method("reshape", result, [])
        return result
    return value


def sym_from(value: Value) -> Optional[list[Item]]:
    """Entries of a small 1-D/0-D int64 value usable as shape arithmetic, or None."""
    if isinstance(value, Sym):
        return list(value.items)
    if isinstance(value, Const) and value.value.dtype in (torch.int64, torch.int32) and value.value.dim() <= 1 \
            and value.value.numel() <= 16:
        return [int(v) for v in value.value.reshape(-1).tolist()]
    return None


def is_scalar(value: Value) -> bool:
    return value.scalar if isinstance(value, Sym) else rank_of(value) == 0


def sym_or_const(items: Sequence[Item], scalar: bool) -> Value:
    return make_sym(items, scalar)


def resolve_pads(ctx: Ctx, auto_pad: str, pads: Optional[list[int]], spatial_in: list[Optional[int]],
                 kernel: list[int], strides: list[int], dilations: list[int]) -> list[int]:
    """ONNX pads [begins..., ends...] for a convolution or pooling, ``auto_pad`` resolved on static sizes."""
    count = len(kernel)
    if auto_pad in ("", "NOTSET"):
        pads = pads or [0] * (2 * count)
        if len(pads) != 2 * count:
            raise ctx.error(f"pads {pads} do not fit {count} spatial axes")
        return pads
    if auto_pad == "VALID":
        return [0] * (2 * count)
    if auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
        raise ctx.error(f"unknown auto_pad {auto_pad!r}")
    begins, ends = [], []
    for size, k, s, d in zip(spatial_in, kernel, strides, dilations):
        if size is None:
            raise ctx.error("auto_pad SAME needs static spatial sizes")
        total = max(0, (math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size)
        small, large = total // 2, total - total // 2
        begins.append(small if auto_pad == "SAME_UPPER" else large)
        ends.append(large if auto_pad == "SAME_UPPER" else small)
    return begins + ends


def torch_pads(begins: Sequence[int], ends: Sequence[int]) -> list[int]:
    """ONNX per-axis begins/ends as F.pad's (last axis first) pairs."""
    pairs: list[int] = []
    for begin, end in zip(reversed(list(begins)), reversed(list(ends))):
        pairs += [begin, end]
    return pairs
