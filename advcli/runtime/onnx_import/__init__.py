"""White-box attacks on third-party ONNX classifiers.

:func:`convert` turns an ONNX graph (read as data, never executed) into a differentiable torch.fx
module; :func:`parity_gate` admits it for crafting attacks only when it reproduces onnxruntime's
outputs on real inputs; :class:`InputContract` says what the file expects (range, normalisation,
layout, outputs) so that attacks stay in advcli's pixel space [0, 1] NCHW, and onnxruntime on the
file (:class:`OnnxJudge`) judges every counted prediction. :func:`white_box` does all three.

This package depends on torch, onnx, onnxruntime and :mod:`advcli.errors` only.
"""

from ..._lazy import lazy_exports

_EXPORTS = {
    "InputContract": ".contract", "PixelToFile": ".contract", "grid_eps": ".contract", "round_to_grid": ".contract",
    "to_grid": ".contract",
    "ConvertedModel": ".converter", "convert": ".converter", "forward_any_batch": ".converter",
    "ConversionError": ".errors", "ParityRefused": ".errors", "UnsupportedOperators": ".errors",
    "OnnxJudge": ".judge", "MIN_OPSET": ".loading", "MAX_OPSET": ".loading", "MAX_ELEMENTS": ".values",
    "MaskingFinding": ".masking", "masking_summary": ".masking", "non_differentiable_ops": ".masking",
    "PARITY_TOLERANCE": ".parity", "ParityReport": ".parity", "parity_gate": ".parity",
    "ContractModule": ".whitebox", "WhiteBox": ".whitebox", "white_box": ".whitebox",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = list(_EXPORTS)
