"""Layers shared by the architectures: in-model normalisation, and a convolution that computes exactly what
its torch counterpart computes, faster where it matters.

A convolution over very few input channels (a network's first layer on grey images) does so
little arithmetic per output value that the CPU library kernels for its backward pass spend most of
their time on memory layout: on a 2-core CPU the input gradient of the reference network's first
convolution (1 -> 32 channels, 3x3) took about 4 ms of a 50 ms bfloat16 attack step, for 1.5% of
its arithmetic. :class:`FewChannelConv2d` keeps the library's forward pass and takes its gradients
on the CPU as matrix products over the input's shifted copies (im2col): 2 ms there. Speed figures
are in benchmarks/README.md.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

FEW_CHANNELS_MAX_PATCH = 16
"""Largest in_channels x kernel height x kernel width for which :class:`FewChannelConv2d` takes its
gradients as matrix products; wider convolutions keep the library kernels, as fast or faster there."""

_FAST_DTYPES = (torch.float32, torch.bfloat16)


def _patches(x: torch.Tensor, kernel_size: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int],
             out_size: tuple[int, int]) -> torch.Tensor:
    """The input's shifted copies as a (channels x kernel height x kernel width, pixels) matrix: rows
    in the order of ``weight.view(out_channels, -1)``, one column per output pixel (batch, row, column)."""
    padded = F.pad(x, (padding[1], padding[1], padding[0], padding[0])).transpose(0, 1)
    (out_h, out_w), (kernel_h, kernel_w) = out_size, kernel_size
    patches = torch.stack([padded[:, :, i:i + stride[0] * (out_h - 1) + 1:stride[0],
                                  j:j + stride[1] * (out_w - 1) + 1:stride[1]]
                           for i in range(kernel_h) for j in range(kernel_w)], 1)  # each copy is one contiguous write
    return patches.view(x.shape[1] * kernel_h * kernel_w, -1)


class _FewChannelConv2d(torch.autograd.Function):
    """2-D convolution (zero padding, no dilation, one group) computed in `dtype`, whose gradients are
    matrix products over the input's shifted copies (im2col) rather than the library's backward
    kernels. Inputs keep their own dtypes and get gradients in them. Differentiable once: a second
    derivative (``create_graph=True`` through it) raises instead of coming out wrong."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],  # type: ignore[override]
                stride: tuple[int, int], padding: tuple[int, int], dtype: torch.dtype) -> torch.Tensor:
        kernel = weight.to(dtype)
        out = F.conv2d(x.to(dtype), kernel, None if bias is None else bias.to(dtype), stride, padding)
        ctx.geometry = (x.shape, x.dtype, weight.dtype, None if bias is None else bias.dtype, stride, padding,
                        tuple(out.shape[2:]))
        ctx.save_for_backward(x if ctx.needs_input_grad[1] else None, kernel)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        x, kernel = ctx.saved_tensors
        (batch, channels, height, width), x_dtype, weight_dtype, bias_dtype, stride, padding, out_size = ctx.geometry
        out_channels, _, kernel_h, kernel_w = kernel.shape
        out_h, out_w = out_size
        pixels = grad.to(kernel.dtype).permute(0, 2, 3, 1).reshape(-1, out_channels)  # a view when channels-last
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            # Each row of the patch gradient goes back to the input pixels its shifted copy came from.
            patch_grad = (kernel.reshape(out_channels, -1).t() @ pixels.t()).to(x_dtype)
            patch_grad = patch_grad.view(channels, kernel_h * kernel_w, batch, out_h, out_w)
            padded = torch.zeros(channels, batch, height + 2 * padding[0], width + 2 * padding[1],
                                 dtype=x_dtype, device=grad.device)
            for i in range(kernel_h):
                for j in range(kernel_w):
                    padded[:, :, i:i + stride[0] * (out_h - 1) + 1:stride[0],
                           j:j + stride[1] * (out_w - 1) + 1:stride[1]] += patch_grad[:, i * kernel_w + j]
            grad_x = padded[:, :, padding[0]:padding[0] + height, padding[1]:padding[1] + width].transpose(0, 1)
        if ctx.needs_input_grad[1]:
            patches = _patches(x.to(kernel.dtype), (kernel_h, kernel_w), stride, padding, out_size)
            grad_weight = (patches @ pixels).t().to(weight_dtype).view_as(kernel)
        if ctx.needs_input_grad[2]:
            grad_bias = pixels.sum(0, dtype=torch.float32).to(bias_dtype)
        return grad_x, grad_weight, grad_bias, None, None, None


class FewChannelConv2d(nn.Conv2d):
    """:class:`torch.nn.Conv2d` (same parameters, same state dict) that, on the CPU and for few input
    channels, takes its gradients as matrix products (see :class:`_FewChannelConv2d`).

    Under autocast it computes in the autocast dtype, as the library convolution would. Elsewhere
    (CUDA, wider kernels, other dtypes, ONNX export, tracing, compilation) it is the library
    convolution itself. Results agree with it to the rounding of a different summation order.
    Its gradients cannot be differentiated again on the CPU path (an error says so).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = self._product_dtype(x)
        if dtype is None:
            return super().forward(x)
        with torch.autocast(device_type="cpu", enabled=False):
            return _FewChannelConv2d.apply(x, self.weight, self.bias, self.stride, self.padding, dtype)

    def _product_dtype(self, x: torch.Tensor) -> Optional[torch.dtype]:
        """The dtype to compute in on the matrix-product path, or None where the library convolution runs."""
        kernel_h, kernel_w = self.kernel_size
        if (x.device.type != "cpu" or x.dim() != 4 or self.groups != 1 or self.padding_mode != "zeros"
                or isinstance(self.padding, str) or tuple(self.dilation) != (1, 1)
                or self.in_channels * kernel_h * kernel_w > FEW_CHANNELS_MAX_PATCH
                or torch.onnx.is_in_onnx_export() or torch.jit.is_scripting() or torch.jit.is_tracing()
                or torch.compiler.is_compiling()):
            return None
        if torch.is_autocast_enabled("cpu"):
            dtype = torch.get_autocast_dtype("cpu")
        elif x.dtype == self.weight.dtype:
            dtype = x.dtype
        else:
            return None  # the library convolution reports the mismatch
        if dtype not in _FAST_DTYPES or x.dtype not in _FAST_DTYPES or self.weight.dtype not in _FAST_DTYPES:
            return None
        return dtype


class Normalize(nn.Module):
    """Per-channel standardisation inside the model, so attacks stay in pixel space."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std
