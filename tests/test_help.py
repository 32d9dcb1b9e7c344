"""Help for a newcomer: -h and -V, plain text that fits 80 columns with every option name whole, a
value name after each option that takes a value (never <str> or <bool>), none after a flag, and
shell completion that answers without torch."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from advcli._version import __version__
from advcli.cli import app

REPO = Path(__file__).resolve().parents[1]
COMMANDS = ["train", "robust-train", "attack", "eval", "export", "report"]
OPTION_LINE = re.compile(r"^  (?:-\w, )?(?P<names>--[\w-]+(?: / --[\w-]+)?)(?: (?P<value>\S+))?(?:  |$)")


def help_text(*args: str) -> str:
    result = CliRunner().invoke(app, [*args], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    return result.output


def command_params(name: str) -> list:
    group = typer.main.get_command(app)
    return [param for param in group.commands[name].params
            if isinstance(param, typer.core.TyperOption) and not param.hidden]


@pytest.mark.parametrize("command", [[], *([name] for name in COMMANDS)])
def test_short_help_flag_is_the_long_one(command):
    assert help_text(*command, "-h") == help_text(*command, "--help")


def test_short_version_flag():
    assert CliRunner().invoke(app, ["-V"]).output.strip() == f"advcli {__version__}"


@pytest.mark.parametrize("command", COMMANDS)
def test_help_fits_80_columns_with_every_option_whole(command):
    text = help_text(command, "--help")
    assert max(len(line) for line in text.splitlines()) <= 80
    lines = [OPTION_LINE.match(line) for line in text.splitlines()]
    shown = {match.group("names") for match in lines if match}
    for param in command_params(command):
        names = " / ".join([*(o for o in param.opts if o.startswith("--")), *param.secondary_opts])
        assert names in shown, (names, sorted(shown))


@pytest.mark.parametrize("command", COMMANDS)
def test_values_are_named_and_flags_take_none(command):
    text = help_text(command, "--help")
    assert not re.search(r"<(bool|str|int|float|path|list)", text)
    values = {match.group("names"): match.group("value") for match in map(OPTION_LINE.match, text.splitlines())
              if match}
    for param in command_params(command):
        names = " / ".join([*(o for o in param.opts if o.startswith("--")), *param.secondary_opts])
        if param.is_flag:
            assert values[names] is None, names
        else:
            assert values[names] and not values[names].startswith("<"), (names, values[names])


def test_choices_are_listed_from_the_registries():
    from advcli.attacks import ATTACKS
    from advcli.threat import NORMS

    text = help_text("eval", "--help")
    assert f"--attack {'|'.join(ATTACKS.names())}" in text and f"--norm {'|'.join(NORMS.names())}" in text


def test_the_main_help_lists_completion_and_whole_command_summaries():
    text = help_text("--help")
    assert "--install-completion" in text and "--show-completion" in text
    commands = text.split("Commands:", 1)[1]
    assert "..." not in commands and "Adversarial training (FGSM from a random start" in commands
    assert "processes sharing each mini-batch." in commands  # summaries wrap rather than being cut short


COMPLETE = """
import os, sys
os.environ.update({"_ADVCLI_COMPLETE": "complete_bash", "COMP_WORDS": sys.argv[1], "COMP_CWORD": sys.argv[2]})
sys.argv = ["advcli"]
from advcli.cli.main import run
try:
    run()
except SystemExit:
    pass
print("torch loaded" if "torch" in sys.modules else "no torch", file=sys.stderr)
"""


@pytest.mark.parametrize("words, index, expected", [
    ("advcli ev", "1", {"eval"}),
    ("advcli eval --attack ap", "3", {"apgd-ce", "apgd-dlr"}),
    ("advcli eval --norm ", "3", {"linf", "l2"}),
])
def test_shell_completion_answers_without_torch(words, index, expected):
    result = subprocess.run([sys.executable, "-c", COMPLETE, words, index], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert set(result.stdout.split()) == expected, result
    assert result.stderr.strip().splitlines()[-1] == "no torch"
