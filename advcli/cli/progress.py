"""Progress on stderr, never silent and never noisy: bars in a terminal, plain lines at a steady pace
elsewhere (CI logs, ``| tee``), nothing with ``--quiet``.

The library reports through ``on_progress(stage, done, total)`` callbacks; this module only renders
them. A plain line names the stage, done/total, the rate and the time left, and comes at every tenth
of a stage and at least every :data:`PLAIN_INTERVAL_S` seconds while one runs, even when the library
has nothing new to say (a slow batch still shows that the command is alive).
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .render import err

PLAIN_INTERVAL_S = 30.0  # the longest wait between two plain lines while a stage runs
PLAIN_STEPS = 10  # a plain line at every 1/PLAIN_STEPS of a stage
MIN_RATE_SPAN_S = 0.5  # a rate is shown once a stage has run this long


def duration(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour on."""
    seconds = int(round(max(seconds, 0)))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def quantity(value: float) -> str:
    """A count in a few significant characters: 0.04, 3.5, 950, 12.3k, 4.1M."""
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.1f}{suffix}"
    if value and abs(value) < 1:
        return f"{value:.2g}"
    return f"{value:.1f}" if abs(value) < 10 and value != int(value) else f"{value:.0f}"


class View:
    """Where progress goes; this base shows nothing (``--quiet``)."""

    def __enter__(self) -> "View":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, stage: str, done: int, total: Optional[int], info: str = "") -> None:
        """Stage `stage` has done `done` of `total` units (None: not known yet)."""

    def message(self, text: str) -> None:
        """A line that belongs to the progress (an epoch's summary); dropped when quiet."""

    def callback(self) -> Callable[[str, int, int], None]:
        """The ``on_progress(stage, done, total)`` the library takes."""
        return lambda stage, done, total: self.update(stage, done, total)

    @contextmanager
    def working(self, stage: str) -> Iterator[None]:
        """A step of unknown length that says nothing unless it takes a while (loading data)."""
        yield


class Bars(View):
    """rich progress bars, one per stage, for a terminal."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=console, transient=False)
        self.tasks: dict[str, object] = {}

    def __enter__(self) -> "Bars":
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def update(self, stage: str, done: int, total: Optional[int], info: str = "") -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(stage, total=total, info=info)
        self.progress.update(self.tasks[stage], total=total, completed=done, info=info)  # type: ignore[arg-type]

    def message(self, text: str) -> None:
        self.progress.console.print(text, highlight=False, markup=False, soft_wrap=True)

    @contextmanager
    def working(self, stage: str) -> Iterator[None]:
        task = self.progress.add_task(stage, total=None, info="")
        try:
            yield
        finally:
            self.progress.remove_task(task)


@dataclass
class _Stage:
    started: float
    first: int = 0  # done at the first report: the rate counts what was done after it
    done: int = 0
    total: Optional[int] = None
    info: str = ""
    printed_at: float = field(default=0.0)
    printed_step: int = -1

    @property
    def finished(self) -> bool:
        return self.total is not None and self.done >= self.total


class Lines(View):
    """Plain lines, for logs: at every tenth of a stage and at least every `interval` seconds while a
    stage runs (a background thread keeps the pace when the library is quiet)."""

    def __init__(self, console: Console, interval: Optional[float] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.console, self.clock = console, clock
        self.interval = PLAIN_INTERVAL_S if interval is None else interval
        self.stages: dict[str, _Stage] = {}
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread: Optional[threading.Thread] = None

    def __enter__(self) -> "Lines":
        self.thread = threading.Thread(target=self._keep_pace, name="advcli-progress", daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        if self.thread is not None:
            self.thread.join(timeout=5)

    def line(self, name: str, stage: _Stage, now: float) -> str:
        elapsed = now - stage.started
        rate = (stage.done - stage.first) / elapsed if elapsed >= MIN_RATE_SPAN_S else None
        total = "?" if stage.total is None else str(stage.total)
        share = f" ({100 * stage.done / stage.total:.0f}%)" if stage.total else ""
        if stage.finished:
            left = f"done in {duration(elapsed)}"
        elif stage.total is None or not rate:
            left = f"ETA ?, {duration(elapsed)} so far"
        else:
            left = f"ETA {duration((stage.total - stage.done) / rate)}"
        info = f", {stage.info}" if stage.info else ""
        speed = "?/s" if rate is None else f"{quantity(rate)}/s"
        return f"{name}: {stage.done}/{total}{share}, {speed}, {left}{info}"

    def _print(self, name: str, stage: _Stage, now: float) -> None:
        stage.printed_at = now
        self.console.print(self.line(name, stage, now), highlight=False, markup=False, soft_wrap=True)

    def update(self, stage: str, done: int, total: Optional[int], info: str = "") -> None:
        with self.lock:
            now = self.clock()
            state = self.stages.setdefault(stage, _Stage(started=now, first=done))
            state.done, state.total, state.info = done, total, info
            step = PLAIN_STEPS * done // total if total else 0
            if step > state.printed_step or now - state.printed_at >= self.interval:
                state.printed_step = max(step, state.printed_step)
                self._print(stage, state, now)

    def message(self, text: str) -> None:
        with self.lock:
            self.console.print(text, highlight=False, markup=False, soft_wrap=True)

    @contextmanager
    def working(self, stage: str) -> Iterator[None]:
        with self.lock:
            now = self.clock()
            self.stages[stage] = _Stage(started=now, printed_at=now, printed_step=0)
        try:
            yield
        finally:
            with self.lock:
                self.stages.pop(stage, None)

    def beat(self) -> None:
        """A line for every running stage that has been quiet for `interval` seconds."""
        with self.lock:
            now = self.clock()
            for name, stage in self.stages.items():
                if not stage.finished and now - stage.printed_at >= self.interval:
                    self._print(name, stage, now)

    def _keep_pace(self) -> None:
        while not self.stopped.wait(min(self.interval / 4, 1.0)):
            self.beat()


def progress_view(quiet: bool = False, console: Console = err) -> View:
    """Bars when stderr is a terminal, plain lines when it is not, nothing when `quiet`."""
    if quiet:
        return View()
    return Bars(console) if console.is_terminal else Lines(console)
