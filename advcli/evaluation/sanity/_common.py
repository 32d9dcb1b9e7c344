"""Helpers shared by the sanity checks."""

from __future__ import annotations

import torch

from . import SanityInputs


def logits_of(inputs: SanityInputs, indices: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([inputs.victim.judge(inputs.x[indices[i:i + inputs.batch_size]].to(inputs.victim.device)).float().cpu()
                          for i in range(0, len(indices), inputs.batch_size)])
