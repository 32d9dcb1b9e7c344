"""What a third-party file expects, against advcli's pixel space: batches (N, C, H, W) in [0, 1], RGB.

:class:`InputContract` names the file's input range, the normalisation applied outside it, its
layout and channel order, and whether its outputs are logits or probabilities. :class:`PixelToFile`
maps pixel batches to the file's input as a torch module (differentiable, on the inputs' device),
so attacks keep eps in [0, 1] pixel units whatever the file takes. A file with a uint8 input accepts
only the grid k/255: :func:`to_grid` and :func:`round_to_grid` put images on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Optional, Sequence

import torch
from torch import nn

from ...errors import AdvcliError
from . import vocabulary
from .errors import ConversionError

LAYOUTS = tuple(vocabulary.LAYOUTS.names())
OUTPUT_KINDS = tuple(vocabulary.OUTPUT_KINDS.names())
CHANNEL_ORDERS = tuple(vocabulary.CHANNEL_ORDERS.names())
INPUT_RANGES = ((0.0, 1.0), (0.0, 255.0))
GRID = 255


def _numbers(value: Any, name: str) -> Optional[tuple[float, ...]]:
    """`value` (None, a number, numbers, or text such as ``"0.485,0.456,0.406"``) as a tuple of floats."""
    if value is None:
        return None
    try:
        if isinstance(value, str):
            numbers = tuple(float(part) for part in value.split(","))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            numbers = (float(value),)
        else:
            numbers = tuple(float(part) for part in value)
    except (TypeError, ValueError):
        raise AdvcliError(f"`{name}` must be numbers separated by commas, got {value!r}", param=name) from None
    if not numbers or not all(math.isfinite(number) for number in numbers):
        raise AdvcliError(f"`{name}` must be finite numbers, got {value!r}", param=name)
    return numbers


def _names(value: Any) -> Optional[tuple[str, ...]]:
    if value is None:
        return None
    names = tuple(part.strip() for part in value.split(",")) if isinstance(value, str) else tuple(map(str, value))
    if not names or not all(names):
        raise AdvcliError(f"`class_names` must be non-empty names separated by commas, got {value!r}",
                          param="class_names")
    return names


def _choice(value: str, name: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise AdvcliError(f"`{name}` must be one of {', '.join(choices)}, got {value!r}", param=name)


@dataclass(frozen=True)
class InputContract:
    """How advcli's pixels in [0, 1] become the model's input, and what its outputs are.

    ``input_range``: the pixel range the model takes, (0, 1) or (0, 255). ``mean``/``std``: per-channel
    normalisation applied before the model (``(v - mean) / std``), in the units of ``input_range``
    and the model's channel order. ``layout``: ``nchw`` or ``nhwc``. ``channel_order``: ``bgr``
    reverses the three channels. ``outputs``: ``logits``, ``probabilities``, or ``auto`` (a trailing
    Softmax is found in an ONNX graph and attacked before it; outputs that look like probabilities
    are attacked through their logarithm). ``class_names``: for reports only. Text forms such as
    ``"0,255"`` or ``"0.485,0.456,0.406"`` are accepted wherever numbers are, so the flat settings of
    a config can come straight from the command line.
    """

    input_range: tuple[float, float] = (0.0, 1.0)
    mean: Optional[tuple[float, ...]] = None
    std: Optional[tuple[float, ...]] = None
    layout: str = "nchw"
    outputs: str = "auto"
    channel_order: str = "rgb"
    class_names: Optional[tuple[str, ...]] = None

    def __post_init__(self) -> None:
        value_range = _numbers(self.input_range, "input_range")
        if value_range not in INPUT_RANGES:
            raise AdvcliError(f"`input_range` must be 0,1 or 0,255, got {self.input_range!r}", param="input_range")
        mean, std = _numbers(self.mean, "mean"), _numbers(self.std, "std")
        for name, value in (("input_range", value_range), ("mean", mean), ("std", std),
                            ("class_names", _names(self.class_names))):
            object.__setattr__(self, name, value)
        _choice(self.layout, "layout", LAYOUTS)
        _choice(self.outputs, "outputs", OUTPUT_KINDS)
        _choice(self.channel_order, "channel_order", CHANNEL_ORDERS)
        if (mean is None) != (std is None):
            raise AdvcliError("`mean` and `std` go together: give both or neither", param="mean" if mean else "std")
        if mean is not None and std is not None:
            if len(mean) != len(std):
                raise AdvcliError(f"`mean` has {len(mean)} channels and `std` {len(std)}", param="std")
            if min(std) <= 0:
                raise AdvcliError(f"`std` must be > 0, got {','.join(f'{v:g}' for v in std)}", param="std")

    def changed(self) -> list[str]:
        """The settings that differ from the default contract (advcli's own pixels and logits)."""
        default = InputContract()
        return [f.name for f in fields(self) if getattr(self, f.name) != getattr(default, f.name)]

    def warnings(self) -> list[str]:
        """Settings that contradict each other as people usually write them (the units of `mean`)."""
        if self.mean is None or self.std is None:
            return []
        if self.top == GRID and max(map(abs, self.mean)) <= 1 and max(self.std) <= 1:
            return ["`mean` and `std` look stated in [0, 1] units, but they apply in the units of `input_range` "
                    "0,255 (multiply them by 255, e.g. 123.675,116.28,103.53 and 58.395,57.12,57.375 for ImageNet)"]
        if self.top == 1.0 and max(map(abs, self.mean)) > 2:
            return ["`mean` values above 2 look stated in 0..255 units, but `input_range` is 0,1"]
        return []

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
            raise AdvcliError(f"`channel_order` bgr needs 3 channels, the input has {channels}", param="channel_order")
        if self.mean is not None and len(self.mean) not in (1, channels):
            raise AdvcliError(f"`mean` and `std` have {len(self.mean)} values for {channels} channels", param="mean")


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
