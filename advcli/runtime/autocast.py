"""Reduced-precision crafting and the frozen channels-last copies attacks run on.

Reduced precision only ever *crafts*: attacks take their gradients through an :class:`Autocast`
wrapper, while every decision that reaches a report (which samples are fooled, when a sample stops
early, which restart wins, which classes are targeted, black-box queries, the final
re-classification) is made in float32 by the model behind it. For a convolutional model, in every
precision, crafting and judging run on a frozen copy whose convolution weights are held
channels-last (the fast layout for these kernels; speed figures in benchmarks/README.md). Its
float32 logits can differ from the default layout's in their last bits, as they do between
libraries or machines; that changes a classification only for a sample whose two top logits tie to
within about 1e-6, and one copy both crafts and judges, so the two never disagree.
Nothing here touches CUDA until a CUDA device is passed.
"""

from __future__ import annotations

import copy
from contextlib import nullcontext
from typing import ContextManager, Optional

import torch
from torch import nn

from ..errors import AdvcliError
from .precision import autocast_dtype, is_reduced


def autocast(device: torch.device, precision: str) -> ContextManager:
    """Autocast to `precision` on `device`'s type, or nothing at all for fp32."""
    dtype = autocast_dtype(precision)
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def has_conv_weights(model: nn.Module) -> bool:
    """Whether `model` holds 4-D (convolution) weights, which prefer the channels-last layout."""
    return any(parameter.ndim == 4 for parameter in model.parameters())


def set_channels_last(model: nn.Module, enabled: bool = True) -> bool:
    """Hold `model`'s 4-D (convolution) weights in the channels-last layout, in place, or back in
    the default layout (`enabled` False). Values are untouched; only the kernels chosen change.
    Returns whether `model` has such weights."""
    if not has_conv_weights(model):
        return False
    model.to(memory_format=torch.channels_last if enabled else torch.contiguous_format)
    return True


def _per_sample(scale: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """`scale` (N,) shaped to broadcast over a batch like `like`."""
    return scale.to(like.dtype).view(-1, *([1] * (like.ndim - 1)))


class _PerSampleScaleHook(torch.autograd.Function):
    """Identity on the way forward, sharing a `scales` dict with its partner for the way back."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, scales: dict) -> torch.Tensor:  # type: ignore[override]
        ctx.scales = scales
        return tensor.view_as(tensor)


class _NormalisePerSample(_PerSampleScaleHook):
    """On the way back, scales each sample's gradient to a largest magnitude of 1 and keeps the
    factors in `scales` for :class:`_RestorePerSample`."""

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        scale = grad.flatten(1).abs().amax(1).clamp_min(torch.finfo(grad.dtype).tiny)
        ctx.scales["value"] = scale
        return grad / _per_sample(scale, grad), None


class _RestorePerSample(_PerSampleScaleHook):
    """On the way back, multiplies each sample's (float32) gradient by the factor
    :class:`_NormalisePerSample` took out."""

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        scale = ctx.scales.pop("value", None)
        if scale is None:
            return grad, None
        return grad * _per_sample(scale, grad), None


class Autocast(nn.Module):
    """`crafting` run under autocast to `precision`, returning float32 logits.

    Attacks handed this wrapper take their gradients through it, and make every decision with
    `reference` (the float32 model; by default `crafting` itself, run outside autocast): see
    :func:`reference_model`. In fp16, whose range is narrow, an input gradient runs back through
    the network scaled per sample to a largest logit gradient of 1 and is scaled back in float32,
    so that the gradients of confidently classified samples do not underflow to zero.
    """

    def __init__(self, crafting: nn.Module, precision: str, device_type: str,
                 reference: Optional[nn.Module] = None) -> None:
        super().__init__()
        if not is_reduced(precision):
            raise AdvcliError(f"Autocast needs a reduced precision (bf16 or fp16), got {precision!r}")
        self.crafting = crafting
        self.reference = crafting if reference is None else reference
        self.precision = precision
        self.device_type = device_type
        self.dtype = autocast_dtype(precision)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rescale = self.dtype is torch.float16 and torch.is_grad_enabled() and x.requires_grad
        scales: dict = {}
        if rescale:
            x = _RestorePerSample.apply(x, scales)
        with torch.autocast(device_type=self.device_type, dtype=self.dtype):
            logits = self.crafting(x).float()
        return _NormalisePerSample.apply(logits, scales) if rescale else logits


def reference_model(model: nn.Module) -> Optional[nn.Module]:
    """The float32 model behind an :class:`Autocast` wrapper; None for any other model."""
    return model.reference if isinstance(model, Autocast) else None


def deciding_model(model: nn.Module) -> nn.Module:
    """The model whose outputs decide: the float32 reference of an :class:`Autocast` wrapper, else
    `model` itself."""
    reference = reference_model(model)
    return model if reference is None else reference


def crafting_model(model: nn.Module, precision: str, device: torch.device) -> nn.Module:
    """What attacks on `model` take their gradients through at `precision`.

    A convolutional model is copied with frozen parameters and channels-last weights; in fp32 the
    copy itself crafts and judges, in reduced precision an :class:`Autocast` wrapper around it
    crafts and the copy is its float32 reference (use :func:`deciding_model` to classify). A model
    without convolutions, or one that cannot be copied, is used as it is. `model` is left untouched.
    """
    crafting = model
    if has_conv_weights(model):
        try:
            crafting = copy.deepcopy(model)
            set_channels_last(crafting)
            for parameter in crafting.parameters():  # only ever differentiated with respect to inputs
                parameter.requires_grad_(False)
        except (TypeError, RuntimeError, copy.Error):  # a model that cannot be copied (e.g. some TorchScript
            crafting = model  # modules, whose copies hold no leaf parameters) keeps its layout
    if not is_reduced(precision):
        return crafting
    return Autocast(crafting, precision, torch.device(device).type)
