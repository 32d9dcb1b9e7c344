"""Graceful Ctrl-C: the first interrupt asks the running loop to stop and save; a second aborts.

Under torchrun a worker hears Ctrl-C twice (from the terminal, and from torchrun passing it on):
a second signal within :data:`REPEAT_WINDOW_S` of the first counts as the same request there, and
SIGTERM (Slurm's ``scancel``, torchrun's own shutdown) asks for a stop as well.
"""

from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager
from typing import Iterator

REPEAT_WINDOW_S = 2.0


class StopRequest:
    """A flag a training loop polls; callable so it can be passed as ``should_stop``."""

    def __init__(self) -> None:
        self.requested = False
        self.at = 0.0

    def __call__(self) -> bool:
        return self.requested


@contextmanager
def graceful_interrupt(*, launched: bool = False) -> Iterator[StopRequest]:
    """Within the block, SIGINT sets the returned flag instead of raising (once); with `launched`
    (a torchrun worker) SIGTERM too, and a repeat within the window is the same request."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame):  # noqa: ARG001 - signal handler signature
        if stop.requested and not (launched and time.monotonic() - stop.at < REPEAT_WINDOW_S):
            raise KeyboardInterrupt
        if not stop.requested:
            stop.requested, stop.at = True, time.monotonic()

    signals = (signal.SIGINT, signal.SIGTERM) if launched else (signal.SIGINT,)
    previous = {number: signal.signal(number, handler) for number in signals}
    try:
        yield stop
    finally:
        for number, earlier in previous.items():
            signal.signal(number, earlier)
