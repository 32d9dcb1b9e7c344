"""Coefficients of the linear bounds that the backward pass (CROWN) carries from node to node.

A bound on target values ``t = A · v + b`` holds for some node's values ``v``; going backward through
an operation turns ``A`` into the coefficients of that operation's input. Two containers:

* :class:`Dense` holds ``A`` whole, one row per target (the margins, or a small set of neurons);
* :class:`Patches` holds, for each neuron of a spatial target (a convolution's output), only the
  window of the node it can depend on. A neuron of a 3x3 convolution over a 3x3 convolution sees a
  5x5 patch of the input, so intermediate bounds of a 28x28x64 layer need 25 input coefficients
  per neuron instead of 784: this is what makes CROWN on convolutional networks affordable.

Both have a batch dimension that may be 1 (the same coefficients for every sample, as they are until
the first activation is crossed) and broadcast against per-sample tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Optional, Union

import torch
import torch.nn.functional as F


def _interval_parts(lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return (upper + lower) / 2, (upper - lower) / 2


@dataclass
class Dense:
    """Coefficients ``tensor`` [Nb, S, *shape] of S linear functions of a node's values (Nb: 1 or N)."""

    tensor: torch.Tensor

    def mul(self, scale: torch.Tensor) -> "Dense":
        """Coefficients of ``v * scale`` for per-neuron `scale` [N or 1, *shape]."""
        return Dense(self.tensor * scale.unsqueeze(1))

    def dot(self, values: torch.Tensor) -> torch.Tensor:
        """``A · values`` per sample and row, [N, S], for per-neuron `values` [N or 1, *shape]."""
        return torch.matmul(self.tensor.flatten(2), values.flatten(1).unsqueeze(2)).squeeze(2)

    def clamp(self, min: Optional[float] = None, max: Optional[float] = None) -> "Dense":
        return Dense(self.tensor.clamp(min=min, max=max))

    def abs(self) -> "Dense":
        return Dense(self.tensor.abs())

    def __add__(self, other: "Dense") -> "Dense":
        return Dense(self.tensor + other.tensor)

    def __sub__(self, other: "Dense") -> "Dense":
        return Dense(self.tensor - other.tensor)

    def __neg__(self) -> "Dense":
        return Dense(-self.tensor)

    def map(self, transpose: Callable[[torch.Tensor], torch.Tensor]) -> "Dense":
        """Coefficients on an operation's input, from `transpose` acting on rows [B, *shape]."""
        batch, rows = self.tensor.shape[:2]
        moved = transpose(self.tensor.reshape(batch * rows, *self.tensor.shape[2:]))
        return Dense(moved.reshape(batch, rows, *moved.shape[1:]))

    def minimum(self, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
        """The smallest value of ``A · v`` over the box ``lower <= v <= upper``, [N, S]."""
        mid, radius = _interval_parts(lower, upper)
        return self.dot(mid) - self.abs().dot(radius)

    def maximum(self, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
        mid, radius = _interval_parts(lower, upper)
        return self.dot(mid) + self.abs().dot(radius)


@dataclass
class Patches:
    """Per-neuron windows of coefficients for a spatial target [Cv, Hv, Wv].

    ``tensor`` is [Nb, R, Wv', Cv, C, kh, kw] (Nb, R and Wv' may be 1: shared by samples and
    positions) for target rows ``rows[0] <= i < rows[1]`` and all ``width`` columns: target neuron
    (c, i, j) depends on the node's (channels C, spatial ``size``) window of rows starting at
    ``i * stride[0] - padding[0]`` and columns at ``j * stride[1] - padding[1]``. Entries outside the
    node are zero when ``clean`` (multiplying by per-neuron values read with zero padding makes them so).
    ``active`` [N, R, Wv], when given, marks the target positions whose bounds are wanted: work for
    the others may be skipped, and their results are then meaningless.
    """

    tensor: torch.Tensor
    stride: tuple[int, int]
    padding: tuple[int, int]
    rows: tuple[int, int]
    width: int
    size: tuple[int, int]
    clean: bool = True
    active: Optional[torch.Tensor] = None

    @staticmethod
    def identity(channels: int, rows: tuple[int, int], size: tuple[int, int], like: torch.Tensor,
                 active: Optional[torch.Tensor] = None) -> "Patches":
        """Each neuron of the target rows as its own coefficient (the backward pass starts here)."""
        eye = torch.eye(channels, dtype=like.dtype, device=like.device).view(1, 1, 1, channels, channels, 1, 1)
        return Patches(eye, (1, 1), (0, 0), rows, size[1], size, True, active)

    @property
    def kernel(self) -> tuple[int, int]:
        return self.tensor.shape[-2], self.tensor.shape[-1]

    @property
    def shared(self) -> bool:
        """Whether the coefficients are the same for every sample and position."""
        return self.tensor.shape[0] == self.tensor.shape[1] == self.tensor.shape[2] == 1

    def _with(self, tensor: torch.Tensor, clean: bool) -> "Patches":
        return replace(self, tensor=tensor, clean=clean)

    def window(self, values: torch.Tensor) -> torch.Tensor:
        """The part of `values` [N, C, H, W] that the target rows' windows cover, zero-padded, as
        [N, C, (R-1)*stride + kh, (Wv-1)*stride + kw]."""
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        count = self.rows[1] - self.rows[0]
        top, left = self.rows[0] * sh - ph, -pw
        bottom, right = top + (count - 1) * sh + kh, left + (self.width - 1) * sw + kw
        height, width = values.shape[-2:]
        pads = (max(0, -left), max(0, right - width), max(0, -top), max(0, bottom - height))
        padded = F.pad(values, pads) if any(pads) else values
        return padded[..., top + pads[2]:bottom + pads[2], left + pads[0]:right + pads[0]]

    def unfold(self, values: torch.Tensor) -> torch.Tensor:
        """Per-neuron `values` [N, C, H, W] read in each target position's window, [N, R, Wv, C, kh, kw]."""
        (kh, kw), (sh, sw) = self.kernel, self.stride
        return self.window(values).unfold(2, kh, sh).unfold(3, kw, sw).permute(0, 2, 3, 1, 4, 5)

    def mul(self, scale: torch.Tensor) -> "Patches":
        return self._with(self.tensor * self.unfold(scale).unsqueeze(3), True)

    def dot(self, values: torch.Tensor) -> torch.Tensor:
        """``A · values`` per sample and target neuron, [N, R, Wv, Cv]."""
        if self.shared:
            kernel = self.tensor[0, 0, 0]
            return F.conv2d(self.window(values), kernel, stride=self.stride).permute(0, 2, 3, 1)
        unfolded = self.unfold(values).flatten(-3).unsqueeze(-1)
        return torch.matmul(self.tensor.flatten(-3), unfolded).squeeze(-1)

    def clamp(self, min: Optional[float] = None, max: Optional[float] = None) -> "Patches":
        return self._with(self.tensor.clamp(min=min, max=max), self.clean)

    def abs(self) -> "Patches":
        return self._with(self.tensor.abs(), self.clean)

    def __neg__(self) -> "Patches":
        return self._with(-self.tensor, self.clean)

    def __add__(self, other: "Patches") -> "Patches":
        first, second = _aligned(self, other)
        return first._with(first.tensor + second.tensor, first.clean and second.clean)

    def __sub__(self, other: "Patches") -> "Patches":
        first, second = _aligned(self, other)
        return first._with(first.tensor - second.tensor, first.clean and second.clean)

    def masked(self) -> "Patches":
        """The same coefficients with the entries outside the node set to zero."""
        if self.clean:
            return self
        inside = torch.ones(1, 1, *self.size, dtype=self.tensor.dtype, device=self.tensor.device)
        return self.mul(inside)

    def minimum(self, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
        mid, radius = _interval_parts(lower, upper)
        return self.dot(mid) - self.abs().dot(radius)

    def maximum(self, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
        mid, radius = _interval_parts(lower, upper)
        return self.dot(mid) + self.abs().dot(radius)

    def through_conv(self, weight: torch.Tensor, stride: tuple[int, int], padding: tuple[int, int], groups: int,
                     size: tuple[int, int]) -> "Patches":
        """Coefficients on the input (spatial `size`) of a convolution whose output these are on."""
        source = self.masked().tensor
        out_channels, group_channels, k1, k2 = weight.shape
        (kh, kw), (s1, s2) = self.kernel, stride
        depthwise = groups == out_channels and group_channels == 1
        in_channels = out_channels if depthwise else group_channels
        result = source.new_zeros(*source.shape[:4], in_channels, (kh - 1) * s1 + k1, (kw - 1) * s2 + k2)
        if depthwise:
            for e in range(k1):
                for f in range(k2):
                    result[..., e:e + s1 * (kh - 1) + 1:s1, f:f + s2 * (kw - 1) + 1:s2] += (
                        source * weight[:, 0, e, f].view(-1, 1, 1))
        else:
            products = torch.matmul(source.movedim(4, -1), weight.permute(0, 2, 3, 1).reshape(out_channels, -1))
            products = products.view(*products.shape[:-1], k1, k2, in_channels)
            for e in range(k1):
                for f in range(k2):
                    result[..., e:e + s1 * (kh - 1) + 1:s1, f:f + s2 * (kw - 1) + 1:s2] += (
                        products[..., e, f, :].movedim(-1, -3))
        return Patches(result, (self.stride[0] * s1, self.stride[1] * s2),
                       (self.padding[0] * s1 + padding[0], self.padding[1] * s2 + padding[1]),
                       self.rows, self.width, size, False, self.active)

    def through_pool(self, weights: torch.Tensor, stride: tuple[int, int], padding: tuple[int, int],
                     size: tuple[int, int]) -> "Patches":
        """Coefficients on the input of a pooling whose output y = sum(weights * window) these are on;
        `weights` [N, C, Ho, Wo, k1, k2] per output position."""
        batch, channels, out_h, out_w, k1, k2 = weights.shape
        spread = weights.permute(0, 1, 4, 5, 2, 3).reshape(batch, channels * k1 * k2, out_h, out_w)
        spread = self.unfold(spread)  # [N, R, Wv, C*k1*k2, kh, kw]
        spread = spread.view(*spread.shape[:3], channels, k1, k2, *spread.shape[-2:])
        source = self.masked().tensor
        (kh, kw), (s1, s2) = self.kernel, stride
        shape = (*torch.broadcast_shapes(source.shape[:3], spread.shape[:3]), source.shape[3], channels,
                 (kh - 1) * s1 + k1, (kw - 1) * s2 + k2)
        result = source.new_zeros(shape)
        for e in range(k1):
            for f in range(k2):
                result[..., e:e + s1 * (kh - 1) + 1:s1, f:f + s2 * (kw - 1) + 1:s2] += (
                    source * spread[:, :, :, :, e, f].unsqueeze(3))
        return Patches(result, (self.stride[0] * s1, self.stride[1] * s2),
                       (self.padding[0] * s1 + padding[0], self.padding[1] * s2 + padding[1]),
                       self.rows, self.width, size, False, self.active)

    def to_map(self, values: torch.Tensor) -> torch.Tensor:
        """Per-target values [N, R, Wv, Cv] as a map [N, Cv, R, Wv]."""
        return values.permute(0, 3, 1, 2)


def _aligned(first: Patches, second: Patches) -> tuple[Patches, Patches]:
    """The two coefficient windows zero-padded to one common window (they must share a stride)."""
    if first.stride != second.stride or first.size != second.size:
        raise ValueError("patches of different geometry cannot be added")
    if first.padding == second.padding and first.kernel == second.kernel:
        return first, second
    padding = tuple(max(a, b) for a, b in zip(first.padding, second.padding))
    ends = tuple(max(ka - pa, kb - pb) for ka, pa, kb, pb in zip(first.kernel, first.padding, second.kernel,
                                                                 second.padding))

    def grow(p: Patches) -> Patches:
        (kh, kw), (ph, pw) = p.kernel, p.padding
        pads = (padding[1] - pw, ends[1] - (kw - pw), padding[0] - ph, ends[0] - (kh - ph))
        return replace(p, tensor=F.pad(p.tensor, pads), padding=padding)

    return grow(first), grow(second)


Coefficients = Union[Dense, Patches]


def route_dense(coefficients: Dense, weights: torch.Tensor, stride: tuple[int, int], padding: tuple[int, int],
                size: tuple[int, int]) -> Dense:
    """Dense coefficients on a pooling's input from those on its output (see :meth:`Patches.through_pool`)."""
    tensor = coefficients.tensor  # [Nb, S, C, Ho, Wo]
    batch, channels, out_h, out_w, k1, k2 = weights.shape
    (s1, s2), (p1, p2) = stride, padding
    if (s1, s2) == (k1, k2) and (p1, p2) == (0, 0):  # windows tile the input: no overlap to add up
        spread = tensor[..., None, None] * weights[:, None]  # [N, S, C, Ho, Wo, k1, k2]
        spread = spread.permute(0, 1, 2, 3, 5, 4, 6).reshape(*spread.shape[:3], out_h * k1, out_w * k2)
        rest = (0, size[1] - out_w * k2, 0, size[0] - out_h * k1)
        return Dense(F.pad(spread, rest) if any(rest) else spread)
    height = max(size[0] + 2 * p1, (out_h - 1) * s1 + k1)
    width = max(size[1] + 2 * p2, (out_w - 1) * s2 + k2)
    result = tensor.new_zeros(max(tensor.shape[0], batch), tensor.shape[1], channels, height, width)
    for e in range(k1):
        for f in range(k2):
            result[..., e:e + s1 * (out_h - 1) + 1:s1, f:f + s2 * (out_w - 1) + 1:s2] += (
                tensor * weights[:, None, :, :, :, e, f])
    return Dense(result[..., p1:p1 + size[0], p2:p2 + size[1]])


SCALED_CONV_LIMIT = 1 << 22
"""Largest window-to-window matrix (elements) for :func:`scaled_through_conv`."""


def scaled_through_conv(base: Patches, scale: torch.Tensor, weight: torch.Tensor, stride: tuple[int, int],
                        padding: tuple[int, int], size: tuple[int, int]) -> Patches:
    """``base.mul(scale).through_conv(weight, ...)`` for coefficients `base` shared by all samples and
    positions (as they are from a convolution target back to its first activation), computed without
    forming the per-sample product: one matrix product of each position's window of scales with the
    fixed matrix that maps a window of the activation to a window of the convolution's input. On
    seed-cnn's second convolution this replaces ~14M elementwise products and ~40 strided sums per
    sample with one (784 x 288) @ (288 x 1600) product, taken only for the positions that are
    active and whose window of scales is not all zero (the others' coefficients are zero)."""
    kernel = base.tensor[0, 0, 0]  # [Cv, Cu, kh, kw]
    targets, channels, kh, kw = kernel.shape
    _, in_channels, k1, k2 = weight.shape
    s1, s2 = stride
    big_h, big_w = (kh - 1) * s1 + k1, (kw - 1) * s2 + k2
    matrix = kernel.new_zeros(channels, kh, kw, targets, in_channels, big_h, big_w)
    for a in range(kh):
        for b in range(kw):
            matrix[:, a, b, :, :, s1 * a:s1 * a + k1, s2 * b:s2 * b + k2] = torch.einsum(
                "vc,cief->cvief", kernel[:, :, a, b], weight)
    scales = base.unfold(scale)  # [N, R, Wv, Cu, kh, kw]
    lead = scales.shape[:3]
    scales = scales.reshape(-1, channels * kh * kw)
    needed = scales.abs().amax(1) > 0
    if base.active is not None:
        needed &= base.active.expand(lead).reshape(-1)
    matrix = matrix.view(channels * kh * kw, -1)
    if float(needed.float().mean()) > 0.5:  # zero rows give zero results: not worth gathering
        result = torch.matmul(scales, matrix)
    else:
        chosen = needed.nonzero().squeeze(1)
        result = scales.new_zeros(scales.shape[0], matrix.shape[1]).index_copy_(0, chosen, scales[chosen] @ matrix)
    return Patches(result.view(*lead, targets, in_channels, big_h, big_w), (base.stride[0] * s1, base.stride[1] * s2),
                   (base.padding[0] * s1 + padding[0], base.padding[1] * s2 + padding[1]),
                   base.rows, base.width, size, False, base.active)
