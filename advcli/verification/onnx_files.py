"""ONNX files in verification: the file converted to torch (:mod:`advcli.runtime.onnx_import`) under
its input contract, admitted only when the parity gate passes on the verification's own inputs, as
``eval`` admits it for white-box attacks.

The bounds and the attacks run on the conversion, a torch.fx graph from advcli's pixels in [0, 1]
(NCHW) to the file's logits (the input of a trailing Softmax, which changes no prediction);
onnxruntime on the file judges every clean prediction and every counterexample, so a sample is
violated only when the file itself misclassifies a point of the ball. A file the bounds cannot
follow is refused before any work, naming its operator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import torch
import torch.fx as fx
from torch import nn

from ..errors import AdvcliError
from ..evaluation.victims import PARITY_SAMPLES
from ..runtime.classifier import Classifier, OutputsOnly
from ..runtime.onnx_import.errors import ConversionError, ParityRefused
from .graph import build_graph
from .tracing import trace


@dataclass
class Verifiable:
    """What verification runs on: `model` (pixels in [0, 1], NCHW, to logits) is bounded and
    attacked; `judge` decides predictions (None: `model` itself); `conversion` is the report's
    account of an ONNX file's conversion (None for a run folder)."""

    model: nn.Module
    judge: Optional[nn.Module] = None
    conversion: Optional[dict[str, Any]] = None
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _append(graph: fx.Graph, part: fx.GraphModule, value: fx.Node, prefix: str) -> Any:
    """Copy `part`'s graph into `graph` with its input bound to `value` and its attributes read under
    `prefix`; the copy's output value."""
    before = set(graph.nodes)
    placeholder = next(node for node in part.graph.nodes if node.op == "placeholder")
    output = graph.graph_copy(part.graph, {placeholder: value})
    for node in graph.nodes:
        if node not in before and node.op in ("get_attr", "call_module"):
            node.target = f"{prefix}.{node.target}"
    return output


def pixel_graph(front: nn.Module, network: fx.GraphModule, input_shape: tuple[int, ...]) -> fx.GraphModule:
    """One GraphModule: `front` (the input contract, pixels to what the file takes) then `network`
    (the converted file); the network's nodes keep the ONNX operators they came from."""
    traced = trace(front, tuple(input_shape))
    root = nn.Module()
    root.front, root.network = traced, network
    graph = fx.Graph()
    x = graph.placeholder("x")
    graph.output(_append(graph, network, _append(graph, traced, x, "front"), "network"))
    return fx.GraphModule(root, graph, "VerifiedOnnx").eval()


def verifiable(classifier: Classifier, x: torch.Tensor, device: torch.device) -> Verifiable:
    """The model to verify for `classifier` on the samples `x`: a run's own network, or an ONNX file's
    conversion once it reproduces onnxruntime on `x` (its first :data:`PARITY_SAMPLES`), with the file
    as the judge. Every refusal is one line, before any work."""
    if classifier.white_box is None:
        if classifier.model is None:
            raise AdvcliError(f"{classifier.path} gives outputs only; verification needs its weights", param="model")
        return Verifiable(classifier.model, notes=list(classifier.notes))
    name = classifier.path.name
    if classifier.integer_input:
        raise AdvcliError(f"`model` {name} takes uint8 images; verification covers float inputs only", param="model")
    try:
        box = classifier.white_box(x[:PARITY_SAMPLES], device)
    except (ConversionError, ParityRefused) as error:
        raise AdvcliError(f"`model` {name} cannot be verified: {error.message}", param="model") from None
    if box.converted.fixed_batch:
        raise AdvcliError(f"`model` {name} fixes its batch size at {box.converted.fixed_batch}; verification needs "
                          "a batch axis of any size (export it with a dynamic batch)", param="model")
    model = pixel_graph(box.model.to_file, box.converted.logits_module, tuple(x.shape[1:])).to(device)
    build_graph(model, tuple(x.shape[1:]))  # an operator the bounds cannot follow is refused here
    conversion = {"parity": box.parity.to_dict(), "operators": dict(box.converted.operators),
                  "softmax_cut": box.converted.softmax_cut, "seconds": round(box.converted.seconds, 3),
                  "notes": list(box.notes)}
    notes = [*classifier.notes, f"{name} is bounded and attacked through its conversion to torch (parity with "
             f"onnxruntime {box.parity.relative_diff:.2g} of the output scale on {box.parity.samples} inputs); "
             "onnxruntime on the file judges every prediction and counterexample"]
    return Verifiable(model, OutputsOnly(box.judge), conversion, notes, list(dict.fromkeys(box.warnings)))
