"""Random draws of training steps, keyed per sample when a run asks for it (`keyed_noise`) and
always on several processes.

A keyed draw is a function of (seed, iteration, global sample index) only
(:mod:`advcli.runtime.sharding`): a sample gets the same random start whichever process holds it,
so a run gives the same result on any number of processes, and a resumed run on another number of
processes continues as it would have. Without keys, steps draw from the run's attack generator
in batch order, as they always did (single-process figures stay what they were).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import torch

from ..runtime.sharding import RANDOM_START_STREAM, sample_normal, sample_uniform
from ..threat import NORMS

if TYPE_CHECKING:
    from .config import StepSettings


@dataclass(frozen=True)
class NoiseKeys:
    """The keys of one step's draws: the global indices of the mini-batch's samples (into the
    training split, in the rows' order), the run's seed and the iteration."""

    indices: torch.Tensor
    seed: int
    step: int


def linf_noise(x: torch.Tensor, radius: float, settings: "StepSettings",
               generator: Optional[torch.Generator]) -> torch.Tensor:
    """Uniform noise in [-radius, radius] shaped like `x`: keyed per sample, or from `generator`."""
    keys = settings.keys
    if keys is None:
        return NORMS.get("linf").uniform(x, radius, generator)
    noise = sample_uniform(keys.indices, x.shape[1:], seed=keys.seed, step=keys.step, stream=RANDOM_START_STREAM,
                           dtype=x.dtype, device=x.device)
    return radius * (2 * noise - 1)


def normal_noise(x: torch.Tensor, settings: "StepSettings", generator: Optional[torch.Generator]) -> torch.Tensor:
    """Standard normal noise shaped like `x`: keyed per sample, or from `generator`."""
    keys = settings.keys
    if keys is None:
        return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return sample_normal(keys.indices, x.shape[1:], seed=keys.seed, step=keys.step, stream=RANDOM_START_STREAM,
                         dtype=x.dtype, device=x.device)


def keyed_start(x: torch.Tensor, settings: "StepSettings") -> Optional[torch.Tensor]:
    """The keyed random start of an L-inf attack step (uniform in the eps-ball, clipped to [0, 1]
    with `clip`); None when the step draws its start itself (no keys, or a zero start)."""
    if settings.keys is None or settings.init != "random":
        return None
    start = x + linf_noise(x, settings.eps, settings, None)
    return start.clamp(0, 1) if settings.clip else start
