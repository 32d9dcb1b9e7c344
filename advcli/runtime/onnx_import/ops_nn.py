"""Network layers as standard torch leaves (nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.MaxPool2d, nn.ReLU...)
with the file's initializers as their parameters and buffers.

Padding that a torch layer cannot express (asymmetric, auto_pad) becomes an explicit pad module in
front of it; a layer whose weights are computed at run time falls back to the functional form.
"""

from __future__ import annotations

import operator
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .context import Ctx, dim_item, normalise_axis, op, rank_of, reshape, resolve_pads, static_shape, torch_pads
from .values import Const, Dyn, Value, check_elements

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_CONV_T = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_CONST_PAD = {1: nn.ConstantPad1d, 2: nn.ConstantPad2d, 3: nn.ConstantPad3d}
_MAX_POOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
_AVG_POOL = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}
_ADAPTIVE_AVG = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}
_ADAPTIVE_MAX = {1: nn.AdaptiveMaxPool1d, 2: nn.AdaptiveMaxPool2d, 3: nn.AdaptiveMaxPool3d}
_BATCH_NORM = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}


def _spatial(ctx: Ctx, x: Value, count: int) -> int:
    if count not in _CONV:
        raise ctx.error(f"{count} spatial axes (1 to 3 are supported)")
    if rank_of(x) != count + 2:
        raise ctx.error(f"input of rank {rank_of(x)} for {count} spatial axes")
    return count


def _window(ctx: Ctx, x: Value, kernel: list[int]) -> tuple[list[int], list[int], list[int], list[int]]:
    """Strides, dilations and resolved ONNX pads (begins, ends) of a convolution or pooling window."""
    count = len(kernel)
    strides = list(ctx.attr("strides", [1] * count))
    dilations = list(ctx.attr("dilations", [1] * count))
    pads = resolve_pads(ctx, ctx.attr("auto_pad", "NOTSET"), list(ctx.attr("pads", [])) or None,
                        static_shape(x)[2:], kernel, strides, dilations)
    check_elements([(s or 1) + b + e for s, b, e in zip(static_shape(x), [0, 0] + pads[:count], [0, 0] + pads[count:])],
                   f"{ctx.op_type} padded input")
    return strides, dilations, pads[:count], pads[count:]


def _pad_in_front(ctx: Ctx, x: Value, begins: list[int], ends: list[int], fill: float) -> Value:
    return ctx.module(_CONST_PAD[len(begins)](torch_pads(begins, ends), fill), x)


@op("Conv")
def conv(ctx: Ctx, x: Value, weight: Value, bias: Optional[Value] = None) -> Value:
    count = _spatial(ctx, x, rank_of(weight) - 2)
    kernel = list(ctx.attr("kernel_shape", static_shape(weight)[2:]))
    strides, dilations, begins, ends = _window(ctx, x, kernel)
    groups = ctx.attr("group", 1)
    if begins != ends:
        x, begins = _pad_in_front(ctx, x, begins, ends, 0.0), [0] * count
    if not isinstance(weight, Const) or not (bias is None or isinstance(bias, Const)):
        fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[count]
        return ctx.call(fn, x, weight, bias, strides, begins, dilations, groups)
    w = weight.value
    layer = _CONV[count](w.shape[1] * groups, w.shape[0], kernel, stride=strides, padding=begins,
                         dilation=dilations, groups=groups, bias=bias is not None)
    _assign(layer, w, None if bias is None else bias.value)
    return ctx.module(layer, x)


