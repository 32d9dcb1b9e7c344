"""Numeric precision of the heavy passes: attack gradients and training steps.

``auto`` picks bfloat16 where the hardware computes it natively (CPUs with AVX512-BF16 or AMX,
CUDA GPUs with bf16 support; fp16 on older CUDA GPUs, for attacks only) and float32 elsewhere.
Reduced precision only ever *crafts*: see :mod:`advcli.runtime.autocast`. The names are known
without importing torch (the command line lists them); torch is imported to resolve ``auto``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from ..errors import AdvcliError
from ..registry import Registry

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Precision:
    """A precision: the torch dtype autocast runs in (None: float32 throughout), whether training may
    use it, and whether it needs a CUDA device."""

    dtype: Optional[str]
    trains: bool = True
    cuda_only: bool = False


# ``auto`` stands for the one :func:`resolve_precision` picks.
PRECISIONS: Registry[Optional[Precision]] = Registry("precision", param="precision", order=("auto", "fp32", "bf16", "fp16"),
                                                     entries={
    "auto": None,
    "fp32": Precision(None),
    "bf16": Precision("bfloat16"),
    "fp16": Precision("float16", trains=False, cuda_only=True),
})


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX), read from /proc/cpuinfo."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def check_precision(choice: str) -> None:
    """Reject an unknown precision name before any work is done."""
    PRECISIONS.check(choice)


def autocast_dtype(precision: str) -> Optional["torch.dtype"]:
    """The dtype autocast runs in at a resolved `precision` (None for fp32)."""
    import torch

    entry = PRECISIONS.get(precision)
    if entry is None:
        raise ValueError("resolve 'auto' to a precision first (resolve_precision)")
    return None if entry.dtype is None else getattr(torch, entry.dtype)


def is_reduced(precision: str) -> bool:
    """Whether a resolved `precision` crafts under autocast (bf16, fp16)."""
    entry = PRECISIONS.get(precision)
    return entry is not None and entry.dtype is not None


def resolve_precision(choice: str, device: "torch.device", *, training: bool = False) -> str:
    """Map ``auto|fp32|bf16|fp16`` to the precision that will run on `device`.

    fp16 needs a CUDA device, and is refused for `training` (it would need loss scaling);
    ``auto`` then never picks it.
    """
    import torch

    check_precision(choice)
    device = torch.device(device)
    entry = PRECISIONS.get(choice)
    if entry is not None and training and not entry.trains:
        raise AdvcliError(f"`precision` {choice} is not supported for training (it needs loss scaling); "
                          "use bf16 or fp32", param="precision")
    if entry is not None and entry.cuda_only and device.type != "cuda":
        raise AdvcliError(f"`precision` {choice} needs a CUDA device; use bf16 or fp32 on the CPU", param="precision")
    if entry is not None:
        return choice
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16"
        return "fp32" if training else "fp16"  # attack gradients in fp16 are rescaled: see Autocast
    if device.type == "cpu":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    return "fp32"
