"""What a third-party file expects, against advcli's pixel space: batches (N, C, H, W) in [0, 1], RGB.

:class:`InputContract` names the file's input range, the normalisation applied outside it, its
layout and channel order, and whether its outputs are logits or probabilities. :class:`PixelToFile`
maps pixel batches to the file's input as a torch module (differentiable, on the inputs' device),
so attacks keep eps in [0, 1] pixel units whatever the file takes. A file with a uint8 input accepts
only the grid k/255: :func:`to_grid` and :func:`round_to_grid` put images on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import nn

from .errors import ConversionError

LAYOUTS = ("nchw", "nhwc")
OUTPUT_KINDS = ("auto", "logits", "probabilities")
CHANNEL_ORDERS = ("rgb", "bgr")
INPUT_RANGES = ((0.0, 1.0), (0.0, 255.0))
GRID = 255


@dataclass(frozen=True)
class InputContract:
    """How advcli's pixels in [0, 1] become the file's input, and what its outputs are.

    ``input_range``: the pixel range the file takes, (0, 1) or (0, 255). ``mean``/``std``: per-channel
    normalisation in that range, applied before the file (``(v - mean) / std``), given in the file's
    channel order. ``layout``: ``nchw`` or ``nhwc``. ``channel_order``: ``bgr`` reverses the three
    channels. ``outputs``: ``logits``, ``probabilities``, or ``auto`` (a trailing Softmax is found in
    the graph and attacked before it). ``class_names``: for reports only.
    """

    input_range: tuple[float, float] = (0.0, 1.0)
    mean: Optional[tuple[float, ...]] = None
    std: Optional[tuple[float, ...]] = None
    layout: str = "nchw"
    outputs: str = "auto"
    channel_order: str = "rgb"
    class_names: Optional[tuple[str, ...]] = None

    def __post_init__(self) -> None:
        if tuple(float(v) for v in self.input_range) not in INPUT_RANGES:
            raise ConversionError(f"input_range must be (0, 1) or (0, 255), got {tuple(self.input_range)}")
        if self.layout not in LAYOUTS:
            raise ConversionError(f"layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        if self.outputs not in OUTPUT_KINDS:
            raise ConversionError(f"outputs must be one of {', '.join(OUTPUT_KINDS)}, got {self.outputs!r}")
        if self.channel_order not in CHANNEL_ORDERS:
            raise ConversionError(f"channel_order must be one of {', '.join(CHANNEL_ORDERS)}, got {self.channel_order!r}")
        if (self.mean is None) != (self.std is None):
            raise ConversionError("mean and std go together: give both or neither")
        if self.mean is not None and self.std is not None:
            if len(self.mean) != len(self.std):
                raise ConversionError(f"mean has {len(self.mean)} channels and std {len(self.std)}")
            if not all(math.isfinite(v) for v in (*self.mean, *self.std)) or min(self.std) <= 0:
                raise ConversionError("mean must be finite and std finite and > 0")

    @property
    def top(self) -> float:
        return float(self.input_range[1])

    def pixel_shape(self, file_dims: Sequence[int]) -> tuple[int, int, int]:
        """advcli's (C, H, W) for the file's non-batch input sizes."""
        if self.layout == "nhwc":
            height, width, channels = file_dims
            return channels, height, width
        return tuple(file_dims)  # type: ignore[return-value]

    def check_channels(self, channels: int) -> None:
        if self.channel_order == "bgr" and channels != 3:
            raise ConversionError(f"channel_order bgr needs 3 channels, the input has {channels}")
        if self.mean is not None and len(self.mean) not in (1, channels):
            raise ConversionError(f"mean/std have {len(self.mean)} values for {channels} channels")


class PixelToFile(nn.Module):
    """Pixel batches (N, C, H, W) in [0, 1] to what the file takes (float; rounding to a uint8 grid is
    the judge's, see :class:`advcli.runtime.onnx_import.judge.OnnxJudge`)."""

    def __init__(self, contract: InputContract, channels: int) -> None:
        super().__init__()
        contract.check_channels(channels)
        self.contract = contract
        self.flip = contract.channel_order == "bgr"
        self.nhwc = contract.layout == "nhwc"
        mean = contract.mean or (0.0,)
        std = contract.std or (1.0,)
        self.register_buffer("scale", torch.tensor(contract.top))
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.normalise = contract.mean is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.flip:
            x = x.flip(1)
        if self.contract.top != 1.0:
            x = x * self.scale.to(x.dtype)
        if self.normalise:
            x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        return x.permute(0, 2, 3, 1) if self.nhwc else x


def to_grid(x: torch.Tensor) -> torch.Tensor:
    """`x` rounded to the nearest multiple of 1/255 (what a uint8 file can be given)."""
    return torch.round(x * GRID) / GRID


def grid_eps(eps: float) -> float:
    """The largest L-inf budget a uint8 file can realise within `eps`: whole grid steps, floor(eps·255)/255.

    Attacks on such a file should run at this budget: their points then need no shrinking when
    :func:`round_to_grid` puts them on the grid (Square's ±eps corners land on it exactly), whereas a
    point found at eps itself and shrunk afterwards may no longer fool the model.
    """
    return math.floor(eps * GRID + 1e-6) / GRID


def round_to_grid(x_adv: torch.Tensor, x: torch.Tensor, *, eps: float, norm: str = "linf") -> torch.Tensor:
    """Adversarial images moved onto the k/255 grid without leaving the eps-ball around the grid image `x`.

    L-inf: each pixel's change is rounded to whole grid steps, at most floor(eps·255) of them. L2:
    each change is truncated towards zero, which never lengthens the perturbation (so eps holds; the
    attack may lose a little strength). Results stay in [0, 1].
    """
    steps = (x_adv - x) * GRID
    if norm == "linf":
        limit = math.floor(eps * GRID + 1e-6)
        steps = torch.round(steps).clamp(-limit, limit)
    elif norm == "l2":
        steps = torch.trunc(steps)
    else:
        raise ConversionError(f"norm must be linf or l2, got {norm!r}")
    return (torch.round(x * GRID) + steps).clamp(0, GRID) / GRID
