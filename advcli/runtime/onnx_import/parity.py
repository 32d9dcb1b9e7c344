"""The parity gate: a converted module crafts attacks only if it computes what onnxruntime computes.

Both run on the same real inputs, as a whole batch and the first input alone (which exercises a
dynamic batch axis); the largest absolute difference, relative to the largest output magnitude,
must be at most the tolerance and the predicted classes must all agree. When a trailing Softmax
was cut, the logits before it are compared too (read from onnxruntime as an added output), since
those are what the attack differentiates.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Optional

import numpy as np
import torch

from .contract import InputContract, PixelToFile
from .converter import ConvertedModel, forward_any_batch
from .judge import OnnxJudge

PARITY_TOLERANCE = 1e-4


@dataclass(frozen=True)
class ParityReport:
    """How closely the converted module reproduces onnxruntime on real inputs, and the verdict."""

    samples: int
    batch_sizes: tuple[int, ...]
    max_abs_diff: float
    scale: float
    relative_diff: float
    argmax_agreement: float
    logits_relative_diff: Optional[float]  # the pre-Softmax logits, when a Softmax was cut and the judge reads them
    tolerance: float
    probability_like: bool  # onnxruntime's outputs are non-negative rows summing to 1
    reason: Optional[str]  # why the gate refused, None when it passed

    @property
    def passed(self) -> bool:
        return self.reason is None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


def _relative(actual: list[np.ndarray], expected: list[np.ndarray]) -> tuple[float, float]:
    """Largest |difference| over all batches and the largest |expected| (infinite on a shape mismatch)."""
    scale = max(float(np.abs(e).max()) if e.size else 0.0 for e in expected)
    if any(a.shape != e.shape for a, e in zip(actual, expected)):
        return float("inf"), scale
    diffs = [float(np.abs(a.astype(np.float64) - e).max()) if e.size else 0.0 for a, e in zip(actual, expected)]
    return max(diffs), scale


def parity_gate(converted: ConvertedModel, judge: OnnxJudge, x: torch.Tensor, contract: InputContract,
                *, tolerance: float = PARITY_TOLERANCE) -> ParityReport:
    """Compare `converted` with `judge` (onnxruntime) on pixel batch `x`; see :class:`ParityReport`.

    Give a judge made with ``extra_outputs=[converted.pre_softmax_name]`` to compare the logits too.
    """
    to_file = PixelToFile(contract, x.shape[1])
    x = x.detach().float().cpu()
    if judge.integer_input:
        x = torch.round(x * 255) / 255  # the grid a uint8 file sees, so both sides get the same images
    batches = [x, x[:1]]
    check_logits = converted.softmax_cut and converted.pre_softmax_name in judge.output_names
    names = [judge.output_names[0]] + ([converted.pre_softmax_name] if check_logits else [])
    reference = [judge.run(batch, names) for batch in batches]
    device = next(iter([*converted.module.parameters(), *converted.module.buffers()]), x).device
    to_file = to_file.to(device)

    def run(module: torch.nn.Module) -> list[np.ndarray]:
        with torch.no_grad():
            return [forward_any_batch(module, to_file(batch.to(device)), converted.fixed_batch).float().cpu().numpy()
                    for batch in batches]

    ours = run(converted.module)
    logits = run(converted.logits_module) if check_logits else []
    expected = [ref[0] for ref in reference]
    max_diff, scale = _relative(ours, expected)
    relative = max_diff / max(scale, 1e-12)
    agree = float((ours[0].argmax(1) == expected[0].argmax(1)).mean()) if ours[0].shape == expected[0].shape else 0.0
    logits_relative = None
    if check_logits:
        logit_diff, logit_scale = _relative(logits, [ref[1] for ref in reference])
        logits_relative = logit_diff / max(logit_scale, 1e-12)
    rows = expected[0]
    probability_like = bool(rows.size and rows.ndim == 2 and (rows >= 0).all() and np.allclose(rows.sum(1), 1, atol=1e-3))
    reason = None
    if not relative <= tolerance:
        reason = (f"converted outputs differ from onnxruntime's by {max_diff:.3g} ({relative:.3g} of their scale "
                  f"{scale:.3g}; tolerance {tolerance:g})")
    elif agree != 1.0:
        reason = f"converted predictions agree with onnxruntime's on {agree:.4f} of {len(x)} inputs (1.0 required)"
    elif logits_relative is not None and not logits_relative <= tolerance:
        reason = f"converted logits before the Softmax differ from onnxruntime's by {logits_relative:.3g} of their scale"
    return ParityReport(samples=len(x), batch_sizes=tuple(len(b) for b in batches), max_abs_diff=max_diff, scale=scale,
                        relative_diff=relative, argmax_agreement=agree, logits_relative_diff=logits_relative,
                        tolerance=tolerance, probability_like=probability_like, reason=reason)
