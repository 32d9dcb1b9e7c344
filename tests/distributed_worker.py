"""One rank of a test job: ``python tests/distributed_worker.py SCENARIO OUT [TIMEOUT]``, started by
torchrun or by tests/distributed_launch.py. Each rank writes what it saw to OUT/rank{RANK}.json (and
tensors to OUT/rank{RANK}.safetensors); the tests judge it. A scenario's inputs (data, run folders)
are in OUT/job.json, written by the test.

The scenarios run advcli's own training loop, evaluation engine and run folders; the DDP rules are
shown on a reference loop (SGD or FGSM-RS on strided shards of fixed global batches), where the
mistakes the rules forbid can be made on purpose."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

import advcli
from advcli.runtime.distributed import (
    DistributedContext,
    DistributedError,
    agree,
    barrier,
    broadcast_buffers,
    from_main,
    gather_samples,
    init_from_environment,
    max_over_ranks,
    mean_over_ranks,
    shutdown,
    sum_over_ranks,
    totals_over_ranks,
    unwrap_model,
    wrap_model,
)
from advcli.runtime.sharding import random_start_linf, shard_batch, shard_indices

INPUT_SHAPE = (1, 28, 28)
Report = dict[str, Any]  # what a rank saw, written as JSON
Tensors = dict[str, torch.Tensor]  # what a rank computed, written as safetensors
EPS, ALPHA = 0.1, 0.125


def reference_data(count: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random images and labels in every process."""
    generator = torch.Generator().manual_seed(11)
    return torch.rand(count, *INPUT_SHAPE, generator=generator), torch.randint(0, 10, (count,), generator=generator)


def reference_model() -> nn.Module:
    torch.manual_seed(0)
    return advcli.build_model("mnist-small", INPUT_SHAPE, 10)


def global_batch(step: int, batch_size: int, count: int) -> torch.Tensor:
    """Step `step`'s global batch: sample indices drawn from a generator keyed by the step."""
    return torch.randperm(count, generator=torch.Generator().manual_seed(1000 + step))[:batch_size]


def fgsm_rs_inputs(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, indices: torch.Tensor, step: int
) -> torch.Tensor:
    """FGSM from a random start keyed by the samples' global indices (Wong et al., 2020)."""
    start = random_start_linf(x, indices, EPS, seed=0, step=step).requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(start), y, reduction="sum"), start)
    return (x + (start.detach() + ALPHA * grad.sign() - x).clamp(-EPS, EPS)).clamp(0, 1)


