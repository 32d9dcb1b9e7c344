"""A model under evaluation, whatever runs it: a function from pixel-space inputs to logits, plus
what it is (file, fingerprint, classes, the execution provider that actually runs it, the input
contract it was loaded under)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

from .execution import attack_mode

LogitsFn = Callable[[torch.Tensor], torch.Tensor]


def torch_logits(model: nn.Module) -> LogitsFn:
    """Wrap a torch model as a logits function (what black-box attacks query).

    Each query runs in eval mode with frozen parameters; the model's own mode is left as it was.
    """

    @torch.no_grad()
    def logits(x: torch.Tensor) -> torch.Tensor:
        with attack_mode(model):
            return model(x).float()

    return logits


class OutputsOnly(nn.Module):
    """A model known only by its outputs (e.g. an onnxruntime session) as a torch module.

    It has no parameters and gives no gradients: it serves clean predictions, re-classification
    and black-box attacks; white-box attacks need torch weights.
    """

    def __init__(self, logits: LogitsFn) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x.detach()).float()


@dataclass
class Classifier:
    """A model under evaluation, whatever runs it. Calling it maps inputs to logits (on the inputs' device)."""

    path: Path
    backend: str
    fingerprint: str
    logits: LogitsFn
    device: torch.device
    classes: Optional[list[str]] = None
    input_shape: Optional[tuple[int, ...]] = None
    data_spec: Optional[str] = None
    model: Optional[nn.Module] = None  # torch weights for white-box attacks; None when only outputs exist
    execution_providers: Optional[list[str]] = None  # as read back from onnxruntime
    metadata: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    contract: Any = None  # the InputContract of a foreign model; None: advcli's own pixels and logits
    integer_input: bool = False  # the model takes uint8 images: an integer threat model on the k/255 grid
    non_differentiable: Optional[list[str]] = None  # operators found in its graph that mask gradients; None: not inspected
    warnings: list[str] = field(default_factory=list)  # signs that the contract does not describe the model
    # An ONNX file's route to white-box attacks: `white_box(x, device)` converts it, checks parity on
    # the real inputs `x` and returns a WhiteBox, or raises ConversionError / ParityRefused.
    white_box: Optional[Callable[[torch.Tensor, torch.device], Any]] = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x)

    def as_module(self) -> nn.Module:
        """The model as a torch module: its own weights, or (outputs only) a module without gradients."""
        return self.model if self.model is not None else OutputsOnly(self.logits)
