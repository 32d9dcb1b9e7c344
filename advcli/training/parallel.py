"""Training on several processes (torchrun): what the loop does differently there.

The global mini-batch (`batch_size`) is split over the processes by stride; each trains on its
share through the DistributedDataParallel wrapper, whose backward pass averages the gradients, with
its loss weighted so that the average is the gradient of the global batch's mean loss, also when
shares differ in size. Validation and the test accuracy are sharded and summed, so that every
process takes the guard's decisions on the same figures; BatchNorm statistics are rank 0's before
every validation, test and save (the wrapper does not broadcast them at each forward: the attacks
of a step may run a different number of forwards on different ranks). A single process takes none
of these paths and runs exactly as it always did.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch import nn

from ..errors import AdvcliError
from ..runtime.distributed import (
    DistributedContext,
    broadcast_buffers,
    gather_samples,
    totals_over_ranks,
    wrap_model,
)
from ..runtime.sharding import shard_batch, shard_indices
from .guard import ValidationResult


@dataclass(frozen=True)
class LocalBatch:
    """This process's part of one global mini-batch: its sample indices, the factor of its mean
    loss, and its share of a full batch (what a step's `batch_size` is)."""

    indices: torch.Tensor
    loss_weight: float
    rows: int


def local_batch(batch: torch.Tensor, batch_size: int, context: DistributedContext) -> LocalBatch:
    """The strided share of `batch` (global sample indices) this process trains on."""
    shard = shard_batch(batch, context)
    return LocalBatch(shard.indices, shard.loss_weight, len(range(context.rank, batch_size, context.world_size)))


def check_batches_split(count: int, batch_size: int, context: DistributedContext) -> None:
    """Refuse, before training, mini-batches (the last of an epoch included) with fewer samples than
    processes: a process without samples has no loss to average."""
    sizes = [min(batch_size, count)] + ([count % batch_size] if count > batch_size and count % batch_size else [])
    smallest = min(sizes)
    if smallest < context.world_size:
        raise AdvcliError(f"a mini-batch of {smallest} samples cannot be split over {context.world_size} processes "
                          f"({count} training samples in batches of {batch_size}); choose another `batch_size`",
                          param="batch_size")


def check_sync_bn(sync_bn: bool, device: torch.device) -> None:
    if sync_bn and device.type != "cuda":
        raise AdvcliError(f"`sync_bn` needs CUDA devices (SyncBatchNorm has no {device.type} implementation); "
                          "drop it, or train on GPUs", param="sync_bn")


def training_module(model: nn.Module, context: DistributedContext, sync_bn: bool) -> nn.Module:
    """What the steps get: `model` itself for one process, else its DistributedDataParallel wrapper
    (with `sync_bn`, BatchNorm layers made SyncBatchNorm first, sharing the model's tensors)."""
    if not context.distributed:
        return model
    if sync_bn:
        _swap_batch_norm(model, lambda layer: nn.SyncBatchNorm, "sync")
    return wrap_model(model, context, sync_buffers=False)


def plain_batch_norm(model: nn.Module) -> None:
    """Undo :func:`training_module`'s SyncBatchNorm layers: the architecture's own layers again, with
    the same tensors (what is saved, evaluated and exported)."""
    _swap_batch_norm(model, lambda layer: getattr(layer, "_advcli_plain", type(layer)), "plain")


def _swap_batch_norm(model: nn.Module, new_type: Callable[[nn.Module], type], direction: str) -> None:
    for parent in list(model.modules()):
        for name, layer in list(parent.named_children()):
            wanted = isinstance(layer, nn.SyncBatchNorm) if direction == "plain" else (
                isinstance(layer, nn.modules.batchnorm._BatchNorm) and not isinstance(layer, nn.SyncBatchNorm))
            if not wanted:
                continue
            kind = new_type(layer)
            swapped = kind(layer.num_features, layer.eps, layer.momentum, layer.affine, layer.track_running_stats)
            for tensor_name in ("weight", "bias"):
                setattr(swapped, tensor_name, getattr(layer, tensor_name))
            for tensor_name in ("running_mean", "running_var", "num_batches_tracked"):
                setattr(swapped, tensor_name, getattr(layer, tensor_name))
            swapped.train(layer.training)
            if direction == "sync":
                swapped._advcli_plain = type(layer)
            setattr(parent, name, swapped)


def step_figures(loss_value: float, correct: int, count: int, context: DistributedContext) -> tuple[float, float]:
    """The global batch's mean loss and accuracy from every process's share, in one exchange."""
    loss_sum, correct_sum, total = totals_over_ranks([loss_value * count, correct, count], context)
    return loss_sum / total, correct_sum / total


def _takes_indices(validator: Callable[..., Any]) -> bool:
    try:
        return "indices" in inspect.signature(validator).parameters
    except (TypeError, ValueError):
        return False


def _as_count(fraction: float, samples: int) -> float:
    """A share of `samples` back as a count: exact when it was one (counts sum exactly)."""
    value = fraction * max(samples, 1)
    return float(round(value)) if abs(value - round(value)) < 1e-6 else value


def sharded_validation(validator: Callable[..., ValidationResult], model: nn.Module, x: torch.Tensor,
                       y: torch.Tensor, config: Any, context: DistributedContext, keyed: bool) -> ValidationResult:
    """`validator` on this process's strided share of the validation slice, summed over the
    processes; with `keyed`, a validator that takes `indices` gets the samples' positions in the
    slice to key its random starts by."""
    if not context.distributed and not keyed:
        return validator(model, x, y, config)
    rows = shard_indices(len(x), context, device=x.device)
    broadcast_buffers(model, context)
    extra = {"indices": rows} if keyed and _takes_indices(validator) else {}
    result = validator(model, x[rows], y[rows], config, **extra)
    if not context.distributed:
        return result
    certified = result.certified_accuracy
    clean, robust, verified, total = totals_over_ranks(
        [_as_count(result.accuracy, len(rows)), _as_count(result.robust_accuracy, len(rows)),
         _as_count(certified or 0.0, len(rows)), len(rows)], context)
    return ValidationResult(clean / max(total, 1), robust / max(total, 1),
                            None if certified is None else verified / max(total, 1))


@torch.no_grad()
def correct_predictions(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 1000) -> int:
    """How many of `x` `model` (put in eval mode for the count) classifies as `y`."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size].to(device, non_blocking=True)
        yb = y[start:start + batch_size].to(device, non_blocking=True)
        correct += int((model(xb).argmax(1) == yb).sum())
    model.train(was_training)
    return correct


def sharded_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, context: DistributedContext) -> float:
    """Clean accuracy over every process's strided share of `x`, exact (counts are summed)."""
    rows = shard_indices(len(x), context, device=torch.device("cpu"))
    correct, total = totals_over_ranks([correct_predictions(model, x[rows], y[rows]), len(rows)], context)
    return correct / max(total, 1)


def gathered_carry(carry: dict[str, torch.Tensor], context: DistributedContext) -> Optional[dict[str, torch.Tensor]]:
    """A method's carried tensors with every process's rows in global order (rank 0; None on the
    others): what a resume state stores, whatever the number of processes."""
    if not context.distributed:
        return carry
    whole: dict[str, torch.Tensor] = {}
    for key in sorted(carry):
        value = carry[key]
        rows = gather_samples(value.detach(), context)
        grad = gather_samples(value.grad, context) if value.grad is not None else None
        if rows is not None:
            rows = rows.clone().requires_grad_(value.requires_grad)
            rows.grad = grad
            whole[key] = rows
    return whole if context.is_main else None


def split_carry(carry: dict[str, torch.Tensor], context: DistributedContext) -> dict[str, torch.Tensor]:
    """This process's rows of carried tensors stored in global order (the inverse of :func:`gathered_carry`)."""
    if not context.distributed:
        return carry
    mine: dict[str, torch.Tensor] = {}
    for key, value in carry.items():
        rows = value.detach()[context.rank::context.world_size].clone().requires_grad_(value.requires_grad)
        if value.grad is not None:
            rows.grad = value.grad[context.rank::context.world_size].clone()
        mine[key] = rows
    return mine
