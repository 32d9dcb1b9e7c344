"""The ``advcli`` command line: parses options, calls the library, renders results.

Exit codes: 0 success; 1 a ``--min-*`` threshold was missed; 2 bad usage or bad input;
130 interrupted. Human-readable output and progress go to stderr; ``--json`` prints only JSON on
stdout. Only this package imports typer and rich; the library reports through callbacks.
"""

from .main import app, run

__all__ = ["app", "run"]
