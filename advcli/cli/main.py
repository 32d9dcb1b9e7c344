"""The Typer application and the console entry point.

Commands import the library inside their bodies, so ``advcli --help`` and usage errors answer
without loading torch. Usage errors (an unknown option, a bad choice, a value out of range) are one
line ``error: ...`` and exit 2, as every other bad input is: the application's group does that
itself, so the console entry point and Typer's CliRunner behave alike.
"""

from __future__ import annotations

import sys
from typing import Any, Optional, Sequence

import typer

from .._version import __version__
from .commands import attack, evaluate, export, report, train, verify
from .failures import EXIT_USAGE
from .help import Command, Group
from .render import error_line, out

# Click's exception for anything it refuses (typer vendors Click; its class is reached through
# typer's public BadParameter rather than typer's private modules).
_CLICK_EXCEPTION = next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException")


def usage_message(error: Exception) -> str:
    """Click's message for a usage error, on one line, with where to read the command's options."""
    message = " ".join(error.format_message().split())  # type: ignore[attr-defined]
    context = getattr(error, "ctx", None)
    if context is not None and context.command.get_help_option(context) is not None:
        message += f" (see: {context.command_path} {context.help_option_names[0]})"
    return message


class OneLineErrors(Group):
    """The application's group: runs as Typer does, but prints Click's usage errors as one
    ``error:`` line (exit 2) instead of a usage box, and turns its exit codes into the process's."""

    def main(self, args: Optional[Sequence[str]] = None, prog_name: Optional[str] = None,
             complete_var: Optional[str] = None, standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _CLICK_EXCEPTION as error:
            if type(error).__name__ != "NoArgsIsHelpError":  # that one has printed the help already
                error_line(usage_message(error))
            sys.exit(getattr(error, "exit_code", EXIT_USAGE))
        except typer.Abort:
            error_line("aborted")
            sys.exit(1)
        # Without standalone mode, Typer returns an Exit's code (Ctrl-C outside a command is 130)
        # and a command's return value otherwise; our commands return None.
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="advcli",
    cls=OneLineErrors,
    help="Train image classifiers robust to adversarial examples, attack them, measure and export them.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)


def _version(value: bool) -> None:
    if value:
        out.print(f"advcli {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", "-V", callback=_version, is_eager=True,
                                 help="Show the version and exit."),
) -> None:
    """advcli: adversarial robustness from the command line."""


for _command in (train, attack, evaluate, verify, export, report):
    _command.register(app)
for _info in app.registered_commands:
    _info.cls = Command


def run() -> None:
    """Console-script entry point. The process is ours, so freed memory is kept for reuse (see
    :func:`advcli.runtime.keep_freed_memory`; ``ADVCLI_KEEP_FREED_MEMORY=0`` turns that off)."""
    from ..runtime.memory import keep_freed_memory

    keep_freed_memory()
    app(prog_name="advcli")  # also under `python -m advcli`, so usage lines and completion say advcli
