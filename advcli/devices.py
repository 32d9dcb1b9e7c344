"""Device selection. Nothing here touches CUDA until a device is actually requested."""

from __future__ import annotations

from enum import Enum

import torch

from .errors import AdvcliError

DEVICE_CHOICES = ("auto", "cpu", "cuda")

DeviceChoice = Enum("DeviceChoice", {name: name for name in DEVICE_CHOICES}, type=str)  # type: ignore[misc]


def cuda_unavailable_reason() -> str | None:
    """Why CUDA cannot be used by torch here, or None when it can."""
    if torch.version.cuda is None:
        return f"this torch build ({torch.__version__}) has no CUDA support"
    if not torch.cuda.is_available():
        return "no CUDA device is visible"
    return None


def resolve_device(choice: str = "auto") -> torch.device:
    """Map ``auto|cpu|cuda`` to a torch device; ``cuda`` fails with the reason when unusable."""
    if choice not in DEVICE_CHOICES:
        raise AdvcliError(f"device must be one of {', '.join(DEVICE_CHOICES)}, got {choice!r}")
    if choice == "cpu":
        return torch.device("cpu")
    reason = cuda_unavailable_reason()
    if choice == "cuda" and reason is not None:
        raise AdvcliError(f"--device cuda is not usable: {reason}")
    return torch.device("cuda" if reason is None else "cpu")


def auto_fallback_note(choice: str) -> str | None:
    """What ``auto`` fell back from, when that is news: CUDA support is installed but not usable.

    A torch build without CUDA simply means the CPU, and is not reported.
    """
    if choice != "auto" or torch.version.cuda is None:
        return None
    reason = cuda_unavailable_reason()
    return None if reason is None else f"--device auto: {reason}; running on the CPU"