def _assign(layer: nn.Module, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> None:
    layer.weight = nn.Parameter(weight.clone().reshape(layer.weight.shape), requires_grad=False)
    if bias is not None:
        layer.bias = nn.Parameter(bias.clone().reshape(layer.bias.shape), requires_grad=False)


@op("ConvTranspose")
def conv_transpose(ctx: Ctx, x: Value, weight: Value, bias: Optional[Value] = None) -> Value:
    count = _spatial(ctx, x, rank_of(weight) - 2)
    w = ctx.const(weight, "weight")
    b = None if bias is None else ctx.const(bias, "bias")
    kernel = list(ctx.attr("kernel_shape", list(w.shape[2:])))
    strides = list(ctx.attr("strides", [1] * count))
    dilations = list(ctx.attr("dilations", [1] * count))
    extra = list(ctx.attr("output_padding", [0] * count))
    groups = ctx.attr("group", 1)
    sizes = static_shape(x)[2:]
    if any(s is None for s in sizes):
        raise ctx.error("ConvTranspose needs static spatial sizes")
    full = [s * (n - 1) + (k - 1) * d + 1 for n, k, s, d in zip(sizes, kernel, strides, dilations)]  # type: ignore[operator]
    check_elements([static_shape(x)[0] or 1, w.shape[1] * groups, *full], "ConvTranspose output")
    auto_pad, wanted = ctx.attr("auto_pad", "NOTSET"), ctx.attr("output_shape")
    if wanted is not None or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        targets = list(wanted)[-count:] if wanted is not None else [n * s for n, s in zip(sizes, strides)]  # type: ignore[operator]
        totals = [f + e - t for f, e, t in zip(full, extra, targets)]
        upper = auto_pad == "SAME_UPPER"
        begins = [t // 2 if upper else t - t // 2 for t in totals]
        ends = [t - t // 2 if upper else t // 2 for t in totals]
    elif auto_pad == "VALID":
        begins = ends = [0] * count
    else:
        pads = list(ctx.attr("pads", [0] * (2 * count)))
        begins, ends = pads[:count], pads[count:]
    symmetric = begins == ends and all(e < max(s, d) for e, s, d in zip(extra, strides, dilations)) and min(begins) >= 0
    layer = _CONV_T[count](w.shape[0], w.shape[1] * groups, kernel, stride=strides, padding=begins if symmetric else 0,
                           output_padding=extra if symmetric else 0, groups=groups, dilation=dilations,
                           bias=b is not None and symmetric)
    _assign(layer, w, b if symmetric else None)
    y = ctx.module(layer, x)
    if symmetric:
        return y
    # Crop (or extend) the unpadded output to the requested window, then add the bias.
    outs = [f + e - bg - en for f, e, bg, en in zip(full, extra, begins, ends)]
    y = ctx.call(F.pad, y, torch_pads([-bg for bg in begins], [bg + o - f for bg, o, f in zip(begins, outs, full)]))
    if b is not None:
        y = ctx.call(operator.add, y, Const(b.reshape(1, -1, *[1] * count)))
    return y


@op("Gemm")
def gemm(ctx: Ctx, a: Value, b: Value, c: Optional[Value] = None) -> Value:
    alpha, beta = ctx.attr("alpha", 1.0), ctx.attr("beta", 1.0)
    trans_a, trans_b = ctx.attr("transA", 0), ctx.attr("transB", 0)
    if isinstance(b, Const) and not trans_a and (c is None or isinstance(c, Const)):
        weight = b.value if trans_b else b.value.t()
        out_features = weight.shape[0]
        bias = None
        if c is not None and c.value.numel() in (1, out_features) and (c.value.dim() < 2 or c.value.shape[0] == 1):
            bias = (beta * c.value.reshape(-1)).expand(out_features).contiguous()
        if c is None or bias is not None:
            layer = nn.Linear(weight.shape[1], out_features, bias=bias is not None)
            _assign(layer, weight * alpha if alpha != 1.0 else weight, bias)
            return ctx.module(layer, a)
    left = ctx.call(torch.t, a) if trans_a else a
    right = ctx.call(torch.t, b) if trans_b else b
    y = ctx.call(torch.matmul, left, right)
    if alpha != 1.0:
        y = ctx.call(operator.mul, y, float(alpha))
    if c is not None:
        y = ctx.call(operator.add, y, ctx.call(operator.mul, c, float(beta)) if beta != 1.0 else c)
    return y


@op("MatMul")
def matmul(ctx: Ctx, a: Value, b: Value) -> Value:
    if isinstance(b, Const) and b.value.dim() == 2 and isinstance(a, Dyn) and a.rank >= 1:
        layer = nn.Linear(b.value.shape[0], b.value.shape[1], bias=False)
        _assign(layer, b.value.t(), None)
        return ctx.module(layer, a)
    return ctx.call(torch.matmul, a, b)


@op("MaxPool", "AveragePool")
def pool(ctx: Ctx, x: Value) -> Value:
    kernel = list(ctx.attr("kernel_shape"))
    count = _spatial(ctx, x, len(kernel))
    strides, dilations, begins, ends = _window(ctx, x, kernel)
    ceil = bool(ctx.attr("ceil_mode", 0))
    fits = begins == ends and all(2 * p <= k for p, k in zip(begins, kernel))
    if ctx.op_type == "MaxPool":
        if not fits:
            x, begins = _pad_in_front(ctx, x, begins, ends, float("-inf")), [0] * count
        return ctx.module(_MAX_POOL[count](kernel, strides, begins, dilations, ceil_mode=ceil), x)
    if any(d != 1 for d in dilations):
        raise ctx.error("dilated AveragePool has no torch counterpart")
    include_pad = bool(ctx.attr("count_include_pad", 0))
    if fits:
        return ctx.module(_AVG_POOL[count](kernel, strides, begins, ceil_mode=ceil, count_include_pad=include_pad), x)
    if ceil:
        raise ctx.error("AveragePool with asymmetric pads and ceil_mode is not supported")
    padded = _pad_in_front(ctx, x, begins, ends, 0.0)
    y = ctx.module(_AVG_POOL[count](kernel, strides, 0), padded)
    if include_pad:
        return y
    # Mean over the window's real pixels: the padded mean divided by the share of real pixels in it.
    sizes = static_shape(x)[2:]
    if any(s is None for s in sizes):
        raise ctx.error("AveragePool with asymmetric pads needs static spatial sizes")
    ones = F.pad(torch.ones(1, 1, *sizes), torch_pads(begins, ends))  # type: ignore[misc]
    share = _AVG_POOL[count](kernel, strides, 0)(ones)
    return ctx.call(operator.truediv, y, Const(share))


@op("GlobalAveragePool", "GlobalMaxPool")
def global_pool(ctx: Ctx, x: Value) -> Value:
    count = _spatial(ctx, x, rank_of(x) - 2)
    table = _ADAPTIVE_AVG if ctx.op_type == "GlobalAveragePool" else _ADAPTIVE_MAX
    return ctx.module(table[count](1), x)


@op("BatchNormalization")
def batch_norm(ctx: Ctx, x: Value, scale: Value, bias: Value, mean: Value, var: Value) -> Value:
    if ctx.attr("training_mode", 0):
        raise ctx.error("training-mode BatchNormalization (batch statistics) is not an inference graph")
    rank = rank_of(x)
    if rank not in _BATCH_NORM:
        raise ctx.error(f"input of rank {rank}")
    tensors = [ctx.const(v, what) for v, what in ((scale, "scale"), (bias, "bias"), (mean, "mean"), (var, "var"))]
    layer = _BATCH_NORM[rank](tensors[0].numel(), eps=float(ctx.attr("epsilon", 1e-5)))
    _assign(layer, tensors[0], tensors[1])
    layer.running_mean.copy_(tensors[2].reshape(-1))
    layer.running_var.copy_(tensors[3].reshape(-1))
    return ctx.module(layer, x)


@op("LayerNormalization")
def layer_norm(ctx: Ctx, x: Value, scale: Value, bias: Optional[Value] = None) -> Value:
    rank = rank_of(x)
    axis = normalise_axis(ctx, ctx.attr("axis", -1), rank)
    shape = static_shape(x)[axis:]
    if any(s is None for s in shape):
        raise ctx.error("LayerNormalization over axes that follow the batch")
    weight = ctx.const(scale, "scale").expand(*shape)  # type: ignore[misc]
    layer = nn.LayerNorm(shape, eps=float(ctx.attr("epsilon", 1e-5)), bias=bias is not None)  # type: ignore[arg-type]
    _assign(layer, weight, None if bias is None else ctx.const(bias, "bias").expand(*shape))  # type: ignore[misc]
    return ctx.module(layer, x)


@op("Relu", "Sigmoid", "Tanh", "Softsign", "HardSwish", "Mish")
def activation(ctx: Ctx, x: Value) -> Value:
    leaf = {"Relu": nn.ReLU, "Sigmoid": nn.Sigmoid, "Tanh": nn.Tanh, "Softsign": nn.Softsign,
            "HardSwish": nn.Hardswish, "Mish": nn.Mish}[ctx.op_type]()
    return ctx.module(leaf, x)


@op("LeakyRelu")
def leaky_relu(ctx: Ctx, x: Value) -> Value:
    return ctx.module(nn.LeakyReLU(float(ctx.attr("alpha", 0.01))), x)


@op("Elu")
def elu(ctx: Ctx, x: Value) -> Value:
    return ctx.module(nn.ELU(float(ctx.attr("alpha", 1.0))), x)


@op("Gelu")
def gelu(ctx: Ctx, x: Value) -> Value:
    return ctx.module(nn.GELU(approximate=ctx.attr("approximate", "none")), x)


@op("Softplus")
def softplus(ctx: Ctx, x: Value) -> Value:
    return ctx.call(torch.log1p, ctx.call(torch.exp, x))  # ONNX's exact form: torch's nn.Softplus cuts at 20


@op("HardSigmoid")
def hard_sigmoid(ctx: Ctx, x: Value) -> Value:
    alpha, beta = float(ctx.attr("alpha", 0.2)), float(ctx.attr("beta", 0.5))
    return ctx.call(torch.clamp, ctx.call(torch.add, ctx.call(operator.mul, x, alpha), beta), 0.0, 1.0)


@op("PRelu")
def prelu(ctx: Ctx, x: Value, slope: Value) -> Value:
    rank = rank_of(x)
    if isinstance(slope, Const) and rank >= 2:
        s = slope.value
        channels = static_shape(x)[1]
        if s.numel() == 1 or (channels is not None and s.numel() == channels
                              and list(s.shape) in ([channels] + [1] * (rank - 2), [1, channels] + [1] * (rank - 2))):
            layer = nn.PReLU(s.numel())
            layer.weight = nn.Parameter(s.reshape(-1).clone(), requires_grad=False)
            return ctx.module(layer, x)
    return ctx.call(torch.where, ctx.call(torch.lt, x, 0.0), ctx.call(torch.mul, x, slope), x)


@op("Softmax", "LogSoftmax")
def softmax(ctx: Ctx, x: Value) -> Value:
    rank = rank_of(x)
    leaf = nn.Softmax if ctx.op_type == "Softmax" else nn.LogSoftmax
    if ctx.opset >= 13:
        return ctx.module(leaf(dim=normalise_axis(ctx, ctx.attr("axis", -1), rank)), x)
    axis = normalise_axis(ctx, ctx.attr("axis", 1), rank)
    if axis == rank - 1:
        return ctx.module(leaf(dim=axis), x)
    # Before opset 13 the input is seen as 2-D: the axes from `axis` on are normalised together.
    dims = [dim_item(ctx, x, a) for a in range(rank)]
    out = ctx.module(leaf(dim=-1), reshape(ctx, x, dims[:axis] + [-1]))
    return reshape(ctx, out, dims)
