"""A user's own torch model under evaluation: any ``nn.Module`` that maps the input its contract
declares to logits (or probabilities, said so or found), wrapped so that attacks see advcli's pixel
batches (N, C, H, W) in [0, 1] and eps stays in pixel units.

The same wrapper serves the programs loaded from trusted TorchScript and torch.export files.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional

import torch
from torch import fx, nn

from ..errors import AdvcliError
from .classifier import Classifier, torch_logits
from .onnx_import.contract import InputContract, PixelToFile
from .onnx_import.judge import PROBABILITY_FLOOR

PROBE_SAMPLES = 32
PROBABILITY_SHARE = 0.99  # outputs are probabilities when this share of rows are non-negative and sum to 1
# Torch operators whose gradient is zero or undefined (fx targets and TorchScript kinds end in these names).
NON_DIFFERENTIABLE = frozenset({
    "round", "floor", "ceil", "sign", "trunc", "argmax", "argmin", "topk", "bucketize", "searchsorted", "one_hot",
    "nonzero", "eq", "ne", "gt", "lt", "ge", "le", "heaviside", "quantize_per_tensor", "quantize_per_channel",
})


def set_inference_mode(model: nn.Module) -> nn.Module:
    """`model` in eval mode; a torch.export program, fixed at export, refuses mode changes and keeps its own."""
    try:
        model.eval()
    except NotImplementedError:
        pass
    return model


class ContractedModule(nn.Module):
    """A user's model behind its input contract: pixel batches in, what attacks should differentiate out
    (the log of probability outputs, which ranks classes as their logits do)."""

    def __init__(self, model: nn.Module, contract: InputContract, channels: int, log_outputs: bool = False) -> None:
        super().__init__()
        self.to_file = PixelToFile(contract, channels)
        self.model = model
        self.log_outputs = log_outputs

    def train(self, mode: bool = True) -> "ContractedModule":
        """The wrapper's mode only: the user's model always runs in eval mode (stored BatchNorm
        statistics, no dropout), as it is deployed."""
        self.training = mode
        self.to_file.train(mode)
        set_inference_mode(self.model)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(self.to_file(x))
        if not isinstance(out, torch.Tensor):
            raise AdvcliError(f"the model returned {type(out).__name__}, not a tensor of shape (N, classes)")
        out = out.float()
        return out.clamp_min(PROBABILITY_FLOOR).log() if self.log_outputs else out


def weights_fingerprint(model: nn.Module) -> str:
    """``sha256:`` of a module's parameters and buffers (names, shapes, values): which weights ran."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if isinstance(tensor, torch.Tensor):
            digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
            digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return "sha256:" + digest.hexdigest()


