"""Running on several processes under ``torchrun``: the process group, and the collectives the
training loop and the evaluation engine need.

A process started by ``torchrun`` (``python -m torch.distributed.run``) joins a process group:
gloo on the CPU, NCCL on CUDA (device ``cuda:LOCAL_RANK``). Anywhere else :func:`init_from_environment`
returns a single-process context without a process group, and every collective here returns its
input at once: one process runs exactly as it did before, with nothing to set up.

Samples are sharded by strided global index (rank r holds samples r, r+W, r+2W, ... of W ranks; see
:mod:`advcli.runtime.sharding`) and :func:`gather_samples` puts them back in single-process order,
each exactly once. Every collective runs under the timeout given to :func:`init_from_environment`:
with gloo, a collective with a rank that died fails at once, and one with a rank that stopped
answering fails after the timeout, both as a :class:`DistributedError` (measured); with NCCL, torch's
watchdog ends the process after the timeout instead (torchrun sets TORCH_NCCL_ASYNC_ERROR_HANDLING;
not measured here). Leave the group with :func:`shutdown` also after an error (or use
:func:`distributed_session`): a process that exits holding a group with a dead peer was seen to abort
(SIGABRT, "terminate called without an active exception").
"""

from __future__ import annotations

import math
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from advcli.errors import DistributedError

DEVICE_CHOICES = ("auto", "cpu", "cuda")
DEFAULT_TIMEOUT_S = 600.0
LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
_GRADIENT_SYNC_MISSED = ("static_graph=True lets an input gradient (torch.autograd.grad) during the first "
                         "iteration take the place of the gradient all-reduce, and ranks then train apart")

Result = TypeVar("Result")
JOINING = "joining the process group"


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in the job: its rank among `world_size` processes, its rank on this
    node, the process group's backend (None: a single process, no process group) and its device."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    backend: Optional[str] = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that reports, writes files and decides for the others."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether a process group connects this process to others."""
        return self.backend is not None


@dataclass(frozen=True)
class Launch:
    """What a launcher such as torchrun told this process through its environment."""

    rank: int
    local_rank: int
    world_size: int


