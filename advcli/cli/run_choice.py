"""Which run a command uses when none is named, said on stderr."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..errors import render_references
from .escaping import shown
from .failures import flag_names
from .render import err


def announce_run(model: Optional[str | Path], runs_dir: Path) -> Path:
    """The run a command uses: `model`, or the newest under `runs_dir`, said on stderr with the
    folders the search passed over (unusable or interrupted runs) and why."""
    from ..io.runs import newest_run

    if model is not None:
        return Path(model)
    search = newest_run(runs_dir)
    err.print(f"using the newest run: [bold]{shown(search.path)}[/]", highlight=False, soft_wrap=True)
    for path, reason in search.skipped:
        err.print(f"[yellow]note:[/] passed over {shown(path)}: {shown(render_references(reason, flag_names()))}",
                  highlight=False, soft_wrap=True)
    return search.path
