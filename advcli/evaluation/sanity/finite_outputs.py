"""``finite-outputs``: NaN or infinite outputs near the samples make predictions, attack losses and
gradients meaningless there."""

from __future__ import annotations

import torch

from ...threat import ThreatModel
from . import SANITY_CHECKS, Check, SanityCheck, SanityInputs


def _non_finite_rows(inputs: SanityInputs, x: torch.Tensor) -> int:
    with torch.no_grad():
        rows = [inputs.victim.judge(x[start:start + inputs.batch_size].to(inputs.victim.device)).float()
                for start in range(0, len(x), inputs.batch_size)]
    return int(sum(int((~torch.isfinite(logits).all(1)).sum()) for logits in rows))


def check_finite_outputs(inputs: SanityInputs) -> SanityCheck:
    """The outputs on the samples, on random points of the largest eps-ball around them and on random
    images are all finite. An attack that meets NaN or infinite logits follows no gradient, and an
    adversarial example classified from them is counted on a meaningless prediction."""
    x = inputs.x[inputs.output_subset()]
    generator = torch.Generator().manual_seed(inputs.seed)
    ball = ThreatModel(inputs.eps_values[-1], inputs.norm, inputs.clip).random_point(x, generator)
    noise = torch.rand(x.shape, generator=generator, dtype=x.dtype)
    counts = {"samples": _non_finite_rows(inputs, x), f"eps-ball points (eps {inputs.eps_values[-1]:g})":
              _non_finite_rows(inputs, ball), "random images": _non_finite_rows(inputs, noise)}
    summary = ", ".join(f"{count} of {len(x)} {where}" for where, count in counts.items())
    if any(counts.values()):
        return SanityCheck("finite-outputs", True, f"NaN or infinite outputs on {summary}: predictions there are "
                           "meaningless and attacks cannot follow a gradient through them")
    return SanityCheck("finite-outputs", False, f"outputs are finite on {3 * len(x)} inputs (samples, eps-ball "
                       "points, random images)")


SANITY_CHECKS.register("finite-outputs", Check(check_finite_outputs))
