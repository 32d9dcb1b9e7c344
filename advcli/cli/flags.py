"""The running command's flags, by the library parameter names that errors, notes and warnings use."""

from __future__ import annotations

from typing import Callable, Optional

_FLAGS: dict[str, str] = {}  # library parameter name -> the running command's flag for it (set per command)


def flag_names() -> Callable[[str], Optional[str]]:
    """Map a library parameter name (as errors and warnings reference it) to the running command's
    flag for it, or to the plain name when the command has no such flag."""
    flags = dict(_FLAGS)
    return lambda name: flags.get(name, name)
