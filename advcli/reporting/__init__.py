"""A shareable report of a run: one self-contained HTML file and a Markdown twin for PR comments.

``build_report(inputs)`` turns a run's model.json, history, evaluation, verification results and
adversarial examples into a :class:`Report`; ``write_html_report`` and ``write_markdown_report``
write it atomically. Only what the inputs hold is shown, and sections without data are left out.
Library code: no typer or rich, and matplotlib is imported only when a figure is drawn.
"""

from .._lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "Report": ".document",
    "ReportInputs": ".inputs",
    "check_verification": ".inputs",
    "load_examples": ".inputs",
    "load_report_inputs": ".inputs",
    "read_history_csv": ".inputs",
    "build_report": ".build",
    "report_inputs": ".sources",
    "render_html": ".html",
    "render_markdown": ".markdown",
    "write_html_report": ".writing",
    "write_markdown_report": ".writing",
    "write_report": ".writing",
})

__all__ = ["Report", "ReportInputs", "build_report", "report_inputs", "check_verification", "load_examples", "load_report_inputs",
           "read_history_csv", "render_html", "render_markdown", "write_html_report", "write_markdown_report",
           "write_report"]
