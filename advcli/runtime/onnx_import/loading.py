"""Reading an ONNX file as data: parse, check its opsets, domains and sizes, normalise old opsets.

Nothing in the file is executed: the protobuf is parsed, tensors are read only after their declared
sizes were checked, external data (tensors in side files) is refused, model-local functions are
inlined and graphs older than opset 11 are rewritten to opset 11 by ``onnx.version_converter``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Union

import numpy as np
import torch

from .errors import ConversionError, UnsupportedOperators
from .values import MAX_ELEMENTS, check_elements

MIN_OPSET, MAX_OPSET = 7, 26  # 26: the newest default-domain opset onnxruntime 1.31 runs
UPGRADE_BELOW, UPGRADE_TO = 11, 11
DEFAULT_DOMAINS = ("", "ai.onnx")
MAX_FILE_BYTES = 4 << 30

ModelSource = Union[str, Path, bytes, Any]  # a path, serialized bytes or an onnx.ModelProto

# onnx.TensorProto data types the converter reads, as torch dtypes (by TensorProto enum value).
TORCH_DTYPES: dict[int, torch.dtype] = {
    1: torch.float32, 2: torch.uint8, 3: torch.int8, 5: torch.int16, 6: torch.int32, 7: torch.int64,
    9: torch.bool, 10: torch.float16, 11: torch.float64, 16: torch.bfloat16,
}
_ITEM_BYTES = {1: 4, 2: 1, 3: 1, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 16: 2}


def read_model(source: ModelSource) -> Any:
    """The ModelProto of `source`, parsed without loading external data."""
    import onnx
    from google.protobuf.message import DecodeError

    if isinstance(source, onnx.ModelProto):
        proto = onnx.ModelProto()
        proto.CopyFrom(source)
        return proto
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
        where = "the given bytes"
    else:
        path = Path(source)
        if not path.is_file():
            raise ConversionError(f"{path}: no such ONNX file")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ConversionError(f"{path}: {path.stat().st_size:,} bytes, over the {MAX_FILE_BYTES:,}-byte limit")
        data = path.read_bytes()
        where = str(path)
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except DecodeError:
        raise ConversionError(f"{where}: not an ONNX model (protobuf parse failed)") from None
    if not proto.HasField("graph"):
        raise ConversionError(f"{where}: not an ONNX model (no graph)")
    return proto


def default_opset(proto: Any) -> int:
    """The model's default-domain opset, after refusing opsets and domains the converter does not know."""
    versions = {entry.domain: entry.version for entry in proto.opset_import}
    used = {node.domain for node in proto.graph.node}
    foreign = sorted(domain for domain in used if domain not in DEFAULT_DOMAINS)
    if foreign:
        ops = sorted({f"{node.domain}::{node.op_type}" for node in proto.graph.node if node.domain in foreign})
        raise UnsupportedOperators(f"operators of unsupported domains: {', '.join(ops)}")
    version = max((versions[d] for d in DEFAULT_DOMAINS if d in versions), default=None)
    if version is None:
        raise ConversionError("the model imports no default-domain (ai.onnx) opset")
    if not MIN_OPSET <= version <= MAX_OPSET:
        raise ConversionError(f"opset {version} is outside the supported range {MIN_OPSET}..{MAX_OPSET}")
    return version


def normalise(proto: Any) -> tuple[Any, int, list[str]]:
    """Inline local functions and upgrade old opsets; returns the proto, its opset and notes."""
    import onnx

    notes: list[str] = []
    if len(proto.functions):
        from onnx import inliner

        count = len(proto.functions)
        proto = inliner.inline_local_functions(proto)
        notes.append(f"inlined {count} model-local function{'s' if count > 1 else ''}")
    for graph_input in proto.graph.input:  # checked before any tensor is read
        for dim in graph_input.type.tensor_type.shape.dim:
            if dim.HasField("dim_value") and not 0 <= dim.dim_value <= MAX_ELEMENTS:
                raise ConversionError(f"input {graph_input.name!r} declares dimension {dim.dim_value}")
    for tensor in proto.graph.initializer:
        check_tensor(tensor)
    opset = default_opset(proto)
    if opset < UPGRADE_BELOW:
        try:
            proto = onnx.version_converter.convert_version(proto, UPGRADE_TO)
        except Exception as error:  # the converter raises bare RuntimeErrors and ValueErrors
            raise ConversionError(f"opset {opset} could not be upgraded to {UPGRADE_TO}: {' '.join(str(error).split())[:200]}") from None
        _keep_old_resize_semantics(proto)
        notes.append(f"opset {opset} graph upgraded in memory to opset {UPGRADE_TO}")
        opset = default_opset(proto)
    return proto, opset, notes


