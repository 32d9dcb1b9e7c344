"""The one exception family advcli raises for bad input, so callers and the command line can tell it apart.

Messages are one line. They name parameters by their Python names in backticks (`` `eps` ``), so the
command line can show its own flag for them (``--eps``) and a library caller the keyword it passed.
"""

from __future__ import annotations

import re
from typing import Callable, Optional

_REFERENCE = re.compile(r"`([a-z][a-z0-9_]*)`")


def render_references(text: str, name: Optional[Callable[[str], Optional[str]]] = None) -> str:
    """`text` on one line, with each `` `param` `` reference replaced by `name(param)` (left as it is
    where `name` is None or returns None). Warnings and notes use the same references as errors."""
    text = " ".join(text.split())
    if name is None:
        return text
    return _REFERENCE.sub(lambda match: name(match.group(1)) or match.group(0), text)


class AdvcliError(Exception):
    """A problem the user can fix: bad option, missing or malformed file, broken checkpoint.

    `param` names the parameter at fault, when there is one.
    """

    def __init__(self, message: str, *, param: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def render(self, name: Optional[Callable[[str], Optional[str]]] = None) -> str:
        """The message on one line, each `` `param` `` reference shown as `name(param)` gives it."""
        return render_references(self.message, name)


class DataError(AdvcliError):
    """A dataset could not be found or read, or its contents are malformed."""


class CheckpointError(AdvcliError):
    """A run folder or checkpoint is missing, incomplete or corrupt."""


class AttackError(AdvcliError):
    """An attack was asked for with invalid parameters, or produced an invalid result."""


class OutputError(AdvcliError):
    """A destination cannot be written, or writing to it failed (a full disk, a file size limit)."""
