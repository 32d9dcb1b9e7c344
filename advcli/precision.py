"""Numeric precision of the heavy passes: attack gradients and training steps.

``auto`` picks bfloat16 where the hardware computes it natively (CPUs with AVX512-BF16 or AMX,
CUDA GPUs with bf16 support; fp16 on older CUDA GPUs, for attacks only) and float32 elsewhere.

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
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import ContextManager, Optional

import torch
from torch import nn

from .errors import AdvcliError

PRECISIONS: dict[str, Optional[torch.dtype]] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
PRECISION_CHOICES = ("auto", *PRECISIONS)

PrecisionChoice = Enum("PrecisionChoice", {name: name for name in PRECISION_CHOICES}, type=str)  # type: ignore[misc]


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
    if choice not in PRECISION_CHOICES:
        raise AdvcliError(f"precision must be one of {', '.join(PRECISION_CHOICES)}, got {choice!r}")


def resolve_precision(choice: str, device: torch.device, *, training: bool = False) -> str:
    """Map ``auto|fp32|bf16|fp16`` to the precision that will run on `device`.

    fp16 needs a CUDA device, and is refused for `training` (it would need loss scaling);
    ``auto`` then never picks it.
    """
    check_precision(choice)
    device = torch.device(device)
    if choice == "fp16" and training:
        raise AdvcliError("--precision fp16 is not supported for training (it needs loss scaling); use bf16 or fp32")
    if choice == "fp16" and device.type != "cuda":
        raise AdvcliError("--precision fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
    if choice != "auto":
        return choice
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16"
        return "fp32" if training else "fp16"  # attack gradients in fp16 are rescaled: see Autocast
    if device.type == "cpu":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    return "fp32"


def autocast(device: torch.device, precision: str) -> ContextManager:
    """Autocast to `precision` on `device`'s type, or nothing at all for fp32."""
    dtype = PRECISIONS[precision]
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
        if PRECISIONS.get(precision) is None:
            raise AdvcliError(f"Autocast needs a reduced precision (bf16 or fp16), got {precision!r}")
        self.crafting = crafting
        self.reference = crafting if reference is None else reference
        self.precision = precision
        self.device_type = device_type
        self.dtype = PRECISIONS[precision]

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
        except (TypeError, RuntimeError, copy.Error):  # a model that cannot be copied keeps its layout
            crafting = model
        else:
            set_channels_last(crafting)
            for parameter in crafting.parameters():  # only ever differentiated with respect to inputs
                parameter.requires_grad_(False)
    if PRECISIONS[precision] is None:
        return crafting
    return Autocast(crafting, precision, torch.device(device).type)
