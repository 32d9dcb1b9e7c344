"""White-box attacks on an ONNX file: convert, pass the parity gate, wrap in the input contract.

:func:`white_box` returns a differentiable torch model of pixel batches (for advcli.pgd, apgd...)
and the onnxruntime judge that decides every counted prediction, or raises with the reason the
white-box path is refused (the caller then falls back to Square or transfer attacks, saying why).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
from torch import nn

from .contract import InputContract, PixelToFile, grid_eps
from .converter import ConvertedModel, convert, forward_any_batch
from .errors import ConversionError, ParityRefused
from .hints import contract_hints
from .judge import CPU_PROVIDER, PROBABILITY_FLOOR, OnnxJudge
from .loading import ModelSource, read_model
from .masking import MaskingFinding, masking_summary, non_differentiable_ops
from .parity import PARITY_TOLERANCE, ParityReport, parity_gate

LOGITS_WARNING = ("`outputs` logits, but the outputs are non-negative rows that sum to 1 (probabilities) and no "
                  "trailing Softmax was found: attack losses saturate on them; pass `outputs` probabilities")
PROBABILITIES_WARNING = ("the outputs are probabilities and no trailing Softmax was found to attack before: the "
                         "attack differentiates their logarithm, whose gradients saturate (cross-entropy on "
                         "probabilities understates the attack); white-box figures may overstate robustness")


class ContractModule(nn.Module):
    """Pixel batches (N, C, H, W) in [0, 1] -> the logits to attack, through the file's converted graph.

    The graph always runs in eval mode (the file is an inference graph: its BatchNorm uses stored
    statistics), whatever mode this wrapper is put in.
    """

    def __init__(self, converted: ConvertedModel, contract: InputContract, channels: int, log_outputs: bool) -> None:
        super().__init__()
        self.to_file = PixelToFile(contract, channels)
        self.network = converted.logits_module
        self.fixed_batch = converted.fixed_batch
        self.log_outputs = log_outputs

    def train(self, mode: bool = True) -> "ContractModule":
        super().train(mode)
        self.network.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = forward_any_batch(self.network, self.to_file(x), self.fixed_batch)
        if x.requires_grad and torch.is_grad_enabled() and not out.requires_grad:
            # The graph cuts the gradient (an integer Cast, ArgMax...): give the attack the zero gradient
            # the operators have, rather than an autograd error. Adding 0·Σx changes no value.
            out = out + 0.0 * x.sum()
        return out.clamp_min(PROBABILITY_FLOOR).log() if self.log_outputs else out


@dataclass
class WhiteBox:
    """A file ready for white-box attacks: `model` crafts, `judge` (onnxruntime) decides."""

    model: ContractModule
    judge: OnnxJudge
    converted: ConvertedModel
    parity: ParityReport
    contract: InputContract
    masking: list[MaskingFinding]
    integer_grid: bool  # the file takes uint8: adversarial images must be rounded (round_to_grid)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # signs that the contract or the outputs mislead the attacks

    def attack_eps(self, eps: float, norm: str = "linf") -> float:
        """The budget to attack with: `eps`, or on a uint8 file under L-inf its whole grid steps (grid_eps)."""
        return grid_eps(eps) if self.integer_grid and norm == "linf" else eps


def _outputs_are_probabilities(contract: InputContract, converted: ConvertedModel, probability_like: bool,
                               notes: list[str], warnings: list[str]) -> bool:
    """Whether the attacked outputs (after any Softmax cut) are probabilities, so their log is attacked."""
    if converted.softmax_cut:
        if contract.outputs == "logits":
            notes.append("outputs=logits, but the graph ends in a Softmax; its input is attacked")
        else:
            notes.append("a trailing Softmax was found: the logits before it are attacked")
        return False
    if contract.outputs == "logits" and probability_like:
        warnings.append(LOGITS_WARNING)
    if contract.outputs == "probabilities" or (contract.outputs == "auto" and probability_like):
        warnings.append(PROBABILITIES_WARNING)
        return True
    return False


def white_box(source: ModelSource, x: torch.Tensor, *, contract: InputContract = InputContract(),
              input_dims: Optional[Sequence[int]] = None, tolerance: float = PARITY_TOLERANCE,
              providers: Sequence[str] = (CPU_PROVIDER,), device: Optional[torch.device] = None) -> WhiteBox:
    """Convert `source`, check parity against onnxruntime on the real pixel batch `x`, and wrap both.

    onnxruntime runs on `providers`; the converted module on `device` (default: the CPU), where the
    parity gate checks it.

    Raises :class:`ConversionError` (or its :class:`UnsupportedOperators`) when the graph cannot be
    converted and :class:`ParityRefused` when the conversion does not reproduce onnxruntime; each
    message is one line saying why.
    """
    proto = read_model(source)
    converted = convert(proto, input_dims=input_dims)
    if device is not None:
        converted.module.to(device)
        converted.logits_module.to(device)
    if len(converted.input_shape) != 4:
        raise ConversionError(f"the file's input has shape {list(converted.input_shape)}; images (NCHW or NHWC) expected")
    channels = contract.pixel_shape(converted.input_shape[1:])[0]  # type: ignore[arg-type]
    expected = contract.pixel_shape(converted.input_shape[1:])  # type: ignore[arg-type]
    if tuple(x.shape[1:]) != tuple(expected):
        raise ConversionError(f"inputs of shape {tuple(x.shape[1:])} do not fit the file's {list(converted.input_shape)} "
                              f"under layout {contract.layout} (expected {tuple(expected)})")
    extra = [converted.pre_softmax_name] if converted.pre_softmax_name else []
    notes = list(converted.notes)
    try:
        checker = OnnxJudge(proto, contract, fixed_batch=converted.fixed_batch, extra_outputs=extra,
                            providers=providers)
    except ConversionError:
        checker = OnnxJudge(proto, contract, fixed_batch=converted.fixed_batch, providers=providers)
        notes.append("onnxruntime could not expose the logits before the Softmax; only the outputs were compared")
    report = parity_gate(converted, checker, x, contract, tolerance=tolerance)
    if not report.passed:
        raise ParityRefused(f"white-box attacks refused: {report.reason}", parity=report)
    warnings = contract_hints(proto, contract)
    log_outputs = _outputs_are_probabilities(contract, converted, report.probability_like, notes, warnings)
    # Square on the judge compares margins: of log-probabilities when the file gives probabilities.
    judge_logs = contract.outputs == "probabilities" or (contract.outputs == "auto" and report.probability_like)
    judge = OnnxJudge(proto, contract, log_outputs=judge_logs, fixed_batch=converted.fixed_batch, providers=providers)
    masking = non_differentiable_ops(proto)
    if masking:
        notes.append(masking_summary(masking))
    if judge.integer_input:
        notes.append("the file takes uint8 images: an integer threat model; adversarial images are rounded to the "
                     "k/255 grid (round_to_grid) before they are judged; attack at attack_eps(eps), whole grid steps "
                     "(eps below 1/255 changes nothing)")
    model = ContractModule(converted, contract, channels, log_outputs).to(device or torch.device("cpu")).eval()
    return WhiteBox(model=model, judge=judge, converted=converted, parity=report, contract=contract,
                    masking=masking, integer_grid=judge.integer_input, notes=notes, warnings=warnings)