def reference_training(model: nn.Module, context: DistributedContext, *, method: str, steps: int, batch_size: int,
                       weighted: bool = True) -> list[torch.Tensor]:
    """Train `model` (the DDP wrapper under several ranks) for `steps` SGD steps; the flattened
    parameters after each step."""
    x, y = reference_data()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    history = []
    for step in range(steps):
        shard = shard_batch(global_batch(step, batch_size, len(x)), context)
        xb, yb = x[shard.indices], y[shard.indices]
        if method == "fgsm-rs":
            xb = fgsm_rs_inputs(model, xb, yb, shard.indices, step)
        loss = F.cross_entropy(model(xb), yb) * (shard.loss_weight if weighted else 1.0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.append(flat_parameters(model))
    return history


def flat_parameters(model: nn.Module) -> torch.Tensor:
    return torch.cat([parameter.detach().reshape(-1) for parameter in unwrap_model(model).parameters()]).clone()


class TinyBatchNormNet(nn.Module):
    """conv – BatchNorm – ReLU – linear: a model with running statistics, cheap enough for a test."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.linear = nn.Linear(4 * 28 * 28, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(F.relu(self.bn(self.conv(x))).flatten(1))


def collectives(context: DistributedContext, report: Report, tensors: Tensors, out: Path) -> None:
    """Every collective once, with rank-dependent inputs."""
    rank = context.rank
    report["context"] = [context.rank, context.local_rank, context.world_size, context.backend, str(context.device)]
    report["agree"] = {f"{how}:{name}": agree(flag, context, how=how) for how in ("any", "all")
                       for name, flag in (("rank1", rank == 1), ("everyone", True), ("no one", False))}
    report["sum_int"] = sum_over_ranks(2**53 + rank, context)
    report["sum_float"] = sum_over_ranks(0.1 * (rank + 1), context)
    report["weighted_mean"] = mean_over_ranks([0.5, 1.0][rank], context, weight=[3, 1][rank])
    report["totals"] = totals_over_ranks([rank + 1, 0.25 * rank], context)
    report["max"] = max_over_ranks(2.5 * rank - 1, context)
    report["from_main"] = from_main(7 if rank == 0 else 99, context)
    bn = TinyBatchNormNet().bn
    with torch.no_grad():
        bn.running_mean.fill_(rank + 1.0)
        bn.num_batches_tracked.fill_(10 + rank)
    broadcast_buffers(bn, context)
    tensors.update(running_mean=bn.running_mean, num_batches_tracked=bn.num_batches_tracked)
    for count in (0, 1, 2, 3, 7):
        mine = shard_indices(count, context)
        features = mine.double()[:, None, None] * 10 + torch.arange(6, dtype=torch.float64).view(1, 2, 3)
        for name, shard in (("features", features), ("labels", mine * 3), ("flags", mine % 3 == 0)):
            at_main = gather_samples(shard, context)
            if at_main is not None:
                tensors[f"{name}{count}"] = at_main
            tensors[f"{name}{count}_all"] = gather_samples(shard, context, to_all=True)
    for case, shard in (("short shard", torch.zeros(3 if rank == 0 else 1)),
                        ("other dtype", torch.zeros(2, dtype=torch.float32 if rank == 0 else torch.float64))):
        try:
            gather_samples(shard, context)
            report[case] = None
        except DistributedError as error:
            report[case] = str(error)
    barrier(context)


def counting_hook(counter, bucket):  # DDP checks these annotations: none, or exactly its own types
    """DDP's own all-reduce, counted."""
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

    counter["calls"] += 1
    return allreduce_hook(None, bucket)


def ddp_rules(context: DistributedContext, report: Report, tensors: Tensors, out: Path) -> None:
    """What DDP does with input gradients, bare modules, static_graph, stop flags and BatchNorm buffers."""
    x, y = reference_data(32)
    mine = shard_indices(len(x), context)
    xb, yb = x[mine], y[mine]
    counter = {"calls": 0}
    model = wrap_model(reference_model(), context)
    model.register_comm_hook(counter, counting_hook)

    def all_reduces(action: Callable[[], Any]) -> int:
        counter["calls"] = 0
        action()
        return counter["calls"]

    model.train()
    report["all_reduces"] = {
        "autograd.grad, train mode": all_reduces(lambda: fgsm_rs_inputs(model, xb, yb, mine, 0)),
        "advcli.fgsm": all_reduces(lambda: advcli.fgsm(model, xb, yb, eps=EPS)),
        "advcli.bim": all_reduces(lambda: advcli.bim(model, xb, yb, eps=EPS, steps=3)),
        "training backward": all_reduces(lambda: F.cross_entropy(model(xb), yb).backward()),
        "backward on the input": all_reduces(lambda: _input_backward(model, xb, yb)),
    }
    for name, weighted in (("uneven_weighted", True), ("uneven_unweighted", False)):  # shards of 32 and 31
        tensors[name] = torch.stack(reference_training(wrap_model(reference_model(), context), context, method="sgd",
                                                       steps=4, batch_size=63, weighted=weighted))
    wrapper = wrap_model(reference_model(), context)
    unused_wrapper = wrap_model(reference_model(), context)
    bare = unused_wrapper.module  # the mistake: a wrapper exists, but the steps get its module
    static = _static_graph_ddp(reference_model())
    for name, trained in (("wrapper", wrapper), ("bare_module", bare), ("static_graph", static)):
        tensors[name] = reference_training(trained, context, method="fgsm-rs", steps=3, batch_size=32)[-1]
    stopped_at = None
    for step in range(10):
        if agree(context.rank == 1 and step == 2, context):  # a stop request seen by rank 1 alone
            stopped_at = step
            break
    report["stopped_at"] = stopped_at
    report["guard_all"] = agree(context.rank == 0, context, how="all")
    bn_model = wrap_model(TinyBatchNormNet(), context)
    optimizer = torch.optim.SGD(bn_model.parameters(), lr=0.05)
    for _ in range(2):
        optimizer.zero_grad()
        F.cross_entropy(bn_model(xb), yb).backward()
        optimizer.step()
    tensors["bn_after_training"] = unwrap_model(bn_model).bn.running_mean.clone()
    broadcast_buffers(unwrap_model(bn_model), context)
    tensors["bn_after_broadcast"] = unwrap_model(bn_model).bn.running_mean.clone()


def _input_backward(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """An attack step written with .backward(): what attacks must not do."""
    x = x.clone().requires_grad_(True)
    F.cross_entropy(model(x), y).backward()
    return x.grad


def _static_graph_ddp(model: nn.Module) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, static_graph=True)


def hung_rank(context: DistributedContext, report: Report, tensors: Tensors, out: Path) -> None:
    """Rank 1 stops answering (but lives); rank 0 waits at a barrier until the timeout."""
    barrier(context)
    if context.rank == 1:
        time.sleep(120)
        os._exit(0)
    _until_error(lambda: barrier(context), report)


def _until_error(collective: Callable[[], Any], report: dict[str, Any]) -> None:
    started = time.perf_counter()
    try:
        for _ in range(1000):
            collective()
            time.sleep(0.01)
        report["error"] = None
    except DistributedError as error:
        report["error"] = str(error)
    report["seconds_to_error"] = time.perf_counter() - started


def library(context: DistributedContext, report: Report, tensors: Tensors, out: Path) -> None:
    """The collectives, the DDP rules, advcli's training and evaluation: one job for all of them
    (a job's start is most of its cost)."""
    from training_scenarios import evaluation, training

    for scenario in (collectives, ddp_rules, training, evaluation):
        scenario(context, report, tensors, out)


SCENARIOS = {"collectives": collectives, "rules": ddp_rules, "library": library, "hung-rank": hung_rank}


def main() -> None:
    scenario, out = sys.argv[1], Path(sys.argv[2])
    timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 30.0
    torch.set_num_threads(1)
    context = init_from_environment("cpu", timeout=timeout)
    report: dict[str, Any] = {}
    tensors: dict[str, torch.Tensor] = {}
    out.mkdir(parents=True, exist_ok=True)
    SCENARIOS[scenario](context, report, tensors, out)
    if tensors:
        from safetensors.torch import save_file

        save_file({name: tensor.contiguous() for name, tensor in tensors.items()},
                  str(out / f"rank{context.rank}.safetensors"))
    (out / f"rank{context.rank}.json").write_text(json.dumps(report))
    shutdown(context)


if __name__ == "__main__":
    main()
