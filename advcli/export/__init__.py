"""Exporting a run for deployment: ONNX, checked by onnx.checker and by logit parity under onnxruntime."""

from .._lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "export_onnx": ".to_onnx",
    "check_parity": ".to_onnx",
    "parity_file_of": ".to_onnx",
    "ParityError": ".to_onnx",
    "ParityResult": ".to_onnx",
    "ExportResult": ".to_onnx",
    "onnx_metadata": ".to_onnx",
    "DEFAULT_OPSET": ".to_onnx",
})

__all__ = ["export_onnx", "check_parity", "parity_file_of", "ParityError", "ParityResult", "ExportResult",
           "onnx_metadata", "DEFAULT_OPSET"]
