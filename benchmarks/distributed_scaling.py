"""What several processes buy on the CPU, and what keyed random starts cost.

Three measurements, printed as JSON lines by rank 0 (median and minimum wall time; the variants of
one measurement take turns, so a change in the machine's load hits them alike):

* ``noise``: per-sample keyed uniform noise (:func:`advcli.runtime.sharding.sample_uniform`) against
  one unkeyed ``torch.rand`` for the batch and against an integer hash of every pixel in torch ops.
* ``scaling``: a reference FGSM-RS training loop (seed-cnn, random data, global batch --batch split
  over the ranks, DDP wrapper) and a BIM-20 attack loop (``advcli.bim`` on each rank's shard, then
  :func:`gather_samples`). Run it once as one process and once under torchrun. With several ranks it
  also times the training step under ``no_sync()`` (no gradient all-reduce: the communication share
  is 1 - t(no_sync) / t), one all-reduce of the model's gradients, and BIM written with
  ``.backward()`` on the input through the wrapper (which all-reduces every step).
* ``allreduce``: preact-resnet18 (3x32x32): a DDP step of --resnet-batch images per rank with and
  without the all-reduce, one all-reduce of all its gradients, one broadcast of its buffers (what
  DDP does before a forward that follows a training forward).
* ``advcli``: the library's own paths, as the command line runs them: FGSM-RS training of seed-cnn
  on the built-in digits through :func:`advcli.training.train_model` (global batch --batch; seconds
  per iteration, from the loop's own per-iteration stop poll, setup and the final test excluded) and
  a BIM-20 evaluation through :func:`advcli.evaluation.evaluate_model` (--samples images, an eps
  small enough that no sample stops early). Each on all ranks, and on rank 0 alone (one process,
  no process group) in turns with it.

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/distributed_scaling.py noise
    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/distributed_scaling.py scaling
    OMP_NUM_THREADS=1 PYTHONPATH=. python -m torch.distributed.run --standalone --nproc-per-node 2 \\
        benchmarks/distributed_scaling.py scaling
    OMP_NUM_THREADS=1 PYTHONPATH=. python -m torch.distributed.run --standalone --nproc-per-node 2 \\
        benchmarks/distributed_scaling.py allreduce
    OMP_NUM_THREADS=1 PYTHONPATH=. python -m torch.distributed.run --standalone --nproc-per-node 2 \\
        benchmarks/distributed_scaling.py advcli
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
    DistributedContext,
    barrier,
    broadcast_buffers,
    distributed_session,
    gather_samples,
    unwrap_model,
    wrap_model,
)
from advcli.runtime.sharding import random_start_linf, sample_uniform, shard_batch, shard_indices

EPS, ALPHA = 0.1, 0.125


def report(context: DistributedContext, **fields) -> None:
    if context.is_main:
        print(json.dumps({"world_size": context.world_size, **fields}), flush=True)


def timed(runs: dict[str, Callable[[], object]], repeats: int, context: DistributedContext) -> dict[str, dict]:
    """Median and minimum wall time of each run, every rank starting together. The runs take turns
    (after one warm-up round), so that a change in the machine's load hits them alike."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for round_index in range(repeats + 1):
        for name, run in runs.items():
            barrier(context)
            started = time.perf_counter()
            run()
            barrier(context)
            if round_index:
                times[name].append(time.perf_counter() - started)
    return {name: {"median_s": round(statistics.median(seconds), 4), "min_s": round(min(seconds), 4)}
            for name, seconds in times.items()}


def report_timed(context: DistributedContext, timings: dict[str, dict], **fields) -> None:
    for name, timing in timings.items():
        report(context, measure=name, **timing, **fields)


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
    """The methods take turns, so that a change in the machine's load hits them alike; the minimum
    is each method's cost with the least interference, the median what a batch usually paid."""
    for shape in ((1, 28, 28), (3, 32, 32)):
        for count in (100, 1000):
            indices = torch.randperm(60_000, generator=torch.Generator().manual_seed(0))[:count]
            per_sample = shape[0] * shape[1] * shape[2]
            methods = {
                "keyed per-sample generators": lambda: sample_uniform(indices, shape, seed=0, step=1),
                "unkeyed torch.rand": lambda: torch.rand((count, *shape)),
                "integer hash per pixel": lambda: hashed_uniform(indices, per_sample, 12345),
            }
            times: dict[str, list[float]] = {name: [] for name in methods}
            for _ in range(args.repeats + 1):
                for name, run in methods.items():
                    started = time.perf_counter()
                    run()
                    times[name].append(time.perf_counter() - started)
            for name, seconds in times.items():
                seconds = seconds[1:]  # the first round warms up
                report(context, measure="noise", shape=list(shape), images=count, method=name,
                       min_ms=round(1e3 * min(seconds), 2), median_ms=round(1e3 * statistics.median(seconds), 2))


