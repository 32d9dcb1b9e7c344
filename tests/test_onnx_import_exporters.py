"""Whole third-party files through the white-box path: what each exporter writes converts, passes the
parity gate against onnxruntime, and differentiates like the network it came from."""

from __future__ import annotations

import importlib.util

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from onnx_import_helpers import export_dynamo, export_legacy, make_model, onnx_opsets, tensor
from onnx_import_models import (
    BatchNormCNN,
    Byte255,
    ChannelsLast,
    Normalised,
    SmallResNet,
    WithSoftmax,
    identity_weights_file,
    keras_style_file,
    matlab_style_file,
)

from advcli.runtime.onnx_import import InputContract, UnsupportedOperators, convert, white_box

HAS_ONNXSCRIPT = importlib.util.find_spec("onnxscript") is not None
needs_onnxscript = pytest.mark.skipif(not HAS_ONNXSCRIPT, reason="the dynamo exporter needs onnxscript")


def pixels(n: int, *shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed))


def input_gradient(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x).square().sum(), x)
    return grad


def assert_white_box_matches(data: bytes, torch_model: torch.nn.Module, x: torch.Tensor, *,
                             contract: InputContract = InputContract(), file_input=lambda x: x):
    """The file passes the gate, and the white-box model's logits and input gradients are the torch model's."""
    box = white_box(data, x, contract=contract)
    assert box.parity.passed and box.parity.argmax_agreement == 1.0 and box.parity.relative_diff <= 1e-5
    with torch.no_grad():
        expected = torch_model(file_input(x))
        actual = box.model(x)
    assert torch.allclose(actual, expected, atol=1e-5, rtol=1e-4)
    expected_grad = input_gradient(lambda v: torch_model(file_input(v)), x)
    assert torch.allclose(input_gradient(box.model, x), expected_grad, atol=1e-5, rtol=1e-3)
    assert torch.equal(box.judge.predict(x), expected.argmax(1))
    return box


@pytest.mark.parametrize("opset", [11, 13, 17])
def test_legacy_exporter_batchnorm_cnn(opset, one_thread):
    model = BatchNormCNN()
    data = export_legacy(model, pixels(1, 1, 12, 12), opset)
    ops = {node.op_type for node in onnx.load_from_string(data).graph.node}
    assert "BatchNormalization" in ops and "Shape" in ops  # the batch norms survive; the view is dynamic shape code
    box = assert_white_box_matches(data, model, pixels(9, 1, 12, 12))
    leaves = {type(module).__name__ for module in box.converted.module.modules()}
    assert {"Conv2d", "BatchNorm2d", "BatchNorm1d", "MaxPool2d", "ReLU", "Linear", "Flatten"} <= leaves
    assert "size" not in box.converted.module.code  # the dynamic flatten folded to a static one


@pytest.mark.parametrize("opset", [11, 17])
def test_legacy_exporter_residual_net(opset, one_thread):
    model = SmallResNet()
    assert_white_box_matches(export_legacy(model, pixels(1, 3, 12, 12), opset), model, pixels(7, 3, 12, 12))


@pytest.mark.slow
@needs_onnxscript
@pytest.mark.parametrize("opset", [18, 26])
@pytest.mark.parametrize("architecture", [BatchNormCNN, SmallResNet])
def test_dynamo_exporter(architecture, opset, one_thread):
    channels = 1 if architecture is BatchNormCNN else 3
    model = architecture() if architecture is SmallResNet else architecture(channels=channels)
    data = export_dynamo(model, pixels(2, channels, 12, 12), opset)
    assert onnx_opsets(data)[""] == opset
    assert_white_box_matches(data, model, pixels(5, channels, 12, 12))


def test_normalisation_inside_the_file(one_thread):
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    model = Normalised(SmallResNet(), mean, std).eval()
    data = export_legacy(model, pixels(1, 3, 12, 12), 13)
    assert {"Sub", "Div"} <= {node.op_type for node in onnx.load_from_string(data).graph.node}
    assert_white_box_matches(data, model, pixels(6, 3, 12, 12))


def test_normalisation_outside_the_file_is_the_contracts(one_thread):
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    inner = SmallResNet()
    data = export_legacy(inner, pixels(1, 3, 12, 12), 13)
    reference = Normalised(inner, mean, std).eval()
    assert_white_box_matches(data, reference, pixels(6, 3, 12, 12), contract=InputContract(mean=mean, std=std))


def test_nhwc_input(one_thread):
    model = ChannelsLast(SmallResNet()).eval()
    data = export_legacy(model, pixels(1, 12, 12, 3), 13)
    box = assert_white_box_matches(data, model, pixels(6, 3, 12, 12), contract=InputContract(layout="nhwc"),
                                   file_input=lambda x: x.permute(0, 2, 3, 1))
    assert box.converted.input_shape[1:] == (12, 12, 3)


def test_bgr_channel_order(one_thread):
    model = SmallResNet()
    data = export_legacy(model, pixels(1, 3, 12, 12), 13)
    assert_white_box_matches(data, model, pixels(6, 3, 12, 12), contract=InputContract(channel_order="bgr"),
                             file_input=lambda x: x.flip(1))


