"""The command line under torchrun: each command joins the job's process group around its work,
rank 0 alone shows progress, notes and results, and every rank ends with the same exit code."""

from __future__ import annotations

import os
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, ContextManager, Iterator

import typer

from .render import err, say_notes

if TYPE_CHECKING:
    from ..runtime.distributed import DistributedContext

TimeoutOpt = typer.Option(
    600.0, "--timeout",
    help="Under torchrun: seconds a process waits for the others at any exchange before the job fails "
         "(a process that died ends it at once).")


def worker_rank() -> int:
    """This process's rank in a torchrun job (0 outside one), read without joining anything."""
    text = os.environ.get("RANK", "0").strip()
    return int(text) if text.isdigit() else 0


def launched() -> bool:
    """Whether torchrun started this process."""
    return bool(os.environ.get("TORCHELASTIC_RUN_ID") or os.environ.get("RANK", "").strip())


@contextmanager
def joined(device: str, timeout: float) -> Iterator["DistributedContext"]:
    """The job's process group for the block (none outside torchrun); rank 0 says when a torchrun
    restart of this job could not reconnect."""
    from ..runtime.distributed import distributed_session
    from ..runtime.restarts import restart_problem

    with distributed_session(device, timeout=timeout) as context:
        if context.is_main:
            say_notes([restart_problem()])
        yield context


def shown_status(message: str, visible: bool) -> ContextManager[Any]:
    """A spinner on stderr for `message`, on the process that shows progress."""
    return err.status(message) if visible else nullcontext()
