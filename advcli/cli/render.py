"""What the command line shows: messages and progress on stderr, tables and JSON on stdout.

Every piece of text that comes from users or data goes through :func:`advcli.cli.escaping.shown`.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any, Optional, Sequence

import typer
from rich.console import Console
from rich.table import Table

from .escaping import shown

if TYPE_CHECKING:
    from ..evaluation.report import EvalReport
    from ..verification.report import VerifyReport

err = Console(stderr=True)
out = Console()


def error_line(message: str) -> None:
    """Print `message` (plain text, on one line) as the ``error:`` line on stderr."""
    err.print(f"[bold red]error:[/] {shown(' '.join(message.split()))}", highlight=False, soft_wrap=True)


def fail(message: str, code: int) -> None:
    """Print `message` as one error line on stderr and exit with `code`."""
    error_line(message)
    raise typer.Exit(code)


def _as_flags(text: str) -> str:
    """`text` with its `` `param` `` references shown as the running command's flags, markup escaped."""
    from rich.markup import escape

    from ..errors import render_references
    from .flags import flag_names

    return escape(render_references(text, flag_names()))


def say_notes(notes: Sequence[Optional[str]]) -> None:
    for note in notes:
        if note:
            err.print(f"[yellow]note:[/] {shown(_as_flags(note))}", highlight=False, soft_wrap=True)


def say_warnings(warnings: Sequence[Optional[str]]) -> None:
    for warning in warnings:
        if warning:
            err.print(f"[bold yellow]warning:[/] {shown(_as_flags(warning))}", highlight=False, soft_wrap=True)


def trust_warning(model: Optional[str]) -> None:
    """Said before a trusted pickled program is loaded: loading it runs the code the file holds."""
    from pathlib import Path

    from ..runtime.loading import PICKLED_BACKENDS, sniff_pickled

    if model is None or not Path(model).is_file() or sniff_pickled(Path(model)) not in PICKLED_BACKENDS:
        return
    err.print("[bold red]warning:[/] --trust-pickled-model: a TorchScript or torch.export file is loaded by running "
              "code from the file itself; do this only with files you trust", highlight=False, soft_wrap=True)


WHITE_BOX_MODES = {"native": "white-box on its own gradients", "converted": "white-box on the converted file",
                   "transfer": "white-box attacks transferred", "black-box": "black-box only"}


def print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2) + "\n")


def precision_note(precision: str) -> str:
    if precision == "fp32":
        return "fp32"
    return f"attack gradients in {precision}, accuracies classified in fp32"


def attack_label(a: Any) -> str:
    label = a.name + ("" if a.clip else " (no clip)") + ("" if a.norm == "linf" else f" ({a.norm})")
    return label + (f" → {a.target}" if a.target is not None else "")


def render_report(report: "EvalReport") -> None:
    runs_on = report.backend + (f" on {', '.join(report.execution_providers)}" if report.execution_providers else
                                f" on {report.device}") + f"; {precision_note(report.precision)}"
    mode = (report.white_box or {}).get("mode")
    runs_on += f"; {WHITE_BOX_MODES[mode]}" if mode in WHITE_BOX_MODES else ""
    table = Table(title=f"{shown(report.model)} on {shown(report.data)} ({report.split}, {report.samples} samples)",
                  caption=shown(runs_on))
    for column in ("evaluation", "eps", "alpha", "iters", "restarts", "init", "accuracy"):
        table.add_column(column, justify="right" if column != "evaluation" else "left")
    table.add_row("clean", "", "", "", "", "", f"{report.clean_accuracy:.4f}")
    for result in report.attacks:
        a = result.attack
        table.add_row(shown(result.label), f"{a.eps:g}", f"{a.alpha:g}", str(a.iters),
                      str(a.restarts), a.init, f"{result.robust_accuracy:.4f}")
        for member in result.members:
            table.add_row(f"  [dim]{member['name']}" + (f" → {member['target']}" if member["target"] else ""),
                          "", "", "", "", "", f"[dim]fooled {member['fooled']}")
    if len(report.attacks) > 1:
        table.add_row("[bold]worst case", "", "", "", "", "", f"[bold]{report.robust_accuracy:.4f}")
    out.print(table)
    if len(report.curve) > 1:
        _render_curve(report)
    if report.per_class is not None:
        _render_per_class(report)
    _render_sanity(report)
    for failure in report.failures:
        err.print(f"[bold red]threshold missed:[/] {shown(failure)}", highlight=False)


