"""Operators on the image's data path whose gradient is zero or undefined: possible gradient masking.

A white-box attack that differentiates through Round, Floor, ArgMax or an integer Cast sees zero
gradients there and can fail although the model is not robust; such findings are listed so that
a report can say its white-box figure may be an overestimate of robustness. Shape computations
(anything downstream of Shape or Size only) carry no gradient by nature and are not listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .loading import ModelSource, read_model

INTEGER_TYPES = frozenset({2, 3, 4, 5, 6, 7, 9, 12, 13})  # TensorProto uint8..int64, bool, uint32, uint64

_REASONS = {
    "ArgMax": "an index: no gradient", "ArgMin": "an index: no gradient", "TopK": "indices and a selection",
    "Round": "piecewise constant: zero gradient", "Floor": "piecewise constant: zero gradient",
    "Ceil": "piecewise constant: zero gradient", "Sign": "piecewise constant: zero gradient",
    "QuantizeLinear": "rounds to an integer grid", "DynamicQuantizeLinear": "rounds to an integer grid",
    "NonZero": "indices of the data", "Hardmax": "one-hot of the maximum: zero gradient",
    "Equal": "a comparison: boolean output", "Greater": "a comparison: boolean output",
    "Less": "a comparison: boolean output", "GreaterOrEqual": "a comparison: boolean output",
    "LessOrEqual": "a comparison: boolean output", "Mod": "integer remainder", "IsNaN": "boolean output",
    "IsInf": "boolean output", "OneHot": "one-hot encoding: zero gradient",
}
_SHAPE_ONLY = frozenset({"Shape", "Size"})


@dataclass(frozen=True)
class MaskingFinding:
    """One operator on the data path that can mask gradients."""

    op_type: str
    node: str
    reason: str

    def __str__(self) -> str:
        return f"{self.op_type} {self.node!r}: {self.reason}"


def non_differentiable_ops(source: ModelSource) -> list[MaskingFinding]:
    """The operators computed from the image's values whose gradient is zero or undefined, in graph order."""
    proto = source if hasattr(source, "graph") else read_model(source)
    graph = proto.graph
    initializers = {tensor.name for tensor in graph.initializer}
    data = {value.name for value in graph.input if value.name not in initializers}
    findings: list[MaskingFinding] = []
    for index, node in enumerate(graph.node):
        if not any(name in data for name in node.input) or node.op_type in _SHAPE_ONLY:
            continue
        data.update(name for name in node.output if name)
        reason = _reason(node)
        if reason:
            findings.append(MaskingFinding(node.op_type, node.name or f"{node.op_type}_{index}", reason))
    return findings


def _reason(node: Any) -> str:
    if node.op_type == "Cast":
        to = next((a.i for a in node.attribute if a.name == "to"), None)
        return "cast to an integer type: zero gradient" if to in INTEGER_TYPES else ""
    return _REASONS.get(node.op_type, "")


def masking_summary(findings: list[MaskingFinding]) -> str:
    """One line for a report: none found, or which operators and why a white-box figure may overstate robustness."""
    if not findings:
        return "no non-differentiable operators on the data path"
    counts: dict[str, int] = {}
    for finding in findings:
        counts[finding.op_type] = counts.get(finding.op_type, 0) + 1
    listed = ", ".join(f"{op} ({n})" for op, n in counts.items())
    return (f"possible gradient masking: non-differentiable operators on the data path: {listed}; "
            "white-box robust accuracy may overstate robustness")
