"""Help that reads well in 80 columns and in logs: plain text (option names whole, descriptions
wrapped beside them), a value name after every option that takes one and none after a flag.

Typer's panels cut long option names at 80 columns and label values by Python type (``<str>``,
``<bool>``); here choices are listed (``linf|l2``) and other values named (``EPS``, ``RUN``, ``N``).
Usage errors are left to Typer.
"""

from __future__ import annotations

import textwrap
from typing import Any

import typer.core

from ..threat import INITS

# Value names by parameter, where the parameter's own name would not say what to give.
VALUE_NAMES = {
    "data": "FORMAT[:PATH]", "model": "RUN", "source": "RUN", "resume": "RUN", "eps": "EPS",
    "target": "CLASS|random|least-likely|top-N", "init": "|".join(INITS.names()), "split": "train|test",
    "plot": "FILE.png", "grid": "FILE.png", "report_file": "FILE.json", "runs_dir": "DIR", "out_dir": "DIR",
    "out_file": "FILE",
}


def value_name(param: Any) -> str | None:
    """What the help shows after an option: its choices, a name for its value, or nothing for a flag."""
    if param.metavar is not None or getattr(param, "is_flag", False) or param.nargs == 0:
        return param.metavar
    descriptor = param.type_descriptor
    if descriptor.is_choice and descriptor.choices:
        return "|".join(str(getattr(choice, "value", choice)) for choice in descriptor.choices)
    if param.name in VALUE_NAMES:
        return VALUE_NAMES[param.name]
    annotation = getattr(descriptor, "annotation", None)
    if annotation is int or descriptor.is_ranged:
        return "N"
    if annotation is float:
        return "NUM"
    return str(param.name).upper().replace("_", "-")


def _definitions(formatter: Any, rows: Any, col_max: int = 30, col_spacing: int = 2) -> None:
    """Options or commands beside their descriptions, which wrap at spaces only (a flag such as
    ``--no-clip`` in a description is never split at its hyphens)."""
    rows = list(rows)
    first = min(max((len(name) for name, _ in rows), default=0), col_max) + col_spacing
    indent = " " * formatter.current_indent
    wrapper = textwrap.TextWrapper(max(formatter.width - first - 2 - formatter.current_indent, 10),
                                   break_on_hyphens=False)
    for name, text in rows:
        formatter.write(f"{indent}{name}")
        lines = wrapper.wrap(" ".join(text.split())) if text else []
        if not lines:
            formatter.write("\n")
            continue
        formatter.write(" " * (first - len(name)) if len(name) <= first - col_spacing else
                        "\n" + indent + " " * first)
        formatter.write(lines[0] + "\n")
        for line in lines[1:]:
            formatter.write(f"{indent}{' ' * first}{line}\n")


def _paragraphs(formatter: Any, text: str) -> None:
    """A description, paragraph by paragraph, wrapped at spaces only."""
    indent = " " * formatter.current_indent
    width = max(formatter.width - formatter.current_indent, 11)
    paragraphs = [" ".join(part.split()) for part in text.split("\n\n") if part.strip()]
    formatter.write("\n\n".join(textwrap.fill(part, width, initial_indent=indent, subsequent_indent=indent,
                                              break_on_hyphens=False) for part in paragraphs) + "\n")


def _plain_help(command: Any, ctx: Any, formatter: Any, base: type) -> None:
    mode, command.rich_markup_mode = command.rich_markup_mode, None
    formatter.write_dl = lambda rows, col_max=30, col_spacing=2: _definitions(formatter, rows, col_max, col_spacing)
    formatter.write_text = lambda text: _paragraphs(formatter, text)
    try:
        base.format_help(command, ctx, formatter)
    finally:
        command.rich_markup_mode = mode


class Command(typer.core.TyperCommand):
    """A command whose help is plain text with value names (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if isinstance(param, typer.core.TyperOption):
                param.metavar = value_name(param)
            elif isinstance(param, typer.core.TyperArgument) and param.metavar is not None:
                param.display_type_rich = lambda ctx: None  # its metavar says it all

    def format_help(self, ctx: Any, formatter: Any) -> None:
        _plain_help(self, ctx, formatter, typer.core.TyperCommand)


class Group(typer.core.TyperGroup):
    """The command group, with the same plain help; each command's summary is its whole first
    paragraph, wrapped, not a sentence cut short."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        _plain_help(self, ctx, formatter, typer.core.TyperGroup)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, " ".join((command.help or "").split("\n\n")[0].split())))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
