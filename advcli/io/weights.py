"""The names, dtypes and shapes of stored tensors, compared with what a model expects before anything
is allocated for them.

A safetensors file opens with a header listing its tensors; a model built on the ``meta`` device
lists its parameters without allocating them. Comparing the two refuses weights that do not fit
(a hand-edited ``model.json``, a forged file) before the model or the tensors take any memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from ..errors import CheckpointError

Layout = dict[str, tuple[str, tuple[int, ...]]]  # tensor name -> (dtype, shape)

_DTYPE_NAMES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
                torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
                torch.bool: "BOOL"}


def dtype_name(dtype: torch.dtype) -> str:
    """The safetensors name of a torch dtype (``F32``)."""
    return _DTYPE_NAMES.get(dtype, str(dtype))


def file_layout(path: Path) -> Layout:
    """The tensors a safetensors file holds, from its header only."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            return {name: (handle.get_slice(name).get_dtype(), tuple(handle.get_slice(name).get_shape()))
                    for name in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: unreadable safetensors file ({' '.join(str(error).split())[:200]})") from None


def tensors_layout(tensors: dict[str, torch.Tensor]) -> Layout:
    return {name: (dtype_name(value.dtype), tuple(value.shape)) for name, value in tensors.items()}


def model_layout(build: Callable[[], nn.Module]) -> Layout:
    """The state dict `build()` would have, built on the meta device (nothing allocated)."""
    with torch.device("meta"):
        model = build()
    return tensors_layout(model.state_dict())


def _shown(entry: tuple[str, tuple[int, ...]]) -> str:
    return f"{entry[0]} {list(entry[1])}"


def check_layout(found: Layout, expected: Layout, source: str, what: str) -> None:
    """`found` holds exactly the tensors of `expected`, each of its dtype and shape."""
    missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    if missing:
        raise CheckpointError(f"{source}: the weights do not fit {what}: tensor {missing[0]!r} is missing"
                              + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    if extra:
        raise CheckpointError(f"{source}: the weights do not fit {what}: unexpected tensor {extra[0]!r}"
                              + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""))
    for name, entry in expected.items():
        if found[name] != entry:
            raise CheckpointError(f"{source}: the weights do not fit {what}: tensor {name!r} is "
                                  f"{_shown(found[name])}, expected {_shown(entry)}")