def module_classifier(model: nn.Module, contract: InputContract, *, path: Path | str = "(python module)",
                      backend: str = "python", fingerprint: Optional[str] = None,
                      notes: Optional[list[str]] = None) -> Classifier:
    """A user's module as a classifier; the contract is applied when the data is known (:func:`contracted`)."""
    parameter = next(iter([*model.parameters(), *model.buffers()]), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    set_inference_mode(model)
    return Classifier(path=Path(path), backend=backend, fingerprint=fingerprint or weights_fingerprint(model),
                      logits=torch_logits(ContractedModule(model, InputContract(), 1)), device=device, classes=list(contract.class_names or []) or None,
                      model=model, contract=contract, non_differentiable=graph_findings(model),
                      notes=list(notes or []), warnings=contract.warnings())


def _probability_share(rows: torch.Tensor) -> float:
    looks = (rows >= 0).all(1) & ((rows.sum(1) - 1).abs() < 1e-3)
    return float(looks.float().mean()) if len(rows) else 0.0


def contracted(model: nn.Module, contract: InputContract, x: torch.Tensor, device: torch.device
               ) -> tuple[ContractedModule, list[str]]:
    """`model` behind `contract` for pixel batches shaped like `x`, and warnings; its outputs are checked
    on up to :data:`PROBE_SAMPLES` real inputs first (shape, and whether they are probabilities)."""
    wrapped = ContractedModule(model, contract, x.shape[1]).to(device)
    probe = x[:PROBE_SAMPLES].to(device)
    try:
        with torch.no_grad():
            rows = wrapped.eval()(probe)
    except AdvcliError:
        raise
    except Exception as error:  # whatever the user's code raises on inputs it was not made for
        raise AdvcliError(f"the model failed on inputs of shape {tuple(probe.shape[1:])} under the input contract "
                          f"(`layout` {contract.layout}, `input_range` 0,{contract.top:g}): "
                          f"{type(error).__name__}: {' '.join(str(error).split())[:200]}", param="layout") from None
    if rows.ndim != 2 or rows.shape[0] != len(probe):
        raise AdvcliError(f"the model's outputs have shape {tuple(rows.shape)} for {len(probe)} inputs; "
                          "expected (N, classes) logits or probabilities", param="outputs")
    share = _probability_share(rows)
    warnings: list[str] = []
    if contract.outputs == "probabilities" and share < PROBABILITY_SHARE:
        raise AdvcliError(f"`outputs` probabilities, but {1 - share:.0%} of output rows are not probabilities "
                          "(negative or not summing to 1); pass `outputs` logits", param="outputs")
    probabilities = contract.outputs == "probabilities" or (contract.outputs == "auto" and share >= PROBABILITY_SHARE)
    if contract.outputs == "logits" and share >= PROBABILITY_SHARE:
        warnings.append("`outputs` logits, but the outputs are non-negative rows that sum to 1: attack losses "
                        "saturate on probabilities; pass `outputs` probabilities (their log is then attacked)")
    if probabilities:
        warnings.append("the outputs are probabilities: the attack differentiates their logarithm, whose gradients "
                        "saturate where the softmax does; return logits for the strongest attack")
    wrapped.log_outputs = probabilities
    return wrapped, warnings


def _data_path_names(graph: fx.Graph) -> list[str]:
    """The operator names computed from the inputs' values in an fx graph (sizes and shapes excluded)."""
    data = {node for node in graph.nodes if node.op == "placeholder"}
    names = []
    for node in graph.nodes:
        if node.op != "call_function" and node.op != "call_method":
            continue
        if not any(arg in data for arg in node.all_input_nodes):
            continue
        name = str(getattr(node.target, "__name__", node.target)).split(".")[0]
        if name.startswith("sym_size") or name in ("size", "dim"):
            continue
        data.add(node)
        names.append(name)
    return names


def _script_tensor_op_names(block: torch.Block) -> list[str]:
    """The same for a TorchScript graph, roughly: every operator applied to a tensor, inside control
    flow too (sizes and other integers compared in Python code are not tensors)."""
    names = []
    for node in block.nodes():
        if any(value.type().kind() == "TensorType" for value in node.inputs()):
            names.append(node.kind().split("::")[-1])
        for inner in node.blocks():
            names += _script_tensor_op_names(inner)
    return names


def graph_findings(model: nn.Module) -> Optional[list[str]]:
    """Non-differentiable operators on the data path of the model's graph (an fx GraphModule, as
    torch.export programs load, a TorchScript module, or an eager module that torch.fx can trace
    symbolically); None when there is no graph to inspect."""
    if isinstance(model, fx.GraphModule):
        names = _data_path_names(model.graph)
    elif isinstance(model, torch.jit.ScriptModule):
        names = _script_tensor_op_names(model.inlined_graph)
    else:
        try:
            names = _data_path_names(fx.symbolic_trace(model).graph)
        except Exception:  # data-dependent control flow, custom autograd functions...: no graph to read
            return None
    counts: dict[str, int] = {}
    for name in names:
        if name.rstrip("_") in NON_DIFFERENTIABLE:
            counts[name.rstrip("_")] = counts.get(name.rstrip("_"), 0) + 1
    return [f"{name} ({count})" for name, count in counts.items()]
