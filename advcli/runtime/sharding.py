"""Which samples each rank works on, and randomness that does not depend on the number of ranks.

Shards are strided: of W ranks, rank r takes samples r, r+W, r+2W, ... of a list (the evaluation
set, or one global training batch), so :func:`advcli.runtime.distributed.gather_samples` can put
per-sample results back in single-process order.

Random draws are keyed by (seed, step, stream, global sample index) instead of coming from one
generator in batch order: a sample gets the same random start whichever rank holds it, in whichever
batch and position, on any number of ranks and any device. Each sample gets its own CPU generator
(Mersenne Twister) seeded with a hash of its key, and the draws are then copied to the samples'
device. Fastest of the keyed ways measured (benchmarks/distributed_scaling.py noise, one thread of a
shared 2-core EPYC, least of 15 interleaved runs): 1x28x28 images, 1.05 ms for 100 and 9.7 ms for
1000 (an integer hash of every pixel in torch operations: 1.4 and 13.7 ms; one unkeyed ``torch.rand``
for the batch: 0.28 and 2.8 ms); 3x32x32, 1.9 and 17.6 ms (hash 3.0 and 59 ms). That is under 1% of
an FGSM-RS step of seed-cnn on the same CPU. torch's CPU generator keeps 32 bits of its seed, so
two of n draws share a stream with probability about n²/2³³: harmless for random starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from advcli.runtime.distributed import DistributedContext, DistributedError

# Streams keep the draws of different purposes apart under the same (seed, step).
RANDOM_START_STREAM = 1
_MASK64 = (1 << 64) - 1


def shard_indices(count: int, context: DistributedContext, *, device: Optional[torch.device] = None) -> torch.Tensor:
    """This rank's share of samples 0..count-1: rank, rank+W, rank+2W, ... (all of them for one process)."""
    if count < 0:
        raise DistributedError(f"a sample count must be >= 0, got {count}")
    start = min(context.rank, count)
    return torch.arange(start, count, context.world_size, device=context.device if device is None else device)


@dataclass(frozen=True)
class BatchShard:
    """This rank's part of a global training batch.

    `indices`: the strided subset of the global batch's sample indices. `loss_weight`: the factor
    for this rank's mean loss, so that DistributedDataParallel's average of the ranks' gradients is
    the gradient of the global batch's mean loss even when shards differ in size (1.0 when they
    are equal, and for a single process).
    """

    indices: torch.Tensor
    loss_weight: float


def shard_batch(global_batch_indices: torch.Tensor, context: DistributedContext) -> BatchShard:
    """Split one global batch over the ranks by stride; every rank gets at least one sample, since a
    rank without samples has no loss to average (use a batch of at least as many samples as ranks)."""
    if global_batch_indices.ndim != 1:
        raise DistributedError(f"batch indices must be one-dimensional, got shape {tuple(global_batch_indices.shape)}")
    size, world = len(global_batch_indices), context.world_size
    if size < world:
        raise DistributedError(f"a batch of {size} samples cannot be split over {world} processes; "
                               f"use batches of at least {world} samples")
    local = global_batch_indices[context.rank::world]
    return BatchShard(indices=local, loss_weight=len(local) * world / size)


def _splitmix64(value: int) -> int:
    """One step of SplitMix64 (Steele et al., 2014): a bijective 64-bit mix with good avalanche."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def sample_seeds(indices: Sequence[int], *, seed: int, step: int, stream: int = 0) -> list[int]:
    """The generator seed of each sample index under (seed, step, stream)."""
    key = _splitmix64(_splitmix64(_splitmix64(seed & _MASK64) ^ (stream & _MASK64)) ^ (step & _MASK64))
    return [_splitmix64(key ^ (index & _MASK64)) for index in indices]


def rank_seed(seed: int, context: DistributedContext) -> int:
    """The seed of this rank's own generator: `seed` itself for a single process (its random
    streams stay what they were), else a distinct seed per rank derived from it, so that ranks
    do not repeat one another's draws on their different samples."""
    if not context.distributed:
        return seed
    return _splitmix64(_splitmix64(seed & _MASK64) ^ (context.rank + 1)) >> 1


def _keyed_draw(
    indices: torch.Tensor, sample_shape: Sequence[int], normal: bool, *, seed: int, step: int, stream: int,
    dtype: torch.dtype, device: Optional[torch.device],
) -> torch.Tensor:
    if indices.ndim != 1 or indices.dtype.is_floating_point or indices.dtype == torch.bool:
        raise DistributedError("sample indices must be a one-dimensional integer tensor")
    shape = tuple(int(size) for size in sample_shape)
    drawn = torch.float64 if dtype == torch.float64 else torch.float32
    out = torch.empty((len(indices), *shape), dtype=drawn)
    rows = out.view(len(indices), math.prod(shape))
    draw = torch.randn if normal else torch.rand
    generator = torch.Generator()
    for row, sample_seed in zip(rows, sample_seeds(indices.tolist(), seed=seed, step=step, stream=stream)):
        generator.manual_seed(sample_seed)
        draw(row.shape, generator=generator, dtype=drawn, out=row)
    return out.to(device=indices.device if device is None else device, dtype=dtype)


def sample_uniform(
    indices: torch.Tensor, sample_shape: Sequence[int], *, seed: int, step: int, stream: int = 0,
    dtype: torch.dtype = torch.float32, device: Optional[torch.device] = None,
) -> torch.Tensor:
    """Uniform draws in [0, 1) of shape (len(indices), *sample_shape), row i a function of
    (seed, step, stream, indices[i]) only; on `device` (default: the indices' device).
    `step` is the epoch or iteration: whatever should change for fresh noise."""
    return _keyed_draw(indices, sample_shape, False, seed=seed, step=step, stream=stream, dtype=dtype, device=device)


def sample_normal(
    indices: torch.Tensor, sample_shape: Sequence[int], *, seed: int, step: int, stream: int = 0,
    dtype: torch.dtype = torch.float32, device: Optional[torch.device] = None,
) -> torch.Tensor:
    """Standard normal draws, keyed per sample as in :func:`sample_uniform`."""
    return _keyed_draw(indices, sample_shape, True, seed=seed, step=step, stream=stream, dtype=dtype, device=device)


def random_start_linf(
    x: torch.Tensor, indices: torch.Tensor, eps: float, *, seed: int, step: int, clip: bool = True,
    stream: int = RANDOM_START_STREAM,
) -> torch.Tensor:
    """A uniform random point of each sample's L-inf eps-ball (inside [0, 1] with `clip`), keyed by
    the samples' global `indices`: the start of FGSM-RS and PGD training, independent of sharding."""
    if len(indices) != len(x):
        raise DistributedError(f"{len(x)} samples but {len(indices)} sample indices")
    noise = sample_uniform(indices, x.shape[1:], seed=seed, step=step, stream=stream, dtype=x.dtype, device=x.device)
    start = x + eps * (2 * noise - 1)
    return start.clamp(0, 1) if clip else start
