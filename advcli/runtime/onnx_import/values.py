"""Values of an ONNX graph during conversion, and the builder that turns operations on them into an fx graph.

A value is one of three kinds:

* :class:`Const`: known while converting (initializers, Constant nodes, anything computed from
  them alone). Operations on constants are folded: evaluated once, never put in the graph.
* :class:`Dyn`: computed at run time from the image input, by an fx node. Each carries its result on
  two *probe* batches (random inputs of two batch sizes) so that shapes are known while building:
  a dimension equal on both probes is static, one that differs follows the batch.
* :class:`Sym`: a small integer shape vector some of whose entries follow the batch (``Shape`` of a
  runtime tensor). Its entries are ints or runtime ints (:class:`Dyn`), so shape arithmetic
  (Gather, Concat, Mul...) folds to plain numbers wherever it can and reshapes end up as
  ``x.reshape(-1, 64)`` rather than as graph code.
"""

from __future__ import annotations

import itertools
import operator
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, Union

import torch
from torch import fx, nn

from .errors import ConversionError

# Largest tensor (in elements) that conversion creates or accepts from a file: 2**28 float32 values
# are 1 GiB, far beyond any image classifier's single tensor; anything larger is refused unallocated.
MAX_ELEMENTS = 1 << 28


@dataclass(frozen=True, eq=False)
class Const:
    """A tensor known while converting."""

    value: torch.Tensor


@dataclass(frozen=True, eq=False)
class Dyn:
    """A value computed at run time by `node`; `probes` holds its result on the two probe batches."""

    node: fx.Node
    probes: tuple[Any, Any]

    @property
    def rank(self) -> int:
        return self.probes[0].dim()

    @property
    def dtype(self) -> torch.dtype:
        return self.probes[0].dtype

    def dim(self, axis: int) -> Optional[int]:
        """The size of `axis` when it is static (the same on both probes), else None."""
        first, second = (probe.shape[axis] for probe in self.probes)
        return first if first == second else None

    def static_shape(self) -> list[Optional[int]]:
        return [self.dim(axis) for axis in range(self.rank)]


Item = Union[int, Dyn]


@dataclass(frozen=True, eq=False)
class Sym:
    """An int64 shape vector (or scalar) whose entries are ints or runtime ints."""

    items: tuple[Item, ...]
    scalar: bool = False


Value = Union[Const, Dyn, Sym]


def make_sym(items: Sequence[Item], scalar: bool = False) -> Value:
    """A :class:`Sym`, or a :class:`Const` when every entry is known."""
    items = tuple(items)
    if all(isinstance(item, int) for item in items):
        tensor = torch.tensor(list(items), dtype=torch.int64)
        return Const(tensor.reshape(()) if scalar else tensor)
    return Sym(items, scalar)


def check_elements(shape: Sequence[int], what: str) -> None:
    """Refuse to create a tensor of `shape` that is negative or larger than :data:`MAX_ELEMENTS`."""
    count = 1
    for size in shape:
        if size < 0:
            raise ConversionError(f"{what}: negative dimension in shape {list(shape)}")
        count *= size
    if count > MAX_ELEMENTS:
        raise ConversionError(f"{what}: shape {list(shape)} has {count:,} elements, over the limit of "
                              f"{MAX_ELEMENTS:,}; refusing to allocate it")


def dtype_of(value: Value) -> torch.dtype:
    if isinstance(value, Const):
        return value.value.dtype
    if isinstance(value, Dyn):
        return value.dtype
    return torch.int64


def _has_dynamic(tree: Any) -> bool:
    if isinstance(tree, (Dyn, Sym)):
        return True
    if isinstance(tree, (list, tuple)):
        return any(_has_dynamic(item) for item in tree)
    if isinstance(tree, dict):
        return any(_has_dynamic(item) for item in tree.values())
    if isinstance(tree, slice):
        return any(_has_dynamic(item) for item in (tree.start, tree.stop, tree.step))
    return False