def test_trailing_softmax_is_cut_and_its_logits_attacked(one_thread):
    inner = BatchNormCNN()
    data = export_legacy(WithSoftmax(inner), pixels(1, 1, 12, 12), 13)
    x = pixels(8, 1, 12, 12)
    box = assert_white_box_matches(data, inner, x)  # the white-box model gives the logits before the Softmax
    assert box.converted.softmax_cut and box.parity.logits_relative_diff is not None
    assert box.parity.logits_relative_diff <= 1e-5 and box.parity.probability_like
    with torch.no_grad():
        assert torch.allclose(box.converted.module(x), torch.softmax(inner(x), 1), atol=1e-6)
        assert torch.allclose(box.judge(x), torch.log_softmax(inner(x), 1), atol=1e-4)  # Square's margins are the logits'


def test_probabilities_without_a_softmax_node_warn(one_thread):
    inner = BatchNormCNN()
    data = export_legacy(WithSoftmax(inner, explicit=True), pixels(1, 1, 12, 12), 13)
    assert "Softmax" not in {node.op_type for node in onnx.load_from_string(data).graph.node}
    x = pixels(8, 1, 12, 12)
    box = white_box(data, x)
    assert any("understates the attack" in warning for warning in box.warnings)
    assert not box.converted.softmax_cut and box.model.log_outputs
    with torch.no_grad():
        assert torch.allclose(box.model(x), torch.log_softmax(inner(x), 1), atol=1e-4)


def test_float_0_255_input(one_thread):
    inner = BatchNormCNN()
    model = Byte255(inner).eval()
    data = export_legacy(model, pixels(1, 1, 12, 12) * 255, 13)
    assert_white_box_matches(data, inner, pixels(6, 1, 12, 12), contract=InputContract(input_range=(0, 255)))


def test_uint8_input_is_an_integer_threat_model(one_thread):
    inner = BatchNormCNN()
    data = export_legacy(Byte255(inner).eval(), (pixels(1, 1, 12, 12) * 255).to(torch.uint8), 13)
    assert onnx.load_from_string(data).graph.input[0].type.tensor_type.elem_type == TensorProto.UINT8
    x = torch.round(pixels(6, 1, 12, 12) * 255) / 255
    box = white_box(data, x, contract=InputContract(input_range=(0, 255)))
    assert box.integer_grid and any("integer threat model" in note for note in box.notes)
    with torch.no_grad():
        assert torch.allclose(box.model(x), inner(x), atol=1e-5)
        off_grid = (x + 0.4 / 255).clamp(0, 1)
        assert torch.equal(box.judge.outputs(off_grid), box.judge.outputs(x))  # onnxruntime sees the rounded image


def test_identity_passed_weights(one_thread):
    data = identity_weights_file()
    x = pixels(6, 3, 12, 12)
    box = white_box(data, x)
    assert box.parity.passed
    assert sum(isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) for m in box.converted.module.modules()) == 2


def test_keras_style_nhwc_file_with_softmax(one_thread):
    rng = np.random.default_rng(0)
    data = keras_style_file(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), np.zeros(8, np.float32),
                            rng.standard_normal((10, 8 * 6 * 6)).astype(np.float32), np.zeros(10, np.float32), size=12)
    box = white_box(data, pixels(6, 3, 12, 12), contract=InputContract(layout="nhwc"))
    assert box.converted.softmax_cut and box.parity.passed


def test_matlab_style_file_old_opset_fixed_batch(one_thread):
    rng = np.random.default_rng(1)
    data = matlab_style_file(rng.uniform(0, 0.5, (1, 8, 8)), rng.standard_normal((4, 1, 3, 3)).astype(np.float32),
                             np.zeros(4, np.float32), rng.standard_normal((10, 64)).astype(np.float32), np.zeros(10, np.float32))
    x = pixels(5, 1, 8, 8)
    box = white_box(data, x)
    assert box.converted.fixed_batch == 1 and box.converted.opset == 11 and box.parity.passed
    assert any("upgraded" in note for note in box.notes) and any("fixes the batch size at 1" in note for note in box.notes)
    assert box.model(x).shape == (5, 10) and box.judge.predict(x).shape == (5,)


def test_unsupported_operators_are_all_named_on_one_line():
    node = helper.make_node
    nodes = [node("TopK", ["x", "k"], ["v", "i"], axis=1), node("QuantizeLinear", ["v", "s"], ["q"]),
             node("DequantizeLinear", ["q", "s"], ["d"]), node("Einsum", ["d", "d"], ["e"], equation="ij,ij->ij"),
             node("LpNormalization", ["e"], ["y"])]
    data = make_model(nodes, (6,), opset=13, initializers=[tensor("k", np.array([3], np.int64)), tensor("s", np.float32(0.1))])
    with pytest.raises(UnsupportedOperators) as caught:
        convert(data)
    message = str(caught.value)
    assert len(message.splitlines()) == 1
    for name in ("TopK", "Einsum", "LpNormalization", "QuantizeLinear", "DequantizeLinear"):
        assert name in message
    assert "quantized operators are not supported: DequantizeLinear (1), QuantizeLinear (1)" in message
