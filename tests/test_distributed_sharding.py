"""Strided shards and per-sample keyed randomness: the same for every number of ranks. Ranks are
simulated with contexts; nothing here needs a process group."""

from __future__ import annotations

import pytest
import torch

from advcli.runtime.distributed import DistributedContext, DistributedError
from advcli.runtime.sharding import (
    random_start_linf,
    sample_normal,
    sample_seeds,
    sample_uniform,
    shard_batch,
    shard_indices,
)


def contexts(world_size: int) -> list[DistributedContext]:
    backend = None if world_size == 1 else "gloo"
    return [DistributedContext(rank=rank, local_rank=rank, world_size=world_size, backend=backend)
            for rank in range(world_size)]


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
@pytest.mark.parametrize("count", [0, 1, 2, 5, 8])
def test_shards_are_strided_and_cover_every_sample_once(world_size, count):
    shards = [shard_indices(count, context) for context in contexts(world_size)]
    for rank, shard in enumerate(shards):
        assert shard.tolist() == list(range(rank, count, world_size)) and shard.dtype == torch.int64
    assert sorted(torch.cat(shards).tolist()) == list(range(count))


def test_shard_indices_refuse_negative_counts():
    with pytest.raises(DistributedError, match="sample count must be >= 0"):
        shard_indices(-1, DistributedContext())


@pytest.mark.parametrize("world_size", [1, 2, 3])
@pytest.mark.parametrize("size", [3, 7, 64])
def test_batch_shards_weight_losses_to_the_global_mean(world_size, size):
    batch = torch.randperm(100, generator=torch.Generator().manual_seed(size))[:size]
    per_sample_loss = torch.rand(100, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    shards = [shard_batch(batch, context) for context in contexts(world_size)]
    for rank, shard in enumerate(shards):
        assert torch.equal(shard.indices, batch[rank::world_size])
    # DDP averages the ranks' gradients: the mean of the weighted shard losses is the global batch mean.
    averaged = sum(shard.loss_weight * per_sample_loss[shard.indices].mean() for shard in shards) / world_size
    assert float(averaged) == pytest.approx(float(per_sample_loss[batch].mean()), rel=1e-12)
    if size % world_size == 0:
        assert all(shard.loss_weight == 1.0 for shard in shards)


def test_a_batch_smaller_than_the_world_is_refused():
    with pytest.raises(DistributedError, match="a batch of 2 samples cannot be split over 3 processes"):
        shard_batch(torch.arange(2), contexts(3)[0])
    with pytest.raises(DistributedError, match="one-dimensional"):
        shard_batch(torch.zeros(2, 2, dtype=torch.long), DistributedContext())


KEY = {"seed": 5, "step": 2}


@pytest.mark.parametrize("draw", [sample_uniform, sample_normal])
@pytest.mark.parametrize("world_size", [2, 3])
def test_a_samples_draw_does_not_depend_on_the_shard_or_the_batch(draw, world_size):
    batch = torch.randperm(1000, generator=torch.Generator().manual_seed(0))[:20]
    whole = draw(batch, (1, 4, 4), **KEY)
    for context in contexts(world_size):
        shard = shard_batch(batch, context)
        assert torch.equal(draw(shard.indices, (1, 4, 4), **KEY), whole[context.rank::world_size])
    assert torch.equal(draw(batch[[7]], (1, 4, 4), **KEY)[0], whole[7])
    assert torch.equal(draw(batch.flip(0), (1, 4, 4), **KEY), whole.flip(0))


@pytest.mark.parametrize("draw", [sample_uniform, sample_normal])
@pytest.mark.parametrize("change", [{"seed": 6}, {"step": 3}, {"stream": 1}])
def test_every_part_of_the_key_changes_the_draw(draw, change):
    indices = torch.arange(4)
    base = draw(indices, (16,), **KEY)
    changed = draw(indices, (16,), **{**KEY, **change})
    assert not torch.isclose(base, changed).any()
    assert not torch.isclose(base[0], base[1]).any()  # neighbouring samples are unrelated too


def test_draws_have_the_asked_distribution_shape_dtype_and_device():
    indices = torch.arange(300)
    uniform = sample_uniform(indices, (1, 28, 28), **KEY)
    assert uniform.shape == (300, 1, 28, 28) and uniform.dtype == torch.float32 and uniform.device == indices.device
    assert 0 <= float(uniform.min()) and float(uniform.max()) < 1
    assert abs(float(uniform.mean()) - 0.5) < 0.005 and abs(float(uniform.std()) - 12 ** -0.5) < 0.005
    normal = sample_normal(indices, (784,), dtype=torch.float64, **KEY)
    assert normal.dtype == torch.float64
    assert abs(float(normal.mean())) < 0.01 and abs(float(normal.std()) - 1) < 0.01
    assert sample_uniform(torch.arange(0), (3,), **KEY).shape == (0, 3)
    with pytest.raises(DistributedError, match="one-dimensional integer tensor"):
        sample_uniform(torch.zeros(3), (3,), **KEY)


def test_sample_seeds_are_distinct_for_distinct_keys():
    seeds = sample_seeds(range(10_000), seed=0, step=0) + sample_seeds(range(10_000), seed=0, step=1)
    assert len(set(seeds)) == len(seeds)


@pytest.mark.parametrize("clip", [True, False])
def test_random_start_lies_in_the_ball_and_follows_the_sample(clip):
    x = torch.rand(10, 1, 6, 6, generator=torch.Generator().manual_seed(3))
    indices = torch.arange(100, 110)
    start = random_start_linf(x, indices, 0.3, clip=clip, **KEY)
    assert float((start - x).abs().max()) <= 0.3 + 1e-6
    assert (float(start.min()) >= 0 and float(start.max()) <= 1) if clip else float(start.min()) < 0
    assert torch.equal(random_start_linf(x[1::2], indices[1::2], 0.3, clip=clip, **KEY), start[1::2])
    with pytest.raises(DistributedError, match="10 samples but 9 sample indices"):
        random_start_linf(x, indices[:9], 0.3, **KEY)
