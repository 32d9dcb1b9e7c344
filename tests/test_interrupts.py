"""Graceful stops: the first Ctrl-C asks to stop, a second aborts; a torchrun worker also stops on
SIGTERM and takes a repeat within the window (the terminal's Ctrl-C, then torchrun's) as one."""

from __future__ import annotations

import os
import signal

import pytest

from advcli.cli import interrupts
from advcli.cli.interrupts import graceful_interrupt


def deliver(number: int) -> None:
    os.kill(os.getpid(), number)  # the handler runs before os.kill returns, in the main thread


def test_a_first_ctrl_c_asks_to_stop_and_a_second_aborts():
    with graceful_interrupt() as stop:
        assert not stop()
        deliver(signal.SIGINT)
        assert stop()
        with pytest.raises(KeyboardInterrupt):
            deliver(signal.SIGINT)


def test_sigterm_is_left_alone_outside_torchrun():
    before = signal.getsignal(signal.SIGTERM)
    with graceful_interrupt():
        assert signal.getsignal(signal.SIGTERM) is before


def test_a_torchrun_worker_stops_on_sigterm_and_takes_a_quick_repeat_as_the_same_request(monkeypatch):
    before = signal.getsignal(signal.SIGTERM)
    with graceful_interrupt(launched=True) as stop:
        deliver(signal.SIGTERM)
        assert stop()
        deliver(signal.SIGINT)  # torchrun passing the terminal's Ctrl-C on: the same request
        monkeypatch.setattr(interrupts, "REPEAT_WINDOW_S", 0.0)
        with pytest.raises(KeyboardInterrupt):
            deliver(signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is before
