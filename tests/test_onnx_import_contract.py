"""The input contract, the k/255 grid, the gradient-masking detector, the parity gate's refusals,
input gradients against finite differences, and the converter's refusals of unsafe or unknown files."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from onnx_import_helpers import export_legacy, make_model, tensor
from onnx_import_models import BatchNormCNN, Byte255, SmallResNet

import advcli
from advcli.errors import AdvcliError
from advcli.runtime.onnx_import import (
    MAX_ELEMENTS,
    ConversionError,
    InputContract,
    ParityRefused,
    PixelToFile,
    UnsupportedOperators,
    context,
    convert,
    grid_eps,
    masking_summary,
    non_differentiable_ops,
    round_to_grid,
    to_grid,
    white_box,
)

N = helper.make_node


def pixels(n: int, *shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed))


# The contract ------------------------------------------------------------------------------------


def test_pixel_to_file_applies_order_range_normalisation_and_layout():
    contract = InputContract(input_range=(0, 255), mean=(100.0, 110.0, 120.0), std=(50.0, 60.0, 70.0),
                             layout="nhwc", channel_order="bgr")
    x = pixels(2, 3, 4, 5)
    mean, std = torch.tensor([100.0, 110.0, 120.0]).view(1, 3, 1, 1), torch.tensor([50.0, 60.0, 70.0]).view(1, 3, 1, 1)
    expected = ((x.flip(1) * 255 - mean) / std).permute(0, 2, 3, 1)
    assert torch.allclose(PixelToFile(contract, 3)(x), expected, atol=1e-5)
    assert contract.pixel_shape((4, 5, 3)) == (3, 4, 5)


@pytest.mark.parametrize("options", [
    {"input_range": (0, 2)}, {"layout": "chw"}, {"outputs": "scores"}, {"channel_order": "grb"},
    {"mean": (0.5,)}, {"mean": (0.5, 0.5), "std": (0.2,)}, {"mean": (0.5,), "std": (0.0,)},
])
def test_contract_refuses_invalid_settings(options):
    with pytest.raises(AdvcliError) as caught:
        InputContract(**options)
    assert not isinstance(caught.value, ConversionError)  # a user's mistake, never a reason to fall back
    assert caught.value.param in options and f"`{caught.value.param}`" in caught.value.message


def test_contract_reads_the_text_forms_of_the_command_line():
    contract = InputContract(input_range="0,255", mean="1,2,3", std=[4, 5, 6], class_names="cat, dog")
    assert contract == InputContract(input_range=(0.0, 255.0), mean=(1.0, 2.0, 3.0), std=(4.0, 5.0, 6.0),
                                     class_names=("cat", "dog"))
    assert contract.changed() == ["input_range", "mean", "std", "class_names"]
    assert InputContract().changed() == []
    with pytest.raises(AdvcliError, match="`mean` must be numbers"):
        InputContract(mean="a,b", std="1,1")


def test_bgr_needs_three_channels():
    with pytest.raises(AdvcliError, match="3 channels"):
        PixelToFile(InputContract(channel_order="bgr"), 1)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_round_to_grid_stays_on_the_grid_and_inside_eps(norm):
    x = to_grid(pixels(16, 1, 6, 6))
    eps = 0.03 if norm == "linf" else 0.3
    noise = pixels(16, 1, 6, 6, seed=1) * 2 - 1
    if norm == "linf":
        x_adv = (x + eps * noise).clamp(0, 1)
    else:
        x_adv = (x + eps * noise / noise.flatten(1).norm(dim=1).view(-1, 1, 1, 1)).clamp(0, 1)
    rounded = round_to_grid(x_adv, x, eps=eps, norm=norm)
    steps = rounded * 255
    assert torch.equal(steps, torch.round(steps)) and rounded.min() >= 0 and rounded.max() <= 1
    delta = (rounded - x).flatten(1)
    size = delta.abs().max(1).values if norm == "linf" else delta.norm(dim=1)
    assert (size <= eps + 1e-6).all() and (size > 0).any()
    if norm == "linf":  # a change of at least half a step survives the rounding
        steps = torch.round((x_adv - x) * 255).clamp(-7, 7)
        assert torch.equal(rounded, (torch.round(x * 255) + steps).clamp(0, 255) / 255)


def test_square_at_the_grid_budget_needs_no_rounding(one_thread):
    data = export_legacy(Byte255(BatchNormCNN()).eval(), (pixels(1, 1, 12, 12) * 255).to(torch.uint8), 13)
    x = to_grid(pixels(8, 1, 12, 12))
    box = white_box(data, x, contract=InputContract(input_range=(0, 255)))
    assert box.attack_eps(0.1) == grid_eps(0.1) == 25 / 255 and box.attack_eps(0.5, norm="l2") == 0.5
    y = box.judge.predict(x)
    x_adv, _ = advcli.square_attack(box.judge, x, y, eps=box.attack_eps(0.1), queries=20,
                                    generator=torch.Generator().manual_seed(0))
    assert torch.allclose(round_to_grid(x_adv, x, eps=0.1), x_adv, atol=1e-6)  # what Square saw is what is judged


def test_eps_below_one_grid_step_changes_nothing():
    x = to_grid(pixels(4, 1, 5, 5))
    assert torch.equal(round_to_grid((x + 0.003).clamp(0, 1), x, eps=0.003), x)


# Gradient masking ----------------------------------------------------------------------------------


def _masked_file() -> bytes:
    nodes = [N("Mul", ["x", "k"], ["s"]), N("Round", ["s"], ["r"]), N("Div", ["r", "k"], ["q"]),
             N("Shape", ["x"], ["shape"]), N("Cast", ["shape"], ["shape_f"], to=TensorProto.FLOAT),
             N("Cast", ["q"], ["qi"], to=TensorProto.INT32), N("Cast", ["qi"], ["qf"], to=TensorProto.FLOAT),
             N("ReduceSum", ["shape_f"], ["total"], keepdims=0), N("Add", ["qf", "total"], ["a"]),
             N("Flatten", ["a"], ["f"]), N("Gemm", ["f", "w"], ["y"], transB=1)]
    weights = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)
    return make_model(nodes, (1, 4, 4), opset=13, initializers=[tensor("k", np.float32(255.0)), tensor("w", weights)])


def test_detector_lists_non_differentiable_operators_on_the_data_path_only():
    findings = non_differentiable_ops(_masked_file())
    assert [(f.op_type, f.reason.split(":")[0]) for f in findings] == [("Round", "piecewise constant"),
                                                                       ("Cast", "cast to an integer type")]
    assert "Round (1), Cast (1)" in masking_summary(findings)
    assert masking_summary([]) == "no non-differentiable operators on the data path"


def test_white_box_reports_possible_gradient_masking():
    box = white_box(_masked_file(), pixels(4, 1, 4, 4))
    assert len(box.masking) == 2 and any("possible gradient masking" in note for note in box.notes)
    x = pixels(2, 1, 4, 4).requires_grad_(True)
    (grad,) = torch.autograd.grad(box.model(x).sum(), x)
    assert torch.count_nonzero(grad) == 0  # what the detector warns of: the attack sees no gradient


# Gradients and the parity gate ----------------------------------------------------------------------


def test_input_gradients_match_finite_differences_in_float64():
    rng = np.random.default_rng(3)
    nodes = [N("Conv", ["x", "w", "b"], ["c"], pads=[1, 0, 1, 2]), N("BatchNormalization", ["c", "s", "o", "m", "v"], ["n"]),
             N("Gelu", ["n"], ["g"]), N("Pad", ["g", "p"], ["pd"], mode="reflect"),
             N("AveragePool", ["pd"], ["ap"], kernel_shape=[2, 2], pads=[0, 0, 1, 1]),
             N("Resize", ["ap", "", "sc"], ["rs"], mode="linear"), N("LayerNormalization", ["rs", "ls", "lb"], ["ln"]),
             N("Tanh", ["ln"], ["t"]), N("Flatten", ["t"], ["f"]), N("Gemm", ["f", "fw", "fb"], ["y"], transB=1)]
    initializers = [tensor("w", rng.standard_normal((3, 2, 3, 3)).astype(np.float32)), tensor("b", np.zeros(3, np.float32)),
                    tensor("s", np.ones(3, np.float32)), tensor("o", np.zeros(3, np.float32)),
                    tensor("m", np.full(3, 0.1, np.float32)), tensor("v", np.full(3, 2.0, np.float32)),
                    tensor("p", np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)),
                    tensor("sc", np.array([1, 1, 1.5, 1.5], np.float32)), tensor("ls", np.ones(9, np.float32)),
                    tensor("lb", np.zeros(9, np.float32)), tensor("fw", rng.standard_normal((4, 243)).astype(np.float32) * 0.1),
                    tensor("fb", np.zeros(4, np.float32))]
    module = convert(make_model(nodes, (2, 4, 4), opset=20, initializers=initializers)).module.double()
    x = torch.rand(2, 2, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    assert module(x).shape == (2, 4)
    assert torch.autograd.gradcheck(module, (x,), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_parity_gate_refuses_a_wrong_conversion(monkeypatch, one_thread):
    data = export_legacy(SmallResNet(), pixels(1, 3, 12, 12), 13)
    x = pixels(8, 3, 12, 12)
    assert white_box(data, x).parity.passed
    monkeypatch.setitem(context.OPS, "Relu", lambda ctx, value: ctx.module(torch.nn.LeakyReLU(0.2), value))
    with pytest.raises(ParityRefused) as caught:
        white_box(data, x)
    assert "differ from onnxruntime's" in str(caught.value) and len(str(caught.value).splitlines()) == 1


def test_parity_gate_tolerance_is_enforced(one_thread):
    data = export_legacy(SmallResNet(), pixels(1, 3, 12, 12), 13)
    with pytest.raises(ParityRefused, match="tolerance 1e-12"):
        white_box(data, pixels(8, 3, 12, 12), tolerance=1e-12)


def test_inputs_must_fit_the_file():
    data = export_legacy(SmallResNet(), pixels(1, 3, 12, 12), 13)
    with pytest.raises(ConversionError, match="do not fit"):
        white_box(data, pixels(2, 3, 10, 10))


# Files the converter refuses -------------------------------------------------------------------------


def _with_initializer(initializer) -> bytes:
    return make_model([N("Add", ["x", "c"], ["y"])], (4,), opset=13, initializers=[initializer])


def _raw_tensor(dims: list[int], data: bytes) -> TensorProto:
    """A float initializer exactly as a file may declare it, consistent or not."""
    proto = TensorProto()
    proto.name, proto.data_type, proto.raw_data = "c", TensorProto.FLOAT, data
    proto.dims.extend(dims)
    return proto


def test_absurd_initializer_sizes_are_refused_before_reading():
    with pytest.raises(ConversionError, match="over the limit"):
        convert(_with_initializer(_raw_tensor([1 << 20, 1 << 20], b"")))
    with pytest.raises(ConversionError, match="12 bytes of data for shape"):
        convert(_with_initializer(_raw_tensor([4], b"\0" * 12)))


def test_external_data_is_refused():
    external = _raw_tensor([4], b"")
    external.data_location = TensorProto.EXTERNAL
    entry = external.external_data.add()
    entry.key, entry.value = "location", "/etc/passwd"
    with pytest.raises(ConversionError, match="external"):
        convert(_with_initializer(external))


@pytest.mark.parametrize("op_type,inputs", [("ConstantOfShape", ["s"]), ("Range", ["zero", "limit", "one"])])
def test_absurd_computed_sizes_are_refused(op_type, inputs):
    nodes = [N(op_type, inputs, ["c"]), N("Cast", ["c"], ["cf"], to=TensorProto.FLOAT), N("Add", ["x", "cf"], ["y"])]
    initializers = [tensor("s", np.array([MAX_ELEMENTS + 1], np.int64)), tensor("zero", np.int64(0)),
                    tensor("limit", np.int64(MAX_ELEMENTS * 4)), tensor("one", np.int64(1))]
    with pytest.raises(ConversionError, match="refusing to allocate"):
        convert(make_model(nodes, (4,), opset=13, initializers=initializers))


@pytest.mark.parametrize("nodes,initializers", [
    ([N("Pad", ["x", "p"], ["y"])], [tensor("p", np.array([0, 0, 1 << 20, 1 << 20, 0, 0, 1 << 20, 1 << 20], np.int64))]),
    ([N("Tile", ["x", "r"], ["y"])], [tensor("r", np.array([1, 1, 1 << 16, 1 << 16], np.int64))]),
    ([N("Resize", ["x", "", "s"], ["y"])], [tensor("s", np.array([1, 1, 1e5, 1e5], np.float32))]),
    ([N("MaxPool", ["x"], ["y"], kernel_shape=[1, 1], pads=[1 << 15, 1 << 15, 1 << 15, 1 << 15])], []),
    ([N("ConvTranspose", ["x", "w"], ["y"], strides=[1 << 14, 1 << 14])], [tensor("w", np.ones((1, 1, 1, 1), np.float32))]),
], ids=["pad", "tile", "resize", "pool-pads", "conv-transpose-strides"])
def test_absurd_sizes_from_attributes_are_refused(nodes, initializers):
    with pytest.raises(ConversionError, match="refusing to allocate"):
        convert(make_model(nodes, (1, 4, 4), opset=13, initializers=initializers))


def test_unknown_domains_and_opsets_are_refused():
    data = make_model([N("FusedConv", ["x"], ["y"], domain="com.microsoft")], (4,), opset=13)
    with pytest.raises(UnsupportedOperators, match="com.microsoft::FusedConv"):
        convert(data)
    proto = onnx.load_from_string(make_model([N("Relu", ["x"], ["y"])], (4,), opset=13))
    proto.opset_import[0].version = 27
    with pytest.raises(ConversionError, match="opset 27 is outside"):
        convert(proto)


@pytest.mark.parametrize("data", [b"not an onnx file", b"\x08\x07\x12\x05hello"])
def test_malformed_files_are_refused(data):
    with pytest.raises(AdvcliError):
        convert(data)


def test_symbolic_image_sizes_need_input_dims():
    graph = helper.make_graph([N("Relu", ["x"], ["y"])], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(ConversionError, match="pass input_dims"):
        convert(proto)
    assert convert(proto, input_dims=(3, 8, 8)).input_shape == (None, 3, 8, 8)
