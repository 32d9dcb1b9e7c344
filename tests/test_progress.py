"""Never silent: plain progress lines at a steady pace when stderr is not a terminal, bars that move
within a batch, nothing with --quiet; and the progress meter never changes what an attack computes."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

import advcli
from advcli.cli.progress import Lines, View, duration, progress_view, quantity

REPO = Path(__file__).resolve().parents[1]
LINE = re.compile(r"^(?P<stage>[\w .=-]+): (?P<done>\d+)/(?P<total>\d+|\?)( \(\d+%\))?, (?P<rate>[\d.?]+[kMG]?)/s, "
                  r"(ETA [\d:?]+|done in [\d:]+)")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def plain(interval: float = 30.0) -> tuple[Lines, io.StringIO, Clock]:
    stream, clock = io.StringIO(), Clock()
    return Lines(Console(file=stream, width=80), interval=interval, clock=clock), stream, clock


def test_plain_lines_come_at_every_tenth_and_name_stage_count_rate_and_eta():
    view, stream, clock = plain()
    for done in range(0, 101):
        clock.now += 0.1
        view.update("bim eps=0.1", done, 100)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 11  # 0%, 10%, ..., 100%
    assert all(LINE.match(line) for line in lines), lines
    assert lines[5].startswith("bim eps=0.1: 50/100 (50%), 10/s, ETA 0:05")
    assert lines[-1].startswith("bim eps=0.1: 100/100 (100%), 10/s, done in 0:10")


def test_a_quiet_stage_still_gets_a_line_every_interval():
    view, stream, clock = plain(interval=30.0)
    view.update("square eps=0.1", 0, 500)
    for _ in range(10):  # 100 s without a word from the library
        clock.now += 10
        view.beat()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 + 3  # at 30, 60 and 90 s
    assert "0/500 (0%), 0/s, ETA ?, 1:30 so far" in lines[-1]
    view.update("square eps=0.1", 500, 500)
    clock.now += 60
    view.beat()  # a finished stage is not repeated
    assert len(stream.getvalue().splitlines()) == 5


def test_a_step_of_unknown_length_speaks_only_when_it_takes_a_while():
    view, stream, clock = plain(interval=30.0)
    with view.working("loading digits"):
        clock.now += 5
        view.beat()
    assert stream.getvalue() == ""
    with view.working("loading mnist"):
        clock.now += 31
        view.beat()
    assert stream.getvalue().strip() == "loading mnist: 0/?, 0/s, ETA ?, 0:31 so far"


def test_unknown_totals_and_formatting():
    view, stream, clock = plain()
    view.update("training", 0, None, "epoch 1/3")
    assert stream.getvalue().strip() == "training: 0/?, ?/s, ETA ?, 0:00 so far, epoch 1/3"
    assert (duration(59.6), duration(3725), quantity(0.0412), quantity(3.5), quantity(950), quantity(12345),
            quantity(4.1e6)) == ("1:00", "1:02:05", "0.041", "3.5", "950", "12.3k", "4.1M")


def test_the_view_follows_the_terminal_and_quiet():
    terminal = Console(file=io.StringIO(), force_terminal=True)
    log = Console(file=io.StringIO(), force_terminal=False)
    assert type(progress_view(False, terminal)).__name__ == "Bars"
    assert type(progress_view(False, log)) is Lines
    assert type(progress_view(True, terminal)) is View and type(progress_view(True, log)) is View


@pytest.mark.parametrize("attack", ["bim", "auto"])
def test_progress_moves_within_one_batch_and_changes_nothing(trained_run, tiny_dataset, one_thread, attack):
    """One batch holds every sample, yet the count moves before the batch ends (the meter reads the
    attack's model calls); the report is identical with and without a callback."""
    settings = dict(run=advcli.load_run(trained_run), dataset=tiny_dataset, attacks=(attack,), eps=0.02, samples=64,
                    batch_size=64, sanity_samples=0, device="cpu", iters=5, queries=20)
    calls: list[tuple[str, int, int]] = []
    followed = advcli.evaluate(**settings, on_progress=lambda *call: calls.append(call))
    alone = advcli.evaluate(**settings)
    assert followed.robust_accuracy == alone.robust_accuracy
    assert [r.to_dict()["max_perturbation"] for r in followed.attacks] == \
        [r.to_dict()["max_perturbation"] for r in alone.attacks]
    stage = f"{attack} eps=0.02"
    counts = [done for name, done, _ in calls if name == stage]
    total = next(total for name, _, total in calls if name == stage)
    assert counts[0] == 0 and counts[-1] == total and counts == sorted(counts)
    assert any(0 < done < total for done in counts), counts


SLOW_EVAL = """
import sys, time
import advcli.cli.progress as progress
from advcli.models.architectures.seed_cnn import SeedCNN
progress.PLAIN_INTERVAL_S = float(sys.argv[1])
forward = SeedCNN.forward
def slow(self, x):
    time.sleep(0.02)
    return forward(self, x)
SeedCNN.forward = slow
from advcli.cli import app
app(sys.argv[2:], prog_name="advcli")
"""


def stream_lines(args: list[str]) -> list[tuple[float, str]]:
    """Run the command line with stderr a pipe; each stderr line with the time it arrived."""
    process = subprocess.Popen([sys.executable, "-c", SLOW_EVAL, *args], cwd=REPO, stderr=subprocess.PIPE,
                               stdout=subprocess.DEVNULL, text=True, env={**__import__("os").environ,
                                                                          "OMP_NUM_THREADS": "1"})
    arrived = [(time.monotonic(), line.rstrip("\n")) for line in process.stderr]  # type: ignore[union-attr]
    assert process.wait(timeout=120) == 0, arrived
    return arrived


@pytest.mark.slow
def test_a_logged_evaluation_with_a_slow_attack_keeps_a_steady_pace(trained_run):
    """Non-TTY stderr, an attack made slow, one batch: progress lines arrive at least every interval
    (0.5 s here; 30 s by default), each naming stage, done/total, rate and ETA; --quiet shows none."""
    interval = 0.5
    command = ["eval", "--model", str(trained_run), "--attack", "bim", "--samples", "150", "--batch-size", "150",
               "--sanity-samples", "0"]
    arrived = stream_lines([str(interval), *command])
    progress = [(at, line) for at, line in arrived if line.startswith("bim eps=0.1:")]
    assert all(LINE.match(line) for _, line in progress), progress
    assert len(progress) >= 4 and progress[-1][1].startswith("bim eps=0.1: ") and "done in" in progress[-1][1]
    gaps = [later - earlier for (earlier, _), (later, _) in zip(progress, progress[1:])]
    assert max(gaps) < interval + 1.0, gaps  # the slack covers a loaded machine, not a missed beat
    quiet = stream_lines([str(interval), *command, "--quiet"])
    assert not [line for _, line in quiet if LINE.match(line)], quiet
