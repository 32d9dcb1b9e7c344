"""Seeded sample selection, shared by evaluation, crafting, verification and export."""

from __future__ import annotations

from typing import Optional

import torch


def select_samples(count: int, samples: Optional[int], seed: int) -> torch.Tensor:
    """Indices of a seeded random subset of size `samples` (all, in order, when None or too many)."""
    if samples is None or samples >= count:
        return torch.arange(count)
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    return order[:samples].sort().values
