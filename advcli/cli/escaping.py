"""The one way text from users or data reaches the terminal: paths, dataset specs, class names, and
library messages that quote them.

Such text may hold Rich markup (``x[/]y`` would break the line it is printed in, ``[red]`` would
vanish) and control characters (an escape sequence in a file name can clear the screen, retitle the
window or forge output; a newline splits a one-line message). :func:`shown` makes it safe to put
inside our own markup: control characters, line separators and bidirectional overrides are written
as escapes (``\\x1b``, ``\\n``, ``\\u202e``) and markup is escaped, so it prints exactly as it is.
"""

from __future__ import annotations

import unicodedata

from rich.markup import escape

_BIDI_CONTROLS = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _hidden(character: str) -> bool:
    return unicodedata.category(character) in ("Cc", "Zl", "Zp") or character in _BIDI_CONTROLS


def visible(text: object) -> str:
    """`text` with every control character, line or paragraph separator and bidirectional control
    written as a Python escape, so that what reaches the terminal is what the text holds."""
    text = str(text)
    if not any(_hidden(character) for character in text):
        return text
    return "".join(character.encode("unicode_escape").decode("ascii") if _hidden(character) else character
                   for character in text)


def shown(text: object) -> str:
    """`text` ready to be placed inside Rich markup: visible, and its own markup escaped."""
    return escape(visible(text))