def fgsm_rs_step(model, optimizer, x, y, indices, step: int, weight: float) -> None:
    """One FGSM-RS training step: keyed random start, one signed input-gradient step, SGD update."""
    start = random_start_linf(x, indices, EPS, seed=0, step=step).requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(start), y, reduction="sum"), start)
    x_adv = (x + (start.detach() + ALPHA * grad.sign() - x).clamp(-EPS, EPS)).clamp(0, 1)
    loss = F.cross_entropy(model(x_adv), y) * weight
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def backward_bim(model, x, y, *, eps: float, alpha: float, steps: int) -> torch.Tensor:
    """BIM written with .backward() on the input, parameters trainable: what attacks must not do."""
    x_adv = x.clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        F.cross_entropy(model(x_adv), y, reduction="sum").backward()
        x_adv = (x + (x_adv.detach() + alpha * x_adv.grad.sign() - x).clamp(-eps, eps)).clamp(0, 1)
    model.zero_grad(set_to_none=True)
    return x_adv


def seed_cnn(context: DistributedContext) -> torch.nn.Module:
    torch.manual_seed(0)
    return wrap_model(advcli.build_model("seed-cnn", (1, 28, 28), 10), context)


def on_main(context: DistributedContext, run: Callable[[], object]) -> Callable[[], None]:
    """`run` on rank 0 alone while the others wait at the barrier: one process, in the same job and
    under the same machine load as the distributed runs it takes turns with."""
    return lambda: None if not context.is_main else run()


