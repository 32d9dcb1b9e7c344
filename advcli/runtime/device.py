"""Device selection. Nothing here touches CUDA until a device is actually requested, and torch is
imported only when a device is resolved (the command line lists the choices without it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from ..errors import AdvcliError
from ..registry import Registry

if TYPE_CHECKING:
    import torch

DEVICES: Registry[str] = Registry("device", param="device", order=("auto", "cpu", "cuda"), entries={
    "auto": "CUDA when torch can use it, else the CPU",
    "cpu": "the CPU",
    "cuda": "the first CUDA device (an error when torch cannot use CUDA)",
})


def cuda_unavailable_reason() -> Optional[str]:
    """Why CUDA cannot be used by torch here, or None when it can."""
    import torch

    if torch.version.cuda is None:
        return f"this torch build ({torch.__version__}) has no CUDA support"
    if not torch.cuda.is_available():
        return "no CUDA device is visible"
    return None


def resolve_device(choice: str = "auto") -> "torch.device":
    """Map ``auto|cpu|cuda`` to a torch device; ``cuda`` fails with the reason when unusable."""
    import torch

    if choice not in DEVICES:
        raise AdvcliError(f"`device` must be one of {DEVICES.choices()}, got {choice!r}", param="device")
    if choice == "cpu":
        return torch.device("cpu")
    reason = cuda_unavailable_reason()
    if choice == "cuda" and reason is not None:
        raise AdvcliError(f"`device` cuda is not usable: {reason}", param="device")
    return torch.device("cuda" if reason is None else "cpu")


def auto_fallback_note(choice: str) -> Optional[str]:
    """What ``auto`` fell back from, when that is news: CUDA support is installed but not usable.

    A torch build without CUDA simply means the CPU, and is not reported.
    """
    import torch

    if choice != "auto" or torch.version.cuda is None:
        return None
    reason = cuda_unavailable_reason()
    return None if reason is None else f"device auto: {reason}; running on the CPU"
