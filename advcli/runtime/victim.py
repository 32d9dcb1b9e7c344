"""The model under attack, in every role an evaluation needs it.

One object answers who does what, so no function takes a model, a crafter, a source and a judge:

* :attr:`Victim.judge` makes every prediction that counts (clean accuracy, early stops, which
  samples are fooled, the final re-classification), in float32. For a torch model it is the frozen
  channels-last copy the attacks craft on; for an ONNX file, onnxruntime on the file.
* :attr:`Victim.crafter` is what white-box attacks differentiate: the judge itself in float32, an
  :class:`~advcli.runtime.autocast.Autocast` wrapper of it in reduced precision, the torch
  conversion of an ONNX file (:meth:`Victim.converted`), or a transfer source (another model,
  named :attr:`transfer_from`). None when only outputs exist. :attr:`crafted_on` says which.
* black-box attacks query the judge (through a :class:`QueryCounter`, which counts them).

A model that accepts only some inputs (a uint8 ONNX file takes the k/255 grid) has :attr:`accept`,
which moves each adversarial candidate onto what the model accepts before the judge sees it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Optional

import torch
from torch import nn

from .autocast import crafting_model, deciding_model
from .classifier import OutputsOnly
from .precision import resolve_precision
from .user_module import graph_findings


class QueryCounter(nn.Module):
    """A model that counts the inputs it is asked about (black-box queries)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.count = model, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.count += len(x)
        return self.model(x)


@dataclass
class Victim:
    """A model under attack: see the module docstring for the roles."""

    judge: nn.Module
    crafter: Optional[nn.Module]
    gradient_model: Optional[nn.Module]  # float32 model whose input gradients sanity checks inspect
    device: torch.device
    precision: str  # what white-box gradients run in; fp32 when nothing is differentiated
    transfer_from: Optional[str] = None  # name of the transfer source, when the crafter is another model
    crafted_on: str = "model"  # model (its own weights), converted (an ONNX file's conversion), transfer, none
    # (candidate, clean, eps, norm) -> the candidate as the model accepts it, still within eps of clean
    accept: Optional[Callable[[torch.Tensor, torch.Tensor, float, str], torch.Tensor]] = None
    non_differentiable: Optional[list[str]] = None  # operators in its graph that mask gradients; None: not inspected

    @classmethod
    def of(cls, model: nn.Module, *, precision: str = "auto", source: Optional[nn.Module] = None,
           transfer_from: Optional[str] = None) -> "Victim":
        """The victim for `model` (a torch model, or :class:`OutputsOnly`), white-box gradients in
        `precision` (resolved on the device of the weights), crafted on `source` when given (transfer)."""
        differentiable = source if source is not None else None if isinstance(model, OutputsOnly) else model
        findings = graph_findings(model) if differentiable is model else None
        parameter = next((source if source is not None else model).parameters(), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
        if differentiable is None:
            return cls(judge=model, crafter=None, gradient_model=None, device=device, precision="fp32", crafted_on="none")
        resolved = resolve_precision(precision, device)
        crafter = crafting_model(differentiable, resolved, device)
        judge = model if source is not None else deciding_model(crafter)
        return cls(judge=judge, crafter=crafter, gradient_model=source if source is not None else judge,
                   device=device, precision=resolved, transfer_from=transfer_from if source is not None else None,
                   crafted_on="transfer" if source is not None else "model", non_differentiable=findings)

    @classmethod
    def converted(cls, judge: nn.Module, conversion: nn.Module, *, precision: str = "auto") -> "Victim":
        """An ONNX file attacked white-box: onnxruntime on the file (`judge`, outputs only) decides,
        its torch `conversion` (which passed the parity gate) crafts, in `precision`."""
        victim = cls.of(judge, precision=precision, source=conversion)
        return replace(victim, transfer_from=None, crafted_on="converted")

    def with_(self, **changes: object) -> "Victim":
        """A copy with fields changed (e.g. `accept` or `non_differentiable`)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def outputs_only(self) -> bool:
        return self.crafter is None