def scaling(args: argparse.Namespace, context: DistributedContext) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(max(args.batch, args.samples), 1, 28, 28, generator=generator)
    y = torch.randint(0, 10, (len(x),), generator=generator)
    model, alone = seed_cnn(context), seed_cnn(DistributedContext())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    alone_optimizer = torch.optim.SGD(alone.parameters(), lr=0.01, momentum=0.9)
    shard, everything = shard_batch(torch.arange(args.batch), context), torch.arange(args.batch)
    steps = iter(range(10**9))

    def train_step() -> None:
        indices = shard.indices
        fgsm_rs_step(model, optimizer, x[indices], y[indices], indices, next(steps), shard.loss_weight)

    def local_step() -> None:
        with model.no_sync():
            train_step()

    runs = {"fgsm-rs training step": train_step}
    if context.distributed:
        gradients = torch.zeros(sum(parameter.numel() for parameter in model.parameters()))
        runs.update({
            "fgsm-rs training step, no all-reduce": local_step,
            "all-reduce of seed-cnn's gradients": lambda: dist.all_reduce(gradients),
            "fgsm-rs training step, rank 0 alone, whole batch": on_main(context, lambda: fgsm_rs_step(
                alone, alone_optimizer, x[everything], y[everything], everything, next(steps), 1.0)),
        })
    report_timed(context, timed(runs, args.repeats, context), images_per_step=args.batch)

    attacked, alone_attacked = seed_cnn(context).eval(), seed_cnn(DistributedContext()).eval()
    with torch.no_grad():
        labels = alone_attacked(x[:args.samples]).argmax(1)  # clean-correct by construction
    mine = shard_indices(args.samples, context)
    # An eps this small fools (almost) no sample of this untrained model, so samples do not stop
    # early: every one takes all 20 steps and each rank does a fixed amount of work.
    budget = {"eps": 0.002, "alpha": 0.0005, "steps": 20}

    def backward_attack() -> None:
        attacked.train()
        gather_samples(backward_bim(attacked, x[mine], labels[mine], **budget), context)
        attacked.eval()

    runs = {"bim-20 attack": lambda: gather_samples(advcli.bim(attacked, x[mine], labels[mine], **budget), context)}
    if context.distributed:
        runs.update({
            "bim-20 written with .backward(), through the wrapper": backward_attack,
            "bim-20 attack, rank 0 alone, all samples": on_main(context, lambda: advcli.bim(
                alone_attacked, x[:args.samples], labels, **budget)),
        })
    report_timed(context, timed(runs, max(1, args.repeats // 2), context), images=args.samples, eps=budget["eps"])
    adversarial = advcli.bim(alone_attacked, x[:args.samples], labels, **budget)
    with torch.no_grad():
        fooled = int((alone_attacked(adversarial).argmax(1) != labels).sum())
    report(context, measure="bim-20: samples fooled (they stop early)", fooled=fooled, images=args.samples)


def allreduce(args: argparse.Namespace, context: DistributedContext) -> None:
    torch.manual_seed(0)
    model = advcli.build_model("preact-resnet18", (3, 32, 32), 10)
    parameters = sum(parameter.numel() for parameter in model.parameters())
    wrapped = wrap_model(model, context)
    optimizer = torch.optim.SGD(wrapped.parameters(), lr=0.01)
    x = torch.rand(args.resnet_batch * context.world_size, 3, 32, 32)
    y = torch.arange(len(x)) % 10
    mine = shard_indices(len(x), context)

    def step(images: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(wrapped(x[images]), y[images]).backward()
        optimizer.step()

    def local_step() -> None:
        with wrapped.no_sync():
            step(mine)

    runs = {"preact-resnet18 training step": lambda: step(mine)}
    if context.distributed:
        gradients = torch.zeros(parameters)
        alone = unwrap_model(wrapped)
        alone_optimizer = torch.optim.SGD(alone.parameters(), lr=0.01)

        def alone_step() -> None:
            alone_optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(alone(x), y).backward()
            alone_optimizer.step()

        runs.update({"preact-resnet18 training step, no all-reduce": local_step,
                     "all-reduce of preact-resnet18's gradients": lambda: dist.all_reduce(gradients),
                     "broadcast of preact-resnet18's buffers": lambda: broadcast_buffers(model, context),
                     "preact-resnet18 training step, rank 0 alone, whole batch": on_main(context, alone_step)})
    report_timed(context, timed(runs, args.repeats, context), images_per_rank=args.resnet_batch,
                 parameters=parameters, gradient_megabytes=round(4 * parameters / 2**20, 1))


def library_paths(args: argparse.Namespace, context: DistributedContext) -> None:
    """advcli's training loop and evaluation on all ranks and on rank 0 alone, taking turns."""
    from advcli.data.spec import load_dataset
    from advcli.evaluation.api import evaluate_model
    from advcli.training.config import TrainConfig
    from advcli.training.loop import train_model

    dataset = load_dataset("digits")
    config = TrainConfig.of(data="digits", arch="seed-cnn", method="fgsm-rs", eps=0.1, epochs=1, lr=0.01,
                            batch_size=args.batch, val_split=0.0, device="cpu", precision="fp32", keyed_noise=True)
    iterations, warm_up = args.iterations, 2

    def seconds_per_iteration(on: DistributedContext) -> float:
        stamps: list[float] = []

        def poll() -> bool:
            stamps.append(time.perf_counter())
            return len(stamps) >= iterations

        train_model(config, dataset=dataset, should_stop=poll, context=on)
        return (stamps[-1] - stamps[warm_up - 1]) / (iterations - warm_up)

    alone = DistributedContext()
    torch.manual_seed(0)  # the same weights on every rank, as a loaded run has
    model = advcli.build_model("seed-cnn", (1, 28, 28), 10).eval()
    x = dataset.x_test[:args.samples]
    with torch.no_grad():
        y = model(x).argmax(1)  # clean-correct by construction; eps below fools none, so none stops early
    budget = dict(attacks=("bim",), eps=0.0005, alpha=0.0001, iters=20, sanity_samples=0, batch_size=args.samples,
                  device="cpu", precision="fp32")
    training = {"all ranks": [], "rank 0 alone": []}
    evaluation = {"all ranks": [], "rank 0 alone": []}
    for _ in range(args.repeats):
        barrier(context)
        training["all ranks"].append(seconds_per_iteration(context))
        barrier(context)
        if context.is_main:
            training["rank 0 alone"].append(seconds_per_iteration(alone))
        for name, on in (("all ranks", context), ("rank 0 alone", alone)):
            barrier(context)
            if on is context or context.is_main:
                started = time.perf_counter()
                robust = evaluate_model(model, x, y, context=on, **budget).robust_accuracy
                evaluation[name].append(time.perf_counter() - started)
    for measure, times, unit in (("fgsm-rs training, advcli's loop", training, "s per iteration"),
                                 ("bim-20 evaluation, advcli's engine", evaluation, "s")):
        figures = {name: {"median_s": round(statistics.median(values), 4), "min_s": round(min(values), 4)}
                   for name, values in times.items() if values}
        if context.is_main and context.distributed:
            speedup = figures["rank 0 alone"]["median_s"] / figures["all ranks"]["median_s"]
            figures["speedup (medians)"] = round(speedup, 3)
            figures["efficiency (medians)"] = round(speedup / context.world_size, 3)
        report(context, measure=measure, unit=unit, batch=args.batch, images=args.samples, **figures)
    report(context, measure="bim-20 evaluation: robust accuracy (below 1: samples stopped early)", robust=robust)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("measure", choices=("noise", "scaling", "allreduce", "advcli"))
    parser.add_argument("--iterations", type=int, default=8, help="training iterations timed (advcli)")
    parser.add_argument("--batch", type=int, default=128, help="global training batch (scaling)")
    parser.add_argument("--samples", type=int, default=64, help="images attacked (scaling)")
    parser.add_argument("--resnet-batch", type=int, default=4, help="images per rank (allreduce)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    with distributed_session("cpu", timeout=600) as context:
        report(context, measure="setup", threads=torch.get_num_threads(), load_average=os.getloadavg()[0])
        {"noise": noise, "scaling": scaling, "allreduce": allreduce,
         "advcli": library_paths}[args.measure](args, context)


if __name__ == "__main__":
    main()