def launch_from_environment(environ: Optional[Mapping[str, str]] = None) -> Optional[Launch]:
    """The launch described by RANK, WORLD_SIZE and LOCAL_RANK, or None when none of them is set."""
    environ = os.environ if environ is None else environ
    present = [name for name in LAUNCH_VARIABLES if environ.get(name, "").strip()]
    if not present:
        return None
    missing = [name for name in LAUNCH_VARIABLES if name not in present]
    if missing:
        raise DistributedError(f"{', '.join(present)} set but {', '.join(missing)} not: start the job with torchrun")
    rank, world_size, local_rank = (_environment_int(environ, name) for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    if world_size < 1 or rank >= world_size or local_rank >= world_size:
        raise DistributedError(f"inconsistent launch: RANK={rank} LOCAL_RANK={local_rank} WORLD_SIZE={world_size}")
    return Launch(rank=rank, local_rank=local_rank, world_size=world_size)


def _environment_int(environ: Mapping[str, str], name: str) -> int:
    text = environ[name].strip()
    if not re.fullmatch(r"\d+", text):
        raise DistributedError(f"{name} must be a whole number >= 0, got {text!r}")
    return int(text)


def select_device(device_choice: str, local_rank: Optional[int] = None) -> torch.device:
    """The device for `device_choice` (auto|cpu|cuda): with CUDA, the local rank's own GPU, or
    the current one (``cuda``) outside a launch. Only ``auto`` and ``cuda`` look at CUDA."""
    if device_choice not in DEVICE_CHOICES:
        raise DistributedError(f"`device` must be one of {', '.join(DEVICE_CHOICES)}, got {device_choice!r}",
                               param="device")
    if device_choice == "cpu":
        return torch.device("cpu")
    usable = torch.cuda.is_available()
    if not usable:
        if device_choice == "cuda":
            raise DistributedError("`device` cuda is not usable: no CUDA device is visible", param="device")
        return torch.device("cpu")
    if local_rank is None:
        return torch.device("cuda")
    visible = torch.cuda.device_count()
    if local_rank >= visible:
        raise DistributedError(f"local rank {local_rank} needs its own GPU but {visible} are visible; "
                               f"start at most {visible} processes per node")
    return torch.device("cuda", local_rank)


def init_from_environment(device_choice: str = "auto", *, timeout: float = DEFAULT_TIMEOUT_S) -> DistributedContext:
    """Join torchrun's process group (gloo on the CPU, NCCL on CUDA) with `timeout` seconds for the
    rendezvous and for every collective; outside torchrun, or with one process, no group is made
    and the device is not checked here (the single process's device is its command's business: an
    ONNX file may run on onnxruntime's CUDA provider without torch seeing CUDA)."""
    if not timeout > 0:
        raise DistributedError(f"`timeout` must be > 0 seconds, got {timeout}", param="timeout")
    launch = launch_from_environment()
    if launch is None or launch.world_size == 1:
        if device_choice not in DEVICE_CHOICES:
            select_device(device_choice)  # the one-line refusal of an unknown choice
        usable = device_choice != "cpu" and torch.cuda.is_available()
        return DistributedContext(local_rank=0 if launch is None else launch.local_rank,
                                  device=torch.device("cuda" if usable else "cpu"))
    device = select_device(device_choice, launch.local_rank)
    if not dist.is_available():
        raise DistributedError(f"this torch build ({torch.__version__}) has no torch.distributed")
    if dist.is_initialized():
        raise DistributedError("a process group already exists in this process")
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
    if missing:
        raise DistributedError(f"{' and '.join(missing)} not set: start the job with torchrun")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not (dist.is_nccl_available() if backend == "nccl" else dist.is_gloo_available()):
        raise DistributedError(f"this torch build ({torch.__version__}) has no {backend} backend")
    if backend == "nccl":
        torch.cuda.set_device(device)
    context = DistributedContext(launch.rank, launch.local_rank, launch.world_size, backend, device)
    _communicate(context, JOINING, lambda: dist.init_process_group(
        backend, timeout=timedelta(seconds=timeout), rank=launch.rank, world_size=launch.world_size,
        device_id=device if backend == "nccl" else None))
    return context


def shutdown(context: DistributedContext) -> None:
    """Leave the process group `context` joined (nothing to do for a single process)."""
    if context.distributed and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def distributed_session(
    device_choice: str = "auto", *, timeout: float = DEFAULT_TIMEOUT_S
) -> Iterator[DistributedContext]:
    """:func:`init_from_environment` for the duration of a ``with`` block, then :func:`shutdown`."""
    context = init_from_environment(device_choice, timeout=timeout)
    try:
        yield context
    finally:
        shutdown(context)


def _communicate(context: DistributedContext, what: str, operation: Callable[[], Result]) -> Result:
    """Run one torch.distributed call; its failure becomes a one-line :class:`DistributedError`."""
    try:
        return operation()
    except RuntimeError as error:  # torch.distributed.DistError and gloo's errors are RuntimeErrors
        raise _failed(context, what, error) from error


def _failed(context: DistributedContext, what: str, error: BaseException) -> DistributedError:
    lines = str(error).strip().splitlines() or [type(error).__name__]
    reason = re.sub(r"^\[[^\]]*\]\s*", "", lines[0])  # gloo's "[source file:line] "
    reason = re.split(r"\.\s+(?=[A-Z])", reason)[0][:200]  # its first sentence
    hint = "" if what == JOINING else "; another rank died or stopped answering: see its output"
    return DistributedError(f"rank {context.rank} of {context.world_size}: {what} failed: {reason}{hint}")


_EXCHANGE_FAILURE = re.compile(r"gloo|nccl|connection|timed out|timeout|broken pipe|peer", re.IGNORECASE)


def exchanging(context: DistributedContext, what: str, operation: Callable[[], Result]) -> Result:
    """Run `operation`, which exchanges with the other ranks inside torch (DDP's gradient all-reduce
    in a backward pass): a failure of the exchange becomes a one-line :class:`DistributedError`,
    any other error stays what it is."""
    if not context.distributed:
        return operation()
    try:
        return operation()
    except RuntimeError as error:
        if isinstance(error, getattr(dist, "DistError", ())) or _EXCHANGE_FAILURE.search(str(error).split("\n")[0]):
            raise _failed(context, what, error) from error
        raise


def barrier(context: DistributedContext) -> None:
    """Wait until every rank gets here."""
    if context.distributed:
        device_ids = [context.device.index] if context.backend == "nccl" else None
        _communicate(context, "barrier", lambda: dist.barrier(device_ids=device_ids))


def agree(flag: bool, context: DistributedContext, *, how: str = "any") -> bool:
    """One decision for every rank: whether `flag` holds on any rank (``how="any"``: a stop request)
    or on all of them (``how="all"``)."""
    if how not in ("any", "all"):
        raise DistributedError(f"how must be 'any' or 'all', got {how!r}")
    if not context.distributed:
        return bool(flag)
    vote = torch.tensor([1 if flag else 0], dtype=torch.int32, device=context.device)
    operation = dist.ReduceOp.MAX if how == "any" else dist.ReduceOp.MIN
    _communicate(context, f"agreeing ({how})", lambda: dist.all_reduce(vote, op=operation))
    return bool(vote.item())


def sum_over_ranks(value: Any, context: DistributedContext) -> Any:
    """The sum of `value` over the ranks: exact for ints (int64), float64 for floats."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DistributedError(f"can only sum ints and floats over ranks, got {type(value).__name__}")
    if not context.distributed:
        return value
    dtype = torch.int64 if isinstance(value, int) else torch.float64
    total = torch.tensor([value], dtype=dtype, device=context.device)
    _communicate(context, "summing over ranks", lambda: dist.all_reduce(total))
    return int(total.item()) if dtype == torch.int64 else float(total.item())


def totals_over_ranks(values: Sequence[float], context: DistributedContext) -> list[float]:
    """Each of `values` summed over the ranks in one collective (float64): several per-step
    figures for the price of one exchange. Every rank must pass as many values."""
    if not context.distributed:
        return [float(value) for value in values]
    totals = torch.tensor([float(value) for value in values], dtype=torch.float64, device=context.device)
    _communicate(context, "summing over ranks", lambda: dist.all_reduce(totals))
    return totals.tolist()


def max_over_ranks(value: float, context: DistributedContext) -> float:
    """The largest of the ranks' `value` (float64)."""
    if not context.distributed:
        return float(value)
    largest = torch.tensor([float(value)], dtype=torch.float64, device=context.device)
    _communicate(context, "taking the maximum over ranks", lambda: dist.all_reduce(largest, op=dist.ReduceOp.MAX))
    return float(largest.item())


def from_main(value: int, context: DistributedContext) -> int:
    """Rank 0's `value` on every rank (a decision only rank 0 could take, such as which file to read)."""
    if not context.distributed:
        return int(value)
    return int(sum_over_ranks(int(value) if context.is_main else 0, context))


def mean_over_ranks(value: float, context: DistributedContext, *, weight: float = 1.0) -> float:
    """The mean of `value` over the ranks, each counted `weight` times (e.g. its number of samples:
    the mean of shard accuracies is the global accuracy only when weighted by shard size). For an
    exact accuracy sum the counts of correct samples and of samples with :func:`sum_over_ranks`."""
    if not context.distributed:
        if not weight > 0:
            raise DistributedError("a mean over ranks needs a total weight > 0")
        return float(value)
    totals = torch.tensor([float(value) * weight, float(weight)], dtype=torch.float64, device=context.device)
    _communicate(context, "averaging over ranks", lambda: dist.all_reduce(totals))
    weighted, weights = totals.tolist()
    if not weights > 0:
        raise DistributedError("a mean over ranks needs a total weight > 0")
    return weighted / weights


def broadcast_buffers(module: nn.Module, context: DistributedContext, *, source: int = 0) -> None:
    """Overwrite every rank's module buffers (BatchNorm running statistics) with rank `source`'s,
    one collective per buffer dtype. Call it before each rank evaluates the bare module."""
    if not context.distributed:
        return
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for buffer in module.buffers():
        by_dtype.setdefault(buffer.dtype, []).append(buffer)
    for buffers in by_dtype.values():
        wire = torch.cat([buffer.detach().reshape(-1).view(torch.uint8) if buffer.dtype == torch.bool
                          else buffer.detach().reshape(-1) for buffer in buffers]).to(context.device)
        _communicate(context, "broadcasting module buffers", lambda: dist.broadcast(wire, src=source))
        offset = 0
        with torch.no_grad():
            for buffer in buffers:
                part = wire[offset:offset + buffer.numel()]
                part = part.view(torch.bool) if buffer.dtype == torch.bool else part
                buffer.copy_(part.view(buffer.shape))
                offset += buffer.numel()


_DTYPE_CODES = (torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32,
                torch.int16, torch.int8, torch.uint8, torch.bool)
_MAX_SAMPLE_DIMS = 8


def gather_samples(shard: torch.Tensor, context: DistributedContext, *, to_all: bool = False) -> Optional[torch.Tensor]:
    """Per-sample results of strided shards (rank r holds samples r, r+W, ...) in single-process
    order: every sample once, whatever the count (fewer samples than ranks included).

    Returns the whole tensor on rank 0, on every rank with `to_all`, None on the other ranks; it
    lies on `shard`'s device. Ranks whose shards do not fit together (shapes, dtypes, counts
    other than those of a strided split) all raise the same :class:`DistributedError`.
    """
    if shard.ndim < 1 or shard.ndim > _MAX_SAMPLE_DIMS + 1:
        raise DistributedError(f"samples must be a tensor of 1 to {_MAX_SAMPLE_DIMS + 1} dimensions, got {shard.ndim}")
    if not context.distributed:
        return shard
    world = context.world_size
    described = _shard_description(shard).to(context.device)
    descriptions = [torch.empty_like(described) for _ in range(world)]
    _communicate(context, "gathering sample shapes", lambda: dist.all_gather(descriptions, described))
    counts = _check_shards([description.tolist() for description in descriptions])
    row_bytes = math.prod(shard.shape[1:]) * shard.element_size()
    rows = max(max(counts), 1)  # the transport pads every shard to the longest; the result does not
    wire = torch.zeros((rows, row_bytes), dtype=torch.uint8, device=context.device)
    if len(shard):
        wire[:len(shard)] = shard.detach().contiguous().reshape(len(shard), -1).view(torch.uint8).to(context.device)
    received = [torch.empty_like(wire) for _ in range(world)] if to_all or context.is_main else None
    if to_all:
        _communicate(context, "gathering samples", lambda: dist.all_gather(received, wire))
    else:
        _communicate(context, "gathering samples", lambda: dist.gather(wire, received, dst=0))
    if received is None:
        return None
    total = sum(counts)
    merged = torch.empty((total, row_bytes), dtype=torch.uint8, device=context.device)
    for rank, (part, count) in enumerate(zip(received, counts)):
        merged[rank::world] = part[:count]
    return merged.view(shard.dtype).reshape(total, *shard.shape[1:]).to(shard.device)


def _shard_description(shard: torch.Tensor) -> torch.Tensor:
    """[count, dtype code, sample ndim, bytes per element, sample shape padded with -1]."""
    sample_shape = list(shard.shape[1:]) + [-1] * (_MAX_SAMPLE_DIMS - (shard.ndim - 1))
    code = _DTYPE_CODES.index(shard.dtype) if shard.dtype in _DTYPE_CODES else -1
    return torch.tensor([len(shard), code, shard.ndim - 1, shard.element_size(), *sample_shape], dtype=torch.int64)


def _check_shards(descriptions: list[list[int]]) -> list[int]:
    """The shard sizes, once every rank's shard is known to fit a strided split of one tensor."""
    world = len(descriptions)
    if any(description[1:] != descriptions[0][1:] for description in descriptions):
        raise DistributedError("cannot gather samples: the ranks' shards differ in dtype or sample shape")
    if descriptions[0][1] < 0:
        raise DistributedError("cannot gather samples of this dtype")
    counts = [description[0] for description in descriptions]
    total = sum(counts)
    expected = [len(range(rank, total, world)) for rank in range(world)]
    if counts != expected:
        raise DistributedError(f"cannot gather samples: shard sizes {counts} are not a strided split of {total} "
                               f"samples over {world} ranks ({expected})")
    return counts


def wrap_model(model: nn.Module, context: DistributedContext, *, sync_buffers: bool = True,
               **options: Any) -> nn.Module:
    """`model` in DistributedDataParallel (the model itself for a single process). Pass the wrapper,
    not the bare module, to the step functions: its forward is what makes the backward pass average
    the gradients. Buffers are rank 0's from the start and, with `sync_buffers`, broadcast from
    rank 0 before each forward (which then needs the same number of forwards on every rank)."""
    if options.get("static_graph"):
        raise DistributedError(f"DDP's static_graph is not for adversarial training: {_GRADIENT_SYNC_MISSED}")
    if not context.distributed:
        return model
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    # torch 2.13 renamed broadcast_buffers (deprecated, with a warning) to forward_sync_buffers.
    renamed = "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
    defaults: dict[str, Any] = {"forward_sync_buffers" if renamed else "broadcast_buffers": sync_buffers,
                                "find_unused_parameters": False}
    if context.device.type == "cuda":
        defaults["device_ids"] = [context.device.index]
    return exchanging(context, "sharing the model's weights",
                      lambda: DistributedDataParallel(model, **{**defaults, **options}))


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (what to save), else `model`."""
    from torch.nn.parallel import DistributedDataParallel

    return model.module if isinstance(model, DistributedDataParallel) else model
