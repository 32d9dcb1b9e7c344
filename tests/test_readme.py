"""The docs cannot drift from the command line: every `advcli` command in the fenced sh/bash blocks of
README.md and docs/results.md
names a command that exists, options that command has, and valid choices, with a value after every
option that takes one and none after a flag."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer

from advcli.cli import app

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = (README, REPO / "docs" / "results.md")
SHELL_BLOCK = re.compile(r"^```(?:sh|bash)\n(.*?)^```", re.MULTILINE | re.DOTALL)
OPERATORS = {"|", "||", "&&", ";", ">", ">>", "2>", "<", "&"}


def shell_commands(text: str) -> list[str]:
    """Every command line of the fenced sh/bash blocks, continuation lines joined, comments dropped."""
    commands = []
    for block in SHELL_BLOCK.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip() if not line.lstrip().startswith("#") else ""
            if line:
                commands.append(line)
    return commands


def advcli_invocations(command: str) -> list[list[str]]:
    """The argument lists given to advcli in one shell line (`advcli ...` or `python -m advcli ...`),
    each up to the first shell operator."""
    words = shlex.split(command, comments=False)
    found, current = [], None
    for word in words:
        if current is not None:
            if word in OPERATORS or word.startswith((">", "2>")):
                found.append(current)
                current = None
            else:
                current.append(word)
        elif word == "advcli":
            current = []
    if current is not None:
        found.append(current)
    return found


def check_invocation(args: list[str]) -> list[str]:
    """What is wrong with `advcli <args>` against the real command line (empty: nothing)."""
    group = typer.main.get_command(app)
    if not args or args[0].startswith("-"):
        options = {opt for param in group.params for opt in param.opts}
        return [f"unknown option {a}" for a in args if a.startswith("-") and a not in options]
    command = group.commands.get(args[0])
    if command is None:
        return [f"unknown command {args[0]!r}"]
    options = {opt: param for param in command.params for opt in [*param.opts, *getattr(param, "secondary_opts", [])]}
    problems, rest = [], iter(args[1:])
    for word in rest:
        if not word.startswith("-"):
            if not any(isinstance(p, typer.core.TyperArgument) for p in command.params):
                problems.append(f"{args[0]}: stray value {word!r}")
            continue
        name, _, inline = word.partition("=")
        param = options.get(name)
        if param is None:
            problems.append(f"{args[0]}: unknown option {name}")
            continue
        if getattr(param, "is_flag", False):
            continue
        value = inline or next(rest, None)
        if value is None or value.startswith("--"):
            problems.append(f"{args[0]}: {name} needs a value")
            continue
        descriptor = getattr(param, "type_descriptor", None)
        choices = [str(getattr(c, "value", c)) for c in descriptor.choices or ()] if descriptor.is_choice else []
        if choices and value not in choices:
            problems.append(f"{args[0]}: {name} {value!r} is not one of {', '.join(map(str, choices))}")
    return problems


def readme_invocations() -> list[tuple[str, list[str]]]:
    return [(command, args) for doc in DOCS for command in shell_commands(doc.read_text())
            for args in advcli_invocations(command)]


def test_the_readme_has_commands_to_check():
    assert len(readme_invocations()) >= 10


@pytest.mark.parametrize("command, args", readme_invocations(), ids=lambda value: " ".join(value)[:60]
                         if isinstance(value, list) else None)
def test_every_readme_command_exists_with_its_options_and_choices(command, args):
    assert check_invocation(args) == [], command


@pytest.mark.parametrize("args, problem", [
    (["evaluate"], "unknown command 'evaluate'"),
    (["eval", "--atack", "bim"], "unknown option --atack"),
    (["eval", "--attack", "cw"], "'cw' is not one of"),
    (["eval", "--norm"], "--norm needs a value"),
    (["robust-train", "[--method", "pgd]"], "stray value '[--method'"),
])
def test_the_checker_catches_drift(args, problem):
    assert any(problem in found for found in check_invocation(args)), check_invocation(args)