def _render_curve(report: "EvalReport") -> None:
    several = len(report.attacks) > 1
    table = Table(title=f"Robust accuracy against eps ({report.config.threats.norm})")
    table.add_column("eps", justify="right")
    for result in report.attacks:
        table.add_column(shown(attack_label(result.attack)), justify="right")
    if several:
        table.add_column("worst case", justify="right")
    for point in report.curve:
        cells = [f"{result.robust_accuracy:.4f}" for result in point.attacks]
        table.add_row(f"{point.eps:g}", *cells, *([f"[bold]{point.robust_accuracy:.4f}"] if several else []))
    out.print(table)


def _render_per_class(report: "EvalReport") -> None:
    several = len(report.attacks) > 1
    table = Table(title=f"Per class at eps {report.curve[-1].eps:g}")
    for column in ("class", "samples", "clean", *(shown(attack_label(r.attack)) for r in report.attacks)):
        table.add_column(column, justify="left" if column == "class" else "right")
    if several:
        table.add_column("worst case", justify="right")

    def cell(value: Optional[float]) -> str:
        return "–" if value is None else f"{value:.4f}"

    for row in report.per_class or []:
        cells = [cell(row.attacks[r.attack.name]) for r in report.attacks]
        table.add_row(shown(row.name if row.name == str(row.index) else f"{row.index} {row.name}"), str(row.samples),
                      cell(row.clean_accuracy), *cells, *([f"[bold]{cell(row.robust_accuracy)}"] if several else []))
    out.print(table)


def _render_sanity(report: "EvalReport") -> None:
    fired = [check for check in report.sanity if check.fired]
    for check in fired:
        out.print(f"[bold yellow]sanity check fired:[/] [bold]{check.name}[/]: {shown(check.detail)}", highlight=False)
    if not fired:
        unchecked = sum(not check.checked for check in report.sanity)
        out.print("[green]all sanity checks passed[/]" + (f" ({unchecked} not checked)" if unchecked else ""),
                  highlight=False)


def render_verification(report: "VerifyReport") -> None:
    """Verdict counts and accuracies per radius; per class when asked; missed thresholds."""
    bounds = report.config.bounds
    attacks = ", ".join(attack.name for attack in report.attacks) or "none"
    table = Table(title=f"{report.model} on {report.data} ({report.split}, {report.samples} samples): "
                        f"{bounds.method} (intermediate {bounds.resolved_intermediate})",
                  caption=f"clean accuracy {report.clean_accuracy:.4f}; counterexample attacks: {attacks}; "
                          f"on {report.device}; {precision_note(report.precision)}")
    for column in ("eps", "verified", "violated", "unproven", "certified", "attacked", "seconds"):
        table.add_column(column, justify="right")
    for point in report.curve:
        table.add_row(f"{point.eps:g}", str(point.verified), str(point.violated), str(point.unproven),
                      f"[bold]{point.certified_accuracy:.4f}", f"{point.robust_accuracy:.4f}",
                      f"{point.attack_seconds + point.bound_seconds:.1f}")
    out.print(table)
    if report.per_class is not None:
        classes = Table(title=f"Per class: certified / attacked accuracy at eps {report.curve[-1].eps:g}")
        for column in ("class", "samples", "clean", "certified", "attacked"):
            classes.add_column(column, justify="left" if column == "class" else "right")
        for row in report.per_class:
            cells = ["–" if value is None else f"{value:.4f}"
                     for value in (row.clean_accuracy, row.certified[-1], row.robust[-1])]
            classes.add_row(row.name if row.name == str(row.index) else f"{row.index} {row.name}", str(row.samples),
                            *cells)
        out.print(classes)
    for failure in report.failures:
        err.print(f"[bold red]threshold missed:[/] {failure}", highlight=False)
