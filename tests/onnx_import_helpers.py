"""Building small third-party-style ONNX files for the onnx_import tests, and comparing with onnxruntime."""

from __future__ import annotations

import contextlib
import io
import warnings
from typing import Any, Sequence

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper


def make_model(nodes: Sequence[Any], input_shape: Sequence[Any], *, opset: int, initializers: Sequence[Any] = (),
               input_type: int = TensorProto.FLOAT, output: str = "y", output_type: int = TensorProto.FLOAT) -> bytes:
    """A one-input model whose graph is `nodes`; the input is named ``x``, its batch axis symbolic."""
    graph = helper.make_graph(
        list(nodes), "case", [helper.make_tensor_value_info("x", input_type, ["N", *input_shape])],
        [helper.make_tensor_value_info(output, output_type, None)], initializer=list(initializers))
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="third-party")
    model.ir_version = helper.find_min_ir_version_for(opsets)
    return model.SerializeToString()


def tensor(name: str, array: Any) -> Any:
    return numpy_helper.from_array(np.asarray(array), name)


def ort_run(data: bytes, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def export_legacy(model: torch.nn.Module, example: torch.Tensor, opset: int, **options: Any) -> bytes:
    """The TorchScript exporter's file (``dynamo=False``) with a dynamic batch axis."""
    buffer = io.BytesIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (example,), buffer, input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, opset_version=opset,
                          dynamo=False, **options)
    return buffer.getvalue()


def export_dynamo(model: torch.nn.Module, example: torch.Tensor, opset: int) -> bytes:
    """The dynamo exporter's file (needs onnxscript) with a dynamic batch axis."""
    import logging

    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(model.eval(), (example,), dynamo=True, opset_version=opset,
                                        dynamic_shapes=({0: torch.export.Dim("batch", min=1)},), verbose=False)
    finally:
        logging.disable(logging.NOTSET)
    return program.model_proto.SerializeToString()


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    scale = max(float(np.abs(expected).max()), 1e-6)
    return float(np.abs(actual.astype(np.float64) - expected).max()) / scale


def onnx_opsets(data: bytes) -> dict[str, int]:
    return {entry.domain: entry.version for entry in onnx.load_from_string(data).opset_import}


def seeded(*shape: int, seed: int = 0, low: float = 0.0, high: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(low, high, size=shape).astype(np.float32)
