"""White-box attacks on third-party ONNX classifiers.

:func:`convert` turns an ONNX graph (read as data, never executed) into a differentiable torch.fx
module; :func:`parity_gate` admits it for crafting attacks only when it reproduces onnxruntime's
outputs on real inputs; :class:`InputContract` says what the file expects (range, normalisation,
layout, outputs) so that attacks stay in advcli's pixel space [0, 1] NCHW, and onnxruntime on the
file (:class:`OnnxJudge`) judges every counted prediction. :func:`white_box` does all three.
"""

from .contract import InputContract, PixelToFile, grid_eps, round_to_grid, to_grid
from .convert import ConvertedModel, convert, forward_any_batch
from .errors import ConversionError, ParityRefused, UnsupportedOperators
from .judge import OnnxJudge
from .loading import MAX_OPSET, MIN_OPSET
from .masking import MaskingFinding, masking_summary, non_differentiable_ops
from .parity import PARITY_TOLERANCE, ParityReport, parity_gate
from .values import MAX_ELEMENTS
from .whitebox import ContractModule, WhiteBox, white_box

__all__ = [
    "InputContract", "PixelToFile", "grid_eps", "round_to_grid", "to_grid",
    "ConvertedModel", "convert", "forward_any_batch",
    "ConversionError", "ParityRefused", "UnsupportedOperators",
    "OnnxJudge", "MIN_OPSET", "MAX_OPSET", "MAX_ELEMENTS",
    "MaskingFinding", "masking_summary", "non_differentiable_ops",
    "PARITY_TOLERANCE", "ParityReport", "parity_gate",
    "ContractModule", "WhiteBox", "white_box",
]
