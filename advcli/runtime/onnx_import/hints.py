"""Signs that an input contract does not describe the file: read from the graph's first operators.

Exporters put a model's preprocessing at the front of the graph: a Div by 255 (the file takes
0..255), a Sub of 123.68 (0..255 means), a Sub and Div by ImageNet's statistics (it normalises
itself), a Transpose from NHWC. Each finding that contradicts the declared contract becomes a
one-line warning; nothing is changed, since the user's contract is what the attacks follow.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from .contract import InputContract
from .loading import ModelSource, read_model, to_torch

FRONT_OPS = ("Cast", "Identity", "Transpose", "Div", "Mul", "Sub", "Add")
NHWC_TO_NCHW = [0, 3, 1, 2]


def _constants(graph: Any) -> dict[str, np.ndarray]:
    values = {tensor.name: to_torch(tensor).double().numpy() for tensor in graph.initializer
              if tensor.data_type in (1, 10, 11)}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            tensor = node.attribute[0].t
            if tensor.data_type in (1, 10, 11):
                values[node.output[0]] = to_torch(tensor).double().numpy()
    return values


def front_operators(source: ModelSource) -> list[tuple[str, Optional[np.ndarray], Optional[list[int]]]]:
    """The elementwise and layout operators the image passes through first, in order: (op type, the
    constant it is combined with or None, a Transpose's permutation or None)."""
    proto = source if hasattr(source, "graph") else read_model(source)
    graph = proto.graph
    constants = _constants(graph)
    initializers = {tensor.name for tensor in graph.initializer}
    current = next((value.name for value in graph.input if value.name not in initializers), None)
    found: list[tuple[str, Optional[np.ndarray], Optional[list[int]]]] = []
    while current is not None:
        consumers = [node for node in graph.node if current in node.input]
        if len(consumers) != 1 or consumers[0].op_type not in FRONT_OPS:
            break
        node = consumers[0]
        others = [name for name in node.input if name != current]
        constant = constants.get(others[0]) if len(others) == 1 else None
        if node.op_type in ("Div", "Mul", "Sub", "Add") and constant is None:
            break
        perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
        found.append((node.op_type, constant, perm))
        current = node.output[0]
    return found


def contract_hints(source: ModelSource, contract: InputContract) -> list[str]:
    """One-line warnings where the file's front operators contradict `contract`, then the contract's own."""
    hints: list[str] = []
    scaled = normalised = False
    for op_type, constant, perm in front_operators(source):
        if op_type == "Transpose" and perm == NHWC_TO_NCHW and contract.layout == "nchw":
            hints.append("the graph transposes its input from NHWC to NCHW first: it takes NHWC images, "
                         "but `layout` is nchw")
        if constant is None or not constant.size:
            continue
        magnitude = float(np.abs(constant).max())
        divides = (op_type == "Div" and magnitude >= 2) or (op_type == "Mul" and 0 < magnitude <= 0.5)
        if divides and not scaled and not normalised and contract.top == 1.0:
            hints.append(f"the graph scales its input by 1/{(magnitude if op_type == 'Div' else 1 / magnitude):g} "
                         "first: it takes 0..255 pixels, but `input_range` is 0,1")
        if op_type in ("Sub", "Add") and magnitude > 2 and not scaled and contract.top == 1.0:
            hints.append(f"the graph subtracts values up to {magnitude:g} from its input first: it takes 0..255 "
                         "pixels, but `input_range` is 0,1")
        if op_type in ("Sub", "Add") and 0 < magnitude < 1 and constant.size in (3, 1) and contract.mean is not None:
            hints.append("the graph subtracts a mean from its input itself: `mean` and `std` normalise it twice")
            normalised = True
        scaled = scaled or divides
    return hints + contract.warnings()
