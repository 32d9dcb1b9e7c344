"""The Typer application and the console entry point.

Commands import the library inside their bodies, so ``advcli --help`` and usage errors answer
without loading torch.
"""

from __future__ import annotations

import typer

from .._version import __version__
from .commands import attack, evaluate, export, train, verify
from .render import out

app = typer.Typer(
    name="advcli",
    help="Train image classifiers robust to adversarial examples, attack them, measure and export them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        out.print(f"advcli {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    """advcli: adversarial robustness from the command line."""


for _command in (train, attack, evaluate, verify, export):
    _command.register(app)


def run() -> None:
    """Console-script entry point. The process is ours, so freed memory is kept for reuse (see
    :func:`advcli.runtime.keep_freed_memory`; ``ADVCLI_KEEP_FREED_MEMORY=0`` turns that off)."""
    from ..runtime.memory import keep_freed_memory

    keep_freed_memory()
    app()