class GraphBuilder:
    """Builds one fx graph over a root module that owns every leaf, parameter and constant buffer."""

    def __init__(self) -> None:
        self.root = nn.Module()
        self.graph = fx.Graph()
        self._buffers: dict[int, fx.Node] = {}
        self._counter = itertools.count()
        self.input: Optional[Dyn] = None
        self._device: Optional[Dyn] = None

    def placeholder(self, name: str, probes: tuple[torch.Tensor, torch.Tensor]) -> Dyn:
        self.input = Dyn(self.graph.placeholder(name), probes)
        return self.input

    def device(self) -> Dyn:
        """The input's device, for tensors the graph creates at run time."""
        if self._device is None:
            assert self.input is not None
            node = self.graph.call_function(getattr, (self.input.node, "device"))
            self._device = Dyn(node, tuple(probe.device for probe in self.input.probes))  # type: ignore[arg-type]
        return self._device

    def _name(self, hint: str) -> str:
        cleaned = "".join(ch if ch.isalnum() else "_" for ch in hint).strip("_").lower() or "node"
        return f"{cleaned[:40]}_{next(self._counter)}"

    def buffer(self, tensor: torch.Tensor, hint: str = "const") -> fx.Node:
        """A graph node reading `tensor`, registered once as a buffer of the root module."""
        key = id(tensor)
        if key not in self._buffers:
            name = self._name(hint)
            self.root.register_buffer(name, tensor)
            self._buffers[key] = self.graph.get_attr(name)
        return self._buffers[key]

    def lower(self, tree: Any, probe: Optional[int], inline_scalars: bool = False) -> Any:
        """`tree` with values replaced by graph nodes (`probe` None) or by probe `probe`'s results."""
        if isinstance(tree, Const):
            tensor = tree.value
            if inline_scalars and tensor.dim() == 0:
                return tensor.item()
            return tensor if probe is not None else self.buffer(tensor)
        if isinstance(tree, Dyn):
            return tree.node if probe is None else tree.probes[probe]
        if isinstance(tree, Sym):
            return [self.lower(item, probe) for item in tree.items]
        if isinstance(tree, (list, tuple)):
            return type(tree)(self.lower(item, probe, inline_scalars) for item in tree)
        if isinstance(tree, dict):
            return {key: self.lower(item, probe, inline_scalars) for key, item in tree.items()}
        if isinstance(tree, slice):
            return slice(*(self.lower(part, probe, inline_scalars) for part in (tree.start, tree.stop, tree.step)))
        return tree

    def call(self, fn: Callable[..., Any], *args: Any, inline_scalars: bool = False, **kwargs: Any) -> Value:
        """``fn(*args, **kwargs)``: folded when every argument is known, else a call_function node."""
        if not _has_dynamic((args, kwargs)):
            return Const(_as_tensor(fn(*self.lower(args, 0, inline_scalars), **self.lower(kwargs, 0, inline_scalars))))
        node = self.graph.call_function(fn, self.lower(args, None, inline_scalars), self.lower(kwargs, None, inline_scalars))
        return Dyn(node, self._probe(fn, args, kwargs, inline_scalars))

    def method(self, name: str, receiver: Value, *args: Any, **kwargs: Any) -> Value:
        """``receiver.name(*args, **kwargs)`` (folded when everything is known)."""
        if not _has_dynamic((receiver, args, kwargs)):
            return Const(_as_tensor(getattr(self.lower(receiver, 0), name)(*self.lower(args, 0), **self.lower(kwargs, 0))))
        node = self.graph.call_method(name, (self.lower(receiver, None), *self.lower(args, None)), self.lower(kwargs, None))

        def run(target: Any, *rest: Any, **options: Any) -> Any:
            return getattr(target, name)(*rest, **options)

        return Dyn(node, self._probe(run, (receiver, *args), kwargs, False))

    def module(self, leaf: nn.Module, *args: Value, hint: str) -> Value:
        """`leaf` applied to `args` as a call_module node (evaluated directly on constants)."""
        leaf.eval()
        if not _has_dynamic(args):
            with torch.no_grad():
                return Const(leaf(*self.lower(args, 0)))
        name = self._name(hint)
        self.root.add_module(name, leaf)
        node = self.graph.call_module(name, self.lower(args, None))
        return Dyn(node, self._probe(leaf, args, {}, False))

    def _probe(self, fn: Callable[..., Any], args: Any, kwargs: Any, inline_scalars: bool) -> tuple[Any, Any]:
        with torch.no_grad():
            results = tuple(fn(*self.lower(args, i, inline_scalars), **self.lower(kwargs, i, inline_scalars)) for i in (0, 1))
        for result in results:
            if isinstance(result, torch.Tensor):
                check_elements(result.shape, "an intermediate result on the probe batch")
        return results  # type: ignore[return-value]

    def item(self, value: Dyn, index: int) -> Dyn:
        """Element `index` of a runtime tuple (a node returning several outputs)."""
        node = self.graph.call_function(operator.getitem, (value.node, index))
        return Dyn(node, (value.probes[0][index], value.probes[1][index]))

    def graph_module(self, output: Dyn, class_name: str) -> fx.GraphModule:
        """A GraphModule over a copy of the graph that returns `output`, without dead code."""
        graph = fx.Graph()
        mapping: dict[fx.Node, fx.Node] = {}
        graph.graph_copy(self.graph, mapping)
        graph.output(mapping[output.node])
        draft = fx.GraphModule(self.root, graph)
        draft.graph.eliminate_dead_code()
        draft.graph.lint()
        # A second GraphModule over the pruned graph copies only the leaves and buffers it still uses.
        return fx.GraphModule(draft, draft.graph, class_name=class_name).eval()


def _as_tensor(result: Any) -> torch.Tensor:
    if isinstance(result, torch.Tensor):
        return result
    if isinstance(result, (tuple, list)) and all(isinstance(item, torch.Tensor) for item in result):
        raise ConversionError("internal: a folded operation returned several tensors")
    return torch.tensor(result)