def _keep_old_resize_semantics(proto: Any) -> None:
    """Upsample and Resize before opset 11 map output to input coordinates as x / scale and round
    down; the version converter writes opset-11 Resize nodes without saying so, which would mean
    half_pixel and round_prefer_floor. Say it."""
    from onnx import helper

    for node in proto.graph.node:
        if node.op_type != "Resize":
            continue
        names = {attribute.name for attribute in node.attribute}
        if "coordinate_transformation_mode" not in names:
            node.attribute.append(helper.make_attribute("coordinate_transformation_mode", "asymmetric"))
        if "nearest_mode" not in names:
            node.attribute.append(helper.make_attribute("nearest_mode", "floor"))


def check_tensor(tensor: Any) -> None:
    """Refuse a TensorProto before reading it: external or sparse data, unknown types, absurd or
    inconsistent sizes."""
    name = tensor.name or "an unnamed tensor"
    if tensor.data_location == 1:  # TensorProto.EXTERNAL
        raise ConversionError(f"tensor {name!r} keeps its data in an external file; external data is not read")
    if tensor.data_type not in TORCH_DTYPES:
        raise ConversionError(f"tensor {name!r} has data type {tensor.data_type}, which the converter does not read")
    shape = list(tensor.dims)
    check_elements(shape, f"tensor {name!r}")
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if tensor.HasField("raw_data"):
        expected = count * _ITEM_BYTES[tensor.data_type]
        if len(tensor.raw_data) != expected:
            raise ConversionError(f"tensor {name!r}: {len(tensor.raw_data)} bytes of data for shape {shape} "
                                  f"(expected {expected})")
        return
    stored = max(len(tensor.float_data), len(tensor.int32_data), len(tensor.int64_data), len(tensor.double_data))
    if stored != count:
        raise ConversionError(f"tensor {name!r}: {stored} values for shape {shape} ({count} expected)")


def to_torch(tensor: Any) -> torch.Tensor:
    """A checked TensorProto as a torch tensor (its own memory, never a view of the protobuf)."""
    from onnx import numpy_helper

    check_tensor(tensor)
    array = numpy_helper.to_array(tensor)
    if tensor.data_type == 16:  # bfloat16 arrives as a custom numpy dtype; go through float32
        return torch.from_numpy(np.asarray(array, dtype=np.float32).copy()).to(torch.bfloat16)
    return torch.from_numpy(np.array(array, copy=True)).to(TORCH_DTYPES[tensor.data_type])


def attributes(node: Any) -> dict[str, Any]:
    """A node's attributes as Python values (strings decoded, tensors read through :func:`to_torch`)."""
    from onnx import AttributeProto, helper

    values: dict[str, Any] = {}
    for attribute in node.attribute:
        if attribute.type == AttributeProto.TENSOR:
            values[attribute.name] = to_torch(attribute.t)
        elif attribute.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS, AttributeProto.SPARSE_TENSOR,
                                AttributeProto.TENSORS, AttributeProto.SPARSE_TENSORS):
            values[attribute.name] = attribute  # only control flow and sparse constants: refused by their ops
        else:
            value = helper.get_attribute_value(attribute)
            values[attribute.name] = value.decode() if isinstance(value, bytes) else (
                [v.decode() if isinstance(v, bytes) else v for v in value] if isinstance(value, list) else value)
    return values


__all__ = ["MAX_ELEMENTS", "MIN_OPSET", "MAX_OPSET", "read_model", "normalise", "to_torch", "attributes",
           "TORCH_DTYPES", "check_tensor", "default_opset"]
