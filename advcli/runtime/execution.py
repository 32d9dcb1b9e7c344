"""Running a model for attacks and predictions: frozen eval mode, and CPU work in cache-sized chunks."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

import torch
from torch import nn


@contextmanager
def attack_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put `model` in eval mode with frozen parameters; restore both afterwards, module by module
    (a wrapper's own mode need not be that of the model it wraps)."""
    modes = [(module, module.training) for module in model.modules()]
    frozen = [p for p in model.parameters() if p.requires_grad]
    model.eval()
    for parameter in frozen:
        parameter.requires_grad_(False)
    try:
        yield model
    finally:
        for parameter in frozen:
            parameter.requires_grad_(True)
        for module, training in modes:
            module.training = training


# On the CPU, input gradients (and predictions) are taken this many samples at a time, so that one
# chunk's activations stay in cache (seed-cnn on a 2-core EPYC: 1.3 to 1.6 times the speed of 500 at
# once). Each sample's result is its own whatever the chunking: the losses are summed per sample.
CPU_GRADIENT_CHUNK = 128


def gradient_chunks(x: torch.Tensor) -> list[slice]:
    """The row ranges in which input gradients of `x` are taken (all at once off the CPU)."""
    size = CPU_GRADIENT_CHUNK if x.device.type == "cpu" else max(len(x), 1)
    return [slice(start, start + size) for start in range(0, len(x), size)] or [slice(0, 0)]


def by_chunks(fn: Callable[..., Any], x: torch.Tensor, *others: Optional[torch.Tensor]) -> Any:
    """``fn(x, *others)`` taken over the rows of :func:`gradient_chunks` (None passes through) and
    concatenated: a tensor, or each tensor of a returned tuple. Every row's result is its own."""
    chunks = gradient_chunks(x)
    if len(chunks) == 1:
        return fn(x, *others)
    # Each chunk's result goes straight into outputs sized once, and is freed: small results kept
    # between chunks would pin glibc's heap under every later chunk's activations, and the process
    # would grow with the number of chunks.
    outputs: Optional[tuple[torch.Tensor, ...]] = None
    as_tuple = False
    for rows in chunks:
        result = fn(x[rows], *(None if other is None else other[rows] for other in others))
        as_tuple = isinstance(result, tuple)
        parts = result if as_tuple else (result,)
        if outputs is None:
            outputs = tuple(part.new_empty((len(x), *part.shape[1:])) for part in parts)
        for output, part in zip(outputs, parts):
            output[rows] = part
        del result, parts
    assert outputs is not None
    return outputs if as_tuple else outputs[0]


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Predicted labels for `x` (on the CPU in chunks, as gradients are: see :func:`gradient_chunks`)."""
    return by_chunks(lambda xs: model(xs).argmax(1), x)
