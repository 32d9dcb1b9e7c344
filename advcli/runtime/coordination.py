"""Decisions rank 0 takes for a job of several processes (checking and writing files, which only it
does), shared with every rank so that all of them go on, or all of them stop, together."""

from __future__ import annotations

from typing import Callable, Optional, TypeVar

from ..errors import StoppedWithMain
from .distributed import DistributedContext, agree

Result = TypeVar("Result")


def main_decides(action: Callable[[], Result], context: DistributedContext) -> Optional[Result]:
    """Run `action` on rank 0 only and let every rank know whether it succeeded: rank 0 gets its
    result (or its error), the others None (or :class:`StoppedWithMain`). A single process simply
    runs `action`."""
    if not context.distributed:
        return action()
    result: Optional[Result] = None
    failure: Optional[BaseException] = None
    if context.is_main:
        try:
            result = action()
        except Exception as error:  # re-raised below, once the other ranks know
            failure = error
    if agree(failure is not None, context):
        if failure is not None:
            raise failure
        raise StoppedWithMain(f"rank {context.rank} of {context.world_size}: rank 0 stopped the job; see its output")
    return result
