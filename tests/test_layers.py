"""Contracts of the fast layers: the same function and gradients as torch's, and the fallbacks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advcli.models.layers import FEW_CHANNELS_MAX_PATCH, FewChannelConv2d, _FewChannelConv2d

GEOMETRIES = [  # in_channels, out_channels, kernel, stride, padding, height, width
    (1, 4, (3, 3), (1, 1), (1, 1), 6, 5),
    (1, 3, (4, 4), (2, 2), (1, 1), 8, 8),
    (3, 2, (3, 3), (1, 1), (1, 1), 5, 5),
    (2, 3, (3, 3), (2, 2), (0, 0), 7, 6),
    (1, 2, (2, 3), (1, 2), (0, 1), 6, 7),
]


@pytest.mark.parametrize("in_channels,out_channels,kernel,stride,padding,height,width", GEOMETRIES)
@pytest.mark.parametrize("with_bias", [True, False])
def test_few_channel_gradients_are_exact(in_channels, out_channels, kernel, stride, padding, height, width,
                                         with_bias):
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(2, in_channels, height, width, dtype=torch.float64, generator=generator, requires_grad=True)
    weight = torch.randn(out_channels, in_channels, *kernel, dtype=torch.float64, generator=generator,
                         requires_grad=True)
    bias = torch.randn(out_channels, dtype=torch.float64, generator=generator, requires_grad=True) if with_bias else None

    def product(x, weight, bias):
        return _FewChannelConv2d.apply(x, weight, bias, stride, padding, torch.float64)

    expected = F.conv2d(x, weight, bias, stride=stride, padding=padding)
    assert torch.allclose(product(x, weight, bias), expected, atol=1e-12)
    inputs = (x, weight) + ((bias,) if with_bias else ())
    assert torch.autograd.gradcheck(lambda *args: product(args[0], args[1], args[2] if with_bias else None), inputs)


def _pair(**kwargs) -> tuple[nn.Conv2d, FewChannelConv2d]:
    library = nn.Conv2d(**kwargs)
    fast = FewChannelConv2d(**kwargs)
    fast.load_state_dict(library.state_dict())
    return library, fast


def _outputs_and_gradients(conv: nn.Conv2d, x: torch.Tensor, autocast: bool = False):
    x = x.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = conv(x)
    grads = torch.autograd.grad((out.float() ** 2).sum(), (x, conv.weight, conv.bias))
    return out, grads


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("kernel,stride", [(3, 1), (4, 2)])
def test_few_channel_conv_matches_the_library_convolution(channels_last, kernel, stride):
    torch.manual_seed(0)
    library, fast = _pair(in_channels=1, out_channels=8, kernel_size=kernel, stride=stride, padding=1)
    if channels_last:
        library.to(memory_format=torch.channels_last), fast.to(memory_format=torch.channels_last)
    x = torch.rand(5, 1, 12, 12)
    expected, expected_grads = _outputs_and_gradients(library, x)
    out, grads = _outputs_and_gradients(fast, x)
    assert type(out.grad_fn).__name__ == "_FewChannelConv2dBackward"  # the matrix-product gradients ran
    assert out.shape == expected.shape and out.dtype == torch.float32
    assert torch.allclose(out, expected, atol=1e-5)
    for grad, reference in zip(grads, expected_grads):
        assert grad.dtype == reference.dtype and torch.allclose(grad, reference, rtol=1e-4, atol=1e-4)
    assert list(fast.state_dict()) == list(library.state_dict())


def test_few_channel_conv_computes_in_the_autocast_dtype():
    torch.manual_seed(0)
    library, fast = _pair(in_channels=1, out_channels=8, kernel_size=3, padding=1)
    x = torch.rand(4, 1, 10, 10)
    expected, expected_grads = _outputs_and_gradients(library, x, autocast=True)
    out, grads = _outputs_and_gradients(fast, x, autocast=True)
    assert out.dtype == expected.dtype == torch.bfloat16
    assert torch.allclose(out.float(), expected.float(), atol=2e-2, rtol=2e-2)
    for grad, reference in zip(grads, expected_grads):  # gradients arrive in the parameters' own dtype
        assert grad.dtype == reference.dtype == torch.float32
        assert torch.allclose(grad, reference, rtol=3e-2, atol=3e-2 * reference.abs().max().item())


@pytest.mark.parametrize("kwargs,dtype", [
    (dict(in_channels=2, out_channels=4, kernel_size=3, padding=1), torch.float32),  # 18 > 16 values a patch
    (dict(in_channels=1, out_channels=4, kernel_size=3, padding=1), torch.float64),
    (dict(in_channels=1, out_channels=4, kernel_size=3, padding=2, dilation=2), torch.float32),
    (dict(in_channels=1, out_channels=4, kernel_size=3, padding="same"), torch.float32),
    (dict(in_channels=1, out_channels=4, kernel_size=3, padding=1, padding_mode="reflect"), torch.float32),
    (dict(in_channels=2, out_channels=4, kernel_size=2, groups=2), torch.float32),
])
def test_few_channel_conv_leaves_other_convolutions_to_the_library(kwargs, dtype):
    torch.manual_seed(0)
    library, fast = _pair(**kwargs)
    library.to(dtype), fast.to(dtype)
    x = torch.rand(3, kwargs["in_channels"], 9, 9, dtype=dtype)
    with torch.no_grad():
        assert torch.equal(fast(x), library(x))


def test_few_channel_conv_refuses_a_second_derivative_rather_than_getting_it_wrong():
    conv = FewChannelConv2d(1, 4, kernel_size=3, padding=1)
    x = torch.rand(2, 1, 6, 6, requires_grad=True)
    (grad,) = torch.autograd.grad(conv(x).pow(2).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        grad.pow(2).sum().backward()


def test_few_channel_conv_threshold_is_what_it_says():
    fits = FewChannelConv2d(1, 4, kernel_size=4)
    too_wide = FewChannelConv2d(2, 4, kernel_size=3)
    x1, x2 = torch.rand(2, 1, 8, 8), torch.rand(2, 2, 8, 8)
    assert 1 * 4 * 4 <= FEW_CHANNELS_MAX_PATCH < 2 * 3 * 3
    assert fits._product_dtype(x1) == torch.float32 and too_wide._product_dtype(x2) is None
