"""Fault suite: user text that reaches the terminal (paths, class names from data files).

Rich markup in it must be printed literally (never parsed: ``[/]`` crashed, ``[red]`` vanished),
terminal control characters must never reach the terminal raw (escape sequences can clear the
screen, retitle the window or forge output), and class names must not be parsed as matplotlib
mathtext in the attack grid.
"""

from __future__ import annotations

import shutil

import pytest
from faults.artifacts import write_tiny_npz
from faults.contract import assert_refused, assert_succeeded, case, control_characters, invoke
from faults.fixtures import artifacts, world  # noqa: F401 - fixtures
from faults.formats import write_folder, write_png

EVAL = ("--samples", 8, "--iters", 1, "--sanity-samples", 0, "--device", "cpu")

MARKUP = {"closing-tag": "x[/]y", "style-tag": "x[red]y[/red]z", "open-tag": "x[bold]y",
          "link-tag": "x[link=mailto:a@example.invalid]y[/link]"}
CONTROL = {"clear-screen": "x\x1b[2Jy", "window-title": "x\x1b]0;owned\x07y", "newline": "x\ny",
           "carriage-return": "x\rforged", "c1-csi": "x\x9b31my", "bell": "x\x07y"}


def _unwrapped(text: str) -> str:
    """Lines joined again: Rich wraps long lines at the console width."""
    return text.replace("\n", "")


def _no_control_characters(outcome) -> None:
    assert not control_characters(outcome.stdout + outcome.stderr), (
        sorted(map(hex, map(ord, control_characters(outcome.stdout + outcome.stderr)))), outcome.describe())


@pytest.mark.parametrize("text", [case(text, id=name) for name, text in MARKUP.items()])
def test_markup_in_a_path_is_printed_literally_in_errors(text, world):
    missing = world.root / text
    message = assert_refused(invoke("eval", "--model", missing, *EVAL))
    assert str(missing) in message


@pytest.mark.parametrize("text", [case(text, id=name) for name, text in CONTROL.items()])
def test_control_characters_in_a_path_never_reach_the_terminal(text, world):
    outcome = invoke("eval", "--model", world.root / text, *EVAL)
    assert_refused(outcome)
    _no_control_characters(outcome)


def _npz_with_class(world, name: str):
    return f"npz:{write_tiny_npz(world.root / 'named.npz', classes=[name, 'b', 'c', 'd'])}"


def _folder_with_class(world, name: str):
    def image(path, index):
        return write_png(path, side=12, value=40 * index)

    root = world.root / "named-folder"
    write_folder(root, classes=(name, "b", "c", "d"), per_class=3, image=image)
    return f"folder:{root}"


@pytest.mark.parametrize("text", [case(text, id=name) for name, text in MARKUP.items()])
def test_markup_in_class_names_is_printed_literally(text, world):
    outcome = invoke("eval", "--model", world.run, "--data", _npz_with_class(world, text), "--per-class", *EVAL)
    assert_succeeded(outcome)
    assert text in outcome.stdout


@pytest.mark.parametrize("source", ["npz", "folder"])
@pytest.mark.parametrize("text", [case(text, id=name) for name, text in CONTROL.items()
                                  if "\n" not in text])
def test_control_characters_in_class_names_never_reach_the_terminal(text, source, world):
    spec = (_npz_with_class if source == "npz" else _folder_with_class)(world, text)
    outcome = invoke("eval", "--model", world.run, "--data", spec, "--per-class", *EVAL)
    assert_succeeded(outcome)
    _no_control_characters(outcome)


MATHTEXT = {"frac": r"$\frac$", "dangling-superscript": "$x^$", "unknown-macro": r"$\nosuchmacro$"}


@pytest.mark.parametrize("text", [case(text, id=name) for name, text in MATHTEXT.items()])
def test_class_names_are_not_parsed_as_mathtext_in_the_attack_grid(text, world):
    grid = world.root / "grid.png"
    outcome = invoke("attack", "--model", world.run, "--data", _npz_with_class(world, text), "--samples", 8,
                     "--iters", 1, "--device", "cpu", "--out", world.root / "adv.npz", "--grid", grid)
    assert_succeeded(outcome)
    assert grid.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("text", [case(text, id=name) for name, text in MARKUP.items()])
def test_markup_in_a_run_folder_name_is_printed_literally(text, world, monkeypatch):
    shutil.copytree(world.run, world.runs / text)
    monkeypatch.chdir(world.runs)  # a short relative path: the table title does not wrap inside it
    outcome = invoke("eval", "--model", text, *EVAL)
    assert_succeeded(outcome)
    assert text in outcome.stdout


@pytest.mark.parametrize("text", [case(text, id=name) for name, text in CONTROL.items()
                                  if "\n" not in text])
def test_control_characters_in_a_run_folder_name_never_reach_the_terminal(text, world):
    run = world.runs / text
    shutil.copytree(world.run, run)
    outcome = invoke("eval", "--model", run, *EVAL)
    assert_succeeded(outcome)
    _no_control_characters(outcome)


@pytest.mark.parametrize("text", [case(MARKUP["style-tag"], id="style-tag")])
def test_the_newest_run_announcement_prints_its_path_literally(text, world):
    runs = world.root / f"runs{text}"
    shutil.copytree(world.run, runs / "only")
    outcome = invoke("eval", "--runs-dir", runs, *EVAL)
    assert_succeeded(outcome)
    assert str(runs / "only") in _unwrapped(outcome.stderr)


@pytest.mark.parametrize("text", [case(MARKUP["closing-tag"], id="closing-tag")])
def test_training_reports_a_marked_up_run_path_literally(text, world):
    out = world.runs / text
    outcome = invoke("train", "--data", world.artifacts.spec, "--epochs", 1, "--device", "cpu", "--out", out)
    assert_succeeded(outcome)
    assert (out / "model.json").is_file() and str(out) in _unwrapped(outcome.stderr)


@pytest.mark.parametrize("text", [case(MATHTEXT["frac"], id="frac")])
def test_a_run_name_is_not_parsed_as_mathtext_in_the_curve_plot(text, world):
    run = world.runs / text
    shutil.copytree(world.run, run)
    plot = world.root / "curve.png"
    assert_succeeded(invoke("eval", "--model", run, *EVAL, "--eps", "0,0.1", "--plot", plot))
    assert plot.read_bytes()[:4] == b"\x89PNG"
