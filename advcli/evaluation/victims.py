"""Which model crafts the white-box attacks on a loaded model, decided once for ``eval`` and ``attack``.

* A run folder crafts on its own weights (or on `source`, a transfer, when one is named).
* A Python module, TorchScript or torch.export program crafts on itself, behind its input contract.
* An ONNX file crafts, in order of preference: on its conversion to torch when the parity gate
  passes on the evaluation's own inputs; else on a torch checkpoint (`source`, or the run named in
  advcli's metadata: transfer); else nothing does, and white-box attacks are replaced by Square.
  onnxruntime on the file judges every counted prediction in every case. The report's
  ``white_box`` block and a note say which route was taken and why.

A model with a uint8 input accepts only the k/255 grid: its images are put on the grid, attacks run
at whole grid steps (:func:`~advcli.runtime.onnx_import.contract.grid_eps`) and every candidate is
rounded onto the grid before the judge sees it (the engine's re-check then holds for what is kept).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from ..attacks.config import AttackConfig, resolve_attack
from ..errors import AdvcliError
from ..io.runs import Run, load_run
from ..runtime.backends.onnxruntime import load_transfer_source
from ..runtime.classifier import Classifier, OutputsOnly
from ..runtime.device import resolve_device
from ..runtime.onnx_import.contract import grid_eps, round_to_grid, to_grid
from ..runtime.onnx_import.errors import ConversionError, ParityRefused
from ..runtime.user_module import contracted
from ..runtime.victim import Victim
from .config import EvalConfig

PARITY_SAMPLES = 64  # real inputs the parity gate compares the conversion with onnxruntime on


@dataclass
class Prepared:
    """The victim, the samples as the model sees them, and what the report says about how."""

    victim: Victim
    x: torch.Tensor
    white_box: dict[str, Any]
    source: Optional[Run] = None
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    square_in_place: bool = False  # nothing crafts: attacks that need gradients are replaced by square

    def attacks(self, config: EvalConfig, eps: Optional[float] = None) -> list[AttackConfig]:
        """`config`'s attacks at radius `eps` as they run on this victim: at whole grid steps on a uint8
        model, and with Square in place of those that need gradients when nothing crafts."""
        eps = config.eps_values()[-1] if eps is None else eps
        attack_eps = grid_eps(eps) if self.victim.accept is not None and config.threats.norm == "linf" else eps
        attacks = config.resolved_attacks(attack_eps)
        if not self.square_in_place:
            return attacks
        options = config.attack_options
        kept = [attack if attack.black_box else resolve_attack(
            "square", eps=attack_eps, clip=config.threats.clip, norm=config.threats.norm, queries=options.queries,
            target=attack.target) for attack in attacks]
        return list({(a.name, a.target): a for a in kept}.values())


def _grid_accept(candidate: torch.Tensor, clean: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    return round_to_grid(candidate, clean, eps=eps, norm=norm)


def _needs_gradients(config: EvalConfig) -> bool:
    return any(not attack.black_box for attack in config.resolved_attacks())


def _explicit_source(config: EvalConfig, device: torch.device) -> Optional[Run]:
    return load_run(config.source, device=device) if config.source is not None else None


def prepare(classifier: Classifier, x: torch.Tensor, config: EvalConfig) -> Prepared:
    """The victim for `classifier` on the samples `x` under `config` (see the module docstring)."""
    device = resolve_device(config.runtime.device)
    precision = config.runtime.precision
    notes, warnings = [], list(classifier.warnings)
    if classifier.integer_input:
        x = to_grid(x)
    source = _explicit_source(config, device)  # a bad `source` is refused before any work, used or not
    if classifier.white_box is not None:
        prepared = _prepare_onnx(classifier, x, config, device, notes, warnings, source)
    elif source is not None:
        victim = Victim.of(classifier.as_module(), precision=precision, source=source.model,
                           transfer_from=str(source.path))
        prepared = Prepared(victim, x, {"mode": "transfer", "converted": False, "reason": "`source` was given",
                                        "parity": None}, source=source)
    elif classifier.contract is not None and classifier.model is not None:
        wrapped, output_warnings = contracted(classifier.model, classifier.contract, x, classifier.device)
        warnings += output_warnings
        prepared = Prepared(Victim.of(wrapped, precision=precision), x,
                            {"mode": "native", "converted": False, "reason": None, "parity": None})
    else:
        prepared = Prepared(Victim.of(classifier.as_module(), precision=precision), x,
                            {"mode": "native" if classifier.model is not None else "black-box", "converted": False,
                             "reason": None if classifier.model is not None else "the model gives outputs only",
                             "parity": None})
    in_graph = classifier.non_differentiable  # the loaded graph's (the file's), else what the victim found
    prepared.victim = prepared.victim.with_(
        accept=_grid_accept if classifier.integer_input else None,
        non_differentiable=in_graph if in_graph is not None else prepared.victim.non_differentiable)
    prepared.white_box["integer_grid"] = classifier.integer_input
    prepared.notes = notes + prepared.notes
    prepared.warnings = list(dict.fromkeys(warnings + prepared.warnings))
    return prepared


def _prepare_onnx(classifier: Classifier, x: torch.Tensor, config: EvalConfig, device: torch.device,
                  notes: list[str], warnings: list[str], source: Optional[Run]) -> Prepared:
    """White-box on the conversion, else transfer, else Square only; one note says which and why."""
    judge = classifier.as_module()
    precision = config.runtime.precision
    if not _needs_gradients(config):
        return Prepared(Victim.of(judge), x, {"mode": "black-box", "converted": False, "parity": None,
                                              "reason": "only black-box attacks were asked for"})
    reason, parity = "`convert` is off", None
    if config.convert:
        try:
            box = classifier.white_box(x[:PARITY_SAMPLES], device)  # type: ignore[misc]
        except (ConversionError, ParityRefused) as error:
            reason = error.message
            parity = error.parity.to_dict() if isinstance(error, ParityRefused) and error.parity else None
        else:
            warnings += box.warnings
            notes.append(f"white-box attacks craft on {classifier.path.name} converted to torch (parity with "
                         f"onnxruntime {box.parity.relative_diff:.2g} of the output scale on {box.parity.samples} "
                         "inputs); onnxruntime on the file judges every prediction")
            if config.source is not None:
                notes.append("`source` was not used: the file itself is attacked white-box")
            victim = Victim.converted(OutputsOnly(box.judge), box.model, precision=precision)
            return Prepared(victim, x, {"mode": "converted", "converted": True, "reason": None,
                                        "parity": box.parity.to_dict(), "conversion_notes": box.notes,
                                        "conversion_seconds": round(box.converted.seconds, 3)})
    return _fallback(classifier, judge, x, config, device, reason, parity, notes, source)


def _fallback(classifier: Classifier, judge: torch.nn.Module, x: torch.Tensor, config: EvalConfig,
              device: torch.device, reason: str, parity: Optional[dict], notes: list[str],
              source: Optional[Run]) -> Prepared:
    block = {"converted": False, "reason": reason, "parity": parity}
    try:
        source = source if source is not None else load_transfer_source(classifier, None, device)
    except AdvcliError as error:
        notes.append(f"white-box attacks on {classifier.path.name} are not possible ({reason}) and there is no "
                     f"transfer source ({error.message}); gradient attacks are replaced by square, a weaker "
                     "evaluation")
        return Prepared(Victim.of(judge), x, {"mode": "black-box", **block, "transfer_error": error.message},
                        square_in_place=True)
    notes.append(f"white-box attacks on {classifier.path.name} are not possible ({reason}); they are crafted on "
                 f"{source.path} and judged by the file (transfer, weaker than white-box)")
    victim = Victim.of(judge, precision=config.runtime.precision, source=source.model, transfer_from=str(source.path))
    return Prepared(victim, x, {"mode": "transfer", **block}, source=source)


