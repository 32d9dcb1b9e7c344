"""What several processes buy on the CPU, and what keyed random starts cost.

Three measurements, each printed as JSON lines by rank 0:

* ``noise``: per-sample keyed uniform noise (:func:`advcli.runtime.sharding.sample_uniform`) against
  one unkeyed ``torch.rand`` for the batch and against an integer hash of every pixel in torch ops.
* ``scaling``: a reference FGSM-RS training loop (seed-cnn, random data, global batch --batch split
  over the ranks, DDP wrapper) and a BIM-20 attack loop (``advcli.bim`` on each rank's shard, then
  :func:`gather_samples`). Run it once as one process and once under torchrun; with several ranks
  it also times the same training steps under ``no_sync()`` (no gradient all-reduce), so the
  communication share of a step is 1 - t(no_sync) / t(sync), and an attack written with
  ``.backward()`` on the input through the wrapper, which all-reduces every step.
* ``allreduce``: preact-resnet18 (3x32x32): one all-reduce of all its gradients, one broadcast of its
  buffers (what DDP does before a forward), and a DDP step of --resnet-batch images per rank with
  and without the all-reduce.

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/distributed_scaling.py noise
    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/distributed_scaling.py scaling
    OMP_NUM_THREADS=1 PYTHONPATH=. python -m torch.distributed.run --standalone --nproc-per-node 2 \\
        benchmarks/distributed_scaling.py scaling
    OMP_NUM_THREADS=1 PYTHONPATH=. python -m torch.distributed.run --standalone --nproc-per-node 2 \\
        benchmarks/distributed_scaling.py allreduce
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F

import advcli
from advcli.runtime.distributed import (
    DistributedContext, barrier, broadcast_buffers, distributed_session, gather_samples, wrap_model,
)
from advcli.runtime.sharding import random_start_linf, sample_uniform, shard_batch, shard_indices

EPS, ALPHA = 0.1, 0.125


def report(context: DistributedContext, **fields) -> None:
    if context.is_main:
        print(json.dumps({"world_size": context.world_size, **fields}), flush=True)


def median_seconds(run: Callable[[], object], repeats: int, context: DistributedContext) -> float:
    """Median wall time of `run` over `repeats` calls after one warm-up, every rank starting together."""
    run()
    times = []
    for _ in range(repeats):
        barrier(context)
        started = time.perf_counter()
        run()
        barrier(context)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


_MASK32 = 0xFFFFFFFF


def _times_mod_2_32(x: torch.Tensor, factor: int) -> torch.Tensor:
    """x · factor mod 2^32 for int64 x in [0, 2^32), without int64 overflow."""
    product = x * (factor & 0x7FFFFFFF)
    if factor >> 31:
        product = product + ((x & 1) << 31)
    return product & _MASK32


def _mix32(x: torch.Tensor) -> torch.Tensor:
    x = x ^ (x >> 16)
    x = _times_mod_2_32(x, 0x21F0AAAD)
    x = x ^ (x >> 15)
    x = _times_mod_2_32(x, 0xD35A2D97)
    return x ^ (x >> 15)


def hashed_uniform(indices: torch.Tensor, per_sample: int, key: int) -> torch.Tensor:
    """The alternative measured: uniform noise as a hash of (key, sample, pixel) in torch integer ops."""
    base = _mix32(_mix32((indices & _MASK32) ^ key) ^ (indices >> 32))
    pixels = _times_mod_2_32(torch.arange(per_sample, device=indices.device), 0x9E3779B9)
    return (_mix32(((base[:, None] + pixels[None, :]) & _MASK32) ^ key) >> 8).float() * 2.0 ** -24


def noise(args: argparse.Namespace, context: DistributedContext) -> None:
    for shape in ((1, 28, 28), (3, 32, 32)):
        for count in (100, 1000):
            indices = torch.randperm(60_000, generator=torch.Generator().manual_seed(0))[:count]
            per_sample = shape[0] * shape[1] * shape[2]
            timings = {
                "keyed per-sample generators": lambda: sample_uniform(indices, shape, seed=0, step=1),
                "unkeyed torch.rand": lambda: torch.rand((count, *shape)),
                "integer hash per pixel": lambda: hashed_uniform(indices, per_sample, 12345),
            }
            for name, run in timings.items():
                report(context, measure="noise", shape=list(shape), images=count, method=name,
                       ms=round(1e3 * median_seconds(run, args.repeats, context), 2))


def fgsm_rs_step(model, optimizer, x, y, indices, step: int, weight: float) -> None:
    """One FGSM-RS training step: keyed random start, one signed input-gradient step, SGD update."""
    start = random_start_linf(x, indices, EPS, seed=0, step=step).requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(start), y, reduction="sum"), start)
    x_adv = (x + (start.detach() + ALPHA * grad.sign() - x).clamp(-EPS, EPS)).clamp(0, 1)
    loss = F.cross_entropy(model(x_adv), y) * weight
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def backward_bim(model, x, y, steps: int) -> torch.Tensor:
    """BIM written with .backward() on the input, parameters trainable: what attacks must not do."""
    x_adv = x.clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        F.cross_entropy(model(x_adv), y).backward()
        x_adv = (x + (x_adv.detach() + 0.01 * x_adv.grad.sign() - x).clamp(-EPS, EPS)).clamp(0, 1)
    model.zero_grad(set_to_none=True)
    return x_adv


def scaling(args: argparse.Namespace, context: DistributedContext) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(max(args.batch, args.samples), 1, 28, 28, generator=generator)
    y = torch.randint(0, 10, (len(x),), generator=generator)
    torch.manual_seed(0)
    model = wrap_model(advcli.build_model("seed-cnn", (1, 28, 28), 10), context)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    shard = shard_batch(torch.arange(args.batch), context)
    xb, yb = x[shard.indices], y[shard.indices]
    step_counter = iter(range(10**9))

    def train_step() -> None:
        fgsm_rs_step(model, optimizer, xb, yb, shard.indices, next(step_counter), shard.loss_weight)

    synced = median_seconds(train_step, args.repeats, context)
    report(context, measure="fgsm-rs training step", images_per_step=args.batch, seconds=round(synced, 4))
    if context.distributed:
        with model.no_sync():
            local = median_seconds(train_step, args.repeats, context)
        report(context, measure="fgsm-rs training step, no all-reduce", seconds=round(local, 4),
               communication_share=round(1 - local / synced, 3))
    mine = shard_indices(args.samples, context)
    xs, ys = x[mine], y[mine]
    model.eval()

    def attack() -> None:
        adversarial = advcli.bim(model, xs, ys, eps=EPS, alpha=0.01, steps=20)
        gather_samples(adversarial, context)

    report(context, measure="bim-20 attack", images=args.samples,
           seconds=round(median_seconds(attack, max(1, args.repeats // 2), context), 4))
    if context.distributed:
        model.train()
        seconds = median_seconds(lambda: backward_bim(model, xs, ys, 20), max(1, args.repeats // 2), context)
        report(context, measure="bim-20 written with .backward(), through the wrapper", images=args.samples,
               seconds=round(seconds, 4))


def allreduce(args: argparse.Namespace, context: DistributedContext) -> None:
    torch.manual_seed(0)
    model = advcli.build_model("preact-resnet18", (3, 32, 32), 10)
    parameters = sum(parameter.numel() for parameter in model.parameters())
    if context.distributed:
        gradients = torch.zeros(parameters)
        seconds = median_seconds(lambda: dist.all_reduce(gradients), args.repeats, context)
        report(context, measure="all-reduce of preact-resnet18's gradients", parameters=parameters,
               megabytes=round(4 * parameters / 2**20, 1), seconds=round(seconds, 4))
        seconds = median_seconds(lambda: broadcast_buffers(model, context), args.repeats, context)
        report(context, measure="broadcast of preact-resnet18's buffers", buffers=len(list(model.buffers())),
               seconds=round(seconds, 5))
    wrapped = wrap_model(model, context)
    optimizer = torch.optim.SGD(wrapped.parameters(), lr=0.01)
    x = torch.rand(args.resnet_batch, 3, 32, 32)
    y = torch.arange(args.resnet_batch) % 10

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(wrapped(x), y).backward()
        optimizer.step()

    synced = median_seconds(step, args.repeats, context)
    report(context, measure="preact-resnet18 training step", images_per_rank=args.resnet_batch,
           seconds=round(synced, 4))
    if context.distributed:
        with wrapped.no_sync():
            local = median_seconds(step, args.repeats, context)
        report(context, measure="preact-resnet18 training step, no all-reduce", seconds=round(local, 4),
               communication_share=round(1 - local / synced, 3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("measure", choices=("noise", "scaling", "allreduce"))
    parser.add_argument("--batch", type=int, default=128, help="global training batch (scaling)")
    parser.add_argument("--samples", type=int, default=64, help="images attacked (scaling)")
    parser.add_argument("--resnet-batch", type=int, default=4, help="images per rank (allreduce)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    with distributed_session("cpu", timeout=600) as context:
        report(context, measure="setup", threads=torch.get_num_threads(), load_average=os.getloadavg()[0])
        {"noise": noise, "scaling": scaling, "allreduce": allreduce}[args.measure](args, context)


if __name__ == "__main__":
    main()
