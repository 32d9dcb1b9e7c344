"""The operations a bound graph is made of, each with its forward pass, its interval bounds and,
for affine ones, the transpose that carries linear-bound coefficients back to its input.

Affine operations act on one variable input: ``y = L(x) + offset``. Intervals go through them in
centre-radius form (``L(mid) + offset`` plus or minus ``|L|(radius)``), which is exact for a single
affine map of a box. Parameters are read from the model at every call (never copied), so bounds
follow training and stay differentiable with respect to them; they are cast to the context's
dtype, which is how a float64 recomputation runs on a float32 model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import AdvcliError
from .coeffs import Coefficients, Patches

Getter = Callable[[], Optional[torch.Tensor]]

FOLD_PATCH = 64
"""Largest in_channels x kernel area for which a convolution's transpose runs as matmul + fold."""
Interval = tuple[torch.Tensor, torch.Tensor]


@dataclass
class Context:
    """What one bound computation runs in: its dtype, and the statistics of the current batch that
    the clean forward pass records for each batch norm in training mode, for the bounds that follow."""

    dtype: torch.dtype = torch.float32
    device: Optional[torch.device] = None
    batch_stats: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    def cast(self, tensor: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """`tensor` (a parameter or constant) in this computation's dtype, on its device."""
        return None if tensor is None else tensor.to(device=self.device, dtype=self.dtype)


class Op:
    """One operation; `label` names it in messages."""

    label = "operation"
    arity = 1
    linear = False      # affine in its variable input(s)
    mixing = False      # output neurons combine several input neurons
    patchable = False   # has a transpose for per-neuron windows (:class:`Patches`)

    def forward(self, ctx: Context, *inputs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def interval(self, ctx: Context, *bounds: Interval) -> Interval:
        raise NotImplementedError


class AffineOp(Op):
    """``y = L(x) + offset`` on one input of per-sample shape `in_shape`."""

    linear = True

    def __init__(self, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> None:
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)

    def radius(self, ctx: Context, radius: torch.Tensor) -> torch.Tensor:
        """``|L|`` applied to a nonnegative radius."""
        raise NotImplementedError

    def transpose_dense(self, ctx: Context, rows: torch.Tensor) -> torch.Tensor:
        """Rows [B, *out_shape] of coefficients on the output as rows [B, *in_shape] on the input."""
        raise NotImplementedError

    def transpose_patches(self, ctx: Context, patches: Patches) -> Patches:
        raise NotImplementedError

    def offset(self, ctx: Context) -> Optional[torch.Tensor]:
        """The constant part [1, *out_shape], or None when there is none."""
        return None

    def interval(self, ctx: Context, bound: Interval) -> Interval:
        lower, upper = bound
        mid = self.forward(ctx, (upper + lower) / 2)
        radius = self.radius(ctx, (upper - lower) / 2)
        return mid - radius, mid + radius

    def transpose(self, ctx: Context, coefficients: Coefficients) -> Coefficients:
        if isinstance(coefficients, Patches):
            return self.transpose_patches(ctx, coefficients)
        return coefficients.map(lambda rows: self.transpose_dense(ctx, rows))


class Conv(AffineOp):
    """2-D convolution (zero padding); average pooling is one too, with a fixed depthwise kernel."""

    label = "Conv2d"
    mixing = True

    def __init__(self, in_shape, out_shape, weight: Getter, bias: Getter, stride, padding, dilation, groups) -> None:
        super().__init__(in_shape, out_shape)
        self.weight, self.bias = weight, bias
        self.stride, self.padding, self.dilation, self.groups = tuple(stride), tuple(padding), tuple(dilation), groups
        out_channels, group_channels = self._weight_shape()
        self.patchable = self.dilation == (1, 1) and (
            groups == 1 or (groups == out_channels and group_channels == 1))

    def _weight_shape(self) -> tuple[int, int]:
        weight = self.weight()
        assert weight is not None
        return weight.shape[0], weight.shape[1]

    def forward(self, ctx, x):
        return F.conv2d(x, ctx.cast(self.weight()), ctx.cast(self.bias()), self.stride, self.padding, self.dilation,
                        self.groups)

    def radius(self, ctx, radius):
        return F.conv2d(radius, ctx.cast(self.weight()).abs(), None, self.stride, self.padding, self.dilation,
                        self.groups)

    def transpose_dense(self, ctx, rows):
        weight = ctx.cast(self.weight())
        out_channels, group_channels, k1, k2 = weight.shape
        if self.groups == 1 and group_channels * k1 * k2 <= FOLD_PATCH:
            # Few input channels (a first layer): one matrix product and col2im, about 4 times the
            # speed of the library's transposed convolution for these shapes on the CPU.
            columns = torch.matmul(weight.reshape(out_channels, -1).t(), rows.reshape(rows.shape[0], out_channels, -1))
            return F.fold(columns, self.in_shape[1:], (k1, k2), self.dilation, self.padding, self.stride)
        sizes = [(o - 1) * s - 2 * p + d * (k - 1) + 1 for o, s, p, d, k in
                 zip(self.out_shape[1:], self.stride, self.padding, self.dilation, (k1, k2))]
        extra = tuple(i - size for i, size in zip(self.in_shape[1:], sizes))
        return F.conv_transpose2d(rows, weight, None, self.stride, self.padding, extra, self.groups, self.dilation)

    def transpose_patches(self, ctx, patches):
        return patches.through_conv(ctx.cast(self.weight()), self.stride, self.padding, self.groups,
                                    self.in_shape[1:])

    def offset(self, ctx):
        bias = ctx.cast(self.bias())
        return None if bias is None else bias.view(1, -1, 1, 1).expand(1, *self.out_shape)


class Linear(AffineOp):
    """``x @ W.T + b`` over the last dimension."""

    label = "Linear"
    mixing = True

    def __init__(self, in_shape, out_shape, weight: Getter, bias: Getter) -> None:
        super().__init__(in_shape, out_shape)
        self.weight, self.bias = weight, bias

    def forward(self, ctx, x):
        return F.linear(x, ctx.cast(self.weight()), ctx.cast(self.bias()))

    def radius(self, ctx, radius):
        return F.linear(radius, ctx.cast(self.weight()).abs())

    def transpose_dense(self, ctx, rows):
        return rows @ ctx.cast(self.weight())

    def offset(self, ctx):
        bias = ctx.cast(self.bias())
        return None if bias is None else bias.expand(1, *self.out_shape)


class ScaleShift(AffineOp):
    """Elementwise ``x * scale + shift`` with constants that broadcast without changing x's shape
    (normalisation inside the model, arithmetic with constants)."""

    label = "elementwise affine"
    patchable = True

    def __init__(self, in_shape, scale: Optional[Getter] = None, shift: Optional[Getter] = None) -> None:
        super().__init__(in_shape, in_shape)
        self.scale_getter, self.shift_getter = scale, shift

    def parameters(self, ctx: Context) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        scale = None if self.scale_getter is None else ctx.cast(self.scale_getter())
        shift = None if self.shift_getter is None else ctx.cast(self.shift_getter())
        return scale, shift

    def _full(self, value: torch.Tensor) -> torch.Tensor:
        return value.expand(1, *self.out_shape)

    def forward(self, ctx, x):
        scale, shift = self.parameters(ctx)
        y = x if scale is None else x * scale
        return y if shift is None else y + shift

    def radius(self, ctx, radius):
        scale, _ = self.parameters(ctx)
        return radius if scale is None else radius * scale.abs()

    def transpose_dense(self, ctx, rows):
        scale, _ = self.parameters(ctx)
        return rows if scale is None else rows * scale

    def transpose_patches(self, ctx, patches):
        scale, _ = self.parameters(ctx)
        return patches if scale is None else patches.mul(self._full(scale))

    def offset(self, ctx):
        _, shift = self.parameters(ctx)
        return None if shift is None else self._full(shift)


class BatchNorm(ScaleShift):
    """Batch norm as the per-channel affine map it is: running statistics in eval mode; in training,
    the current batch's statistics, taken by the clean forward pass (as auto_LiRPA and CROWN-IBP do)
    and kept differentiable, while the module updates its running statistics as usual."""

    label = "BatchNorm"

    def __init__(self, in_shape, module: nn.modules.batchnorm._BatchNorm, index: int) -> None:
        super().__init__(in_shape)
        self.module, self.index = module, index
        self.view_shape = (1, in_shape[0]) + (1,) * (len(in_shape) - 1)

    def _affine(self, ctx: Context, mean: torch.Tensor, var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weight, bias = ctx.cast(self.module.weight), ctx.cast(self.module.bias)
        scale = torch.rsqrt(var.to(ctx.dtype) + self.module.eps)
        scale = scale if weight is None else scale * weight
        shift = -mean.to(ctx.dtype) * scale
        shift = shift if bias is None else shift + bias
        return scale.view(self.view_shape), shift.view(self.view_shape)

    def parameters(self, ctx):
        if self.module.training:
            if self.index not in ctx.batch_stats:
                raise AdvcliError("verification: bounds in training mode need the clean forward pass first")
            return ctx.batch_stats[self.index]
        if self.module.running_mean is None or self.module.running_var is None:
            raise AdvcliError("verification does not support BatchNorm without running statistics in eval mode")
        return self._affine(ctx, self.module.running_mean, self.module.running_var)

    def forward(self, ctx, x):
        if not self.module.training or self.index in ctx.batch_stats:
            return super().forward(ctx, x)
        dims = [0] + list(range(2, x.dim()))
        ctx.batch_stats[self.index] = self._affine(ctx, x.mean(dims), x.var(dims, unbiased=False))
        reference = self.module.running_mean if self.module.running_mean is not None else self.module.weight
        if reference is None or reference.dtype == x.dtype:
            return self.module(x)  # the module's own pass, which also updates its running statistics
        return super().forward(ctx, x)


class GlobalAvgPool(AffineOp):
    """Mean over the spatial dimensions (adaptive average pooling to 1x1), keeping them or not."""

    label = "AdaptiveAvgPool2d"
    mixing = True

    def forward(self, ctx, x):
        return x.mean((2, 3)).view(x.shape[0], *self.out_shape)

    def radius(self, ctx, radius):
        return self.forward(ctx, radius)

    def transpose_dense(self, ctx, rows):
        channels, height, width = self.in_shape
        return (rows.reshape(-1, channels, 1, 1) / (height * width)).expand(-1, channels, height, width)


class Reshape(AffineOp):
    """A per-sample reshape (flatten, view, reshape)."""

    label = "reshape"

    def forward(self, ctx, x):
        return x.reshape(x.shape[0], *self.out_shape)

    def radius(self, ctx, radius):
        return self.forward(ctx, radius)

    def transpose_dense(self, ctx, rows):
        return rows.reshape(rows.shape[0], *self.in_shape)


class Identity(AffineOp):
    """The identity (nn.Identity, contiguous(), dropout in eval mode)."""

    label = "Identity"
    patchable = True

    def __init__(self, in_shape, module: Optional[nn.Module] = None) -> None:
        super().__init__(in_shape, in_shape)
        self.module = module
        self.label = "Identity" if module is None else type(module).__name__

    def _check(self, ctx: Context) -> None:
        if isinstance(self.module, nn.Dropout) and self.module.training and self.module.p > 0:
            raise AdvcliError("verification does not support Dropout in training mode")

    def forward(self, ctx, x):
        self._check(ctx)
        return x

    def radius(self, ctx, radius):
        return radius

    def transpose_dense(self, ctx, rows):
        return rows

    def transpose_patches(self, ctx, patches):
        return patches


class Rearrange(AffineOp):
    """A per-sample rearrangement of the elements (permute, transpose, flip: an NHWC or BGR input
    contract, an ONNX Transpose): output element i is input element `order[i]`."""

    label = "rearrange"

    def __init__(self, in_shape, out_shape, order: torch.Tensor, label: str) -> None:
        super().__init__(in_shape, out_shape)
        self.order, self.label = order, label

    def forward(self, ctx, x):
        return x.reshape(x.shape[0], -1)[:, self.order.to(x.device)].reshape(x.shape[0], *self.out_shape)

    def radius(self, ctx, radius):
        return self.forward(ctx, radius)

    def transpose_dense(self, ctx, rows):
        flat = rows.reshape(rows.shape[0], -1)
        back = torch.zeros_like(flat).index_copy_(1, self.order.to(flat.device), flat)
        return back.reshape(rows.shape[0], *self.in_shape)


class Add(Op):
    """The sum (or, with `sign` -1, the difference) of two variable branches, as in residual blocks."""

    label = "add"
    arity = 2
    linear = True
    patchable = True

    def __init__(self, sign: float = 1.0) -> None:
        self.sign = sign
        self.label = "add" if sign > 0 else "sub"

    def forward(self, ctx, first, second):
        return first + second if self.sign > 0 else first - second

    def interval(self, ctx, first, second):
        if self.sign > 0:
            return first[0] + second[0], first[1] + second[1]
        return first[0] - second[1], first[1] - second[0]


def conv_for_avg_pool(in_shape, out_shape, kernel, stride, padding) -> Conv:
    """Average pooling (zero padding counted, as torch does by default) as a depthwise convolution."""
    channels = in_shape[0]
    kernel_weight = torch.full((channels, 1, *kernel), 1.0 / (kernel[0] * kernel[1]), dtype=torch.float64)

    def weight() -> torch.Tensor:
        return kernel_weight

    conv = Conv(in_shape, out_shape, weight, lambda: None, stride, padding, (1, 1), channels)
    conv.label = "AvgPool2d"
    return conv
