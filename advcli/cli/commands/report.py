"""``advcli report``: one self-contained HTML page about a run (and its Markdown twin) to share.

Without ``--eval`` nothing is evaluated: the report shows what the run holds (model card, training)
and says how to add an evaluation, so every figure in it comes with the settings that measured it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ...errors import AdvcliError
from ..failures import handles_errors
from ..options import JsonOpt, RunsDirOpt
from ..render import err, print_json


def report_command(
    target: Optional[str] = typer.Argument(
        None, metavar="RUN|FILE.onnx", show_default=False,
        help="Run folder or exported .onnx file (default: the newest run under --runs-dir)."),
    evaluation: Optional[Path] = typer.Option(
        None, "--eval", metavar="REPORT.json",
        help="An evaluation to include, as advcli eval --report REPORT.json writes it. Without it the report "
             "shows what the run holds and runs no attack."),
    examples: Optional[Path] = typer.Option(None, "--examples", metavar="FILE.npz",
                                            help="Adversarial examples from advcli attack, shown as a grid."),
    verification: Optional[Path] = typer.Option(None, "--verification", metavar="FILE.json",
                                                help="Verification results to include (certified accuracy per eps)."),
    source: Optional[str] = typer.Option(None, "--source", metavar="RUN",
                                         help="For an ONNX file: the run it was exported from (default: the run "
                                              "named in its metadata)."),
    out: Optional[Path] = typer.Option(None, "--out", metavar="FILE.html",
                                       help="HTML file to write (default: <run>/report.html, or "
                                            "<file>.report.html beside an ONNX file)."),
    markdown: bool = typer.Option(True, "--markdown/--no-markdown",
                                  help="Also write the Markdown twin FILE.md, its images in FILE_files/."),
    title: Optional[str] = typer.Option(None, "--title", help="Title of the report."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace report files that exist."),
    runs_dir: Path = RunsDirOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Write a shareable report: one self-contained HTML page (and a Markdown twin for pull requests)
    with the model card, training, accuracy, curves, per-class figures, sanity checks and examples."""
    from ...reporting import build_report, report_inputs, write_report

    if out is not None and out.suffix.lower() != ".html":
        raise AdvcliError(f"`out` must end in .html, got {out}", param="out")
    inputs, default = report_inputs(target, runs_dir=runs_dir, evaluation=evaluation, examples=examples,
                                    verification=verification, title=title, source=source)
    if target is None:
        err.print(f"using the newest run: [bold]{default.parent}[/]", highlight=False)
    html = out or default
    report = build_report(inputs)
    written = {kind: str(path) for kind, path in write_report(report, html, markdown=markdown,
                                                              overwrite=overwrite).items()}
    if as_json:
        print_json({**written, "sections": [section.key for section in report.sections]})
        return
    err.print(f"wrote [bold]{written['html']}[/]" + (f" and [bold]{written['markdown']}[/] (images in "
                                                     f"{html.with_suffix('').name}_files/)" if markdown else ""),
              highlight=False, soft_wrap=True)
    if inputs.evaluation is None:
        err.print("[yellow]note:[/] no evaluation included; advcli eval --report eval.json writes one for --eval",
                  highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("report")(handles_errors(report_command))
