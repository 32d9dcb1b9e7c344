"""Making strings from users or data safe to show: control characters out, then HTML or Markdown escaping.

Class names, paths and data specs end up in a report that someone else opens; a name such as
``<script>`` or ``[click](http://x)`` must show as those characters and never act as markup.
"""

from __future__ import annotations

import html
import re
import unicodedata

# Format characters that reorder or hide text (bidirectional overrides and isolates, zero-width marks).
_HIDING = set("\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff")
# Markdown punctuation that can open markup anywhere in a line, with GitHub's extensions:
# tables (|), strikethrough (~), mentions (@), issue references (#). Parentheses, "!" and "+"
# need no escape once brackets are escaped and nothing starts a line.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]#|~@])")
# Autolinks (scheme://, www.) and emoji shortcodes (:name:) that GitHub would render.
_AUTOLINK = re.compile(r"(?<=\w):(?=//)|(?<=\bwww)\.|:(?=[\w+-]+:)")
# What would open a block (list item, setext heading, ordered list) at the start of a line.
_LINE_START = re.compile(r"^(\s*)(?:([-+=])|(\d+)\.(?=\s|$))")


def clean_text(value: object) -> str:
    """``str(value)`` without control characters (line breaks become spaces) or text-hiding marks."""
    text = str(value)
    out = []
    for char in text:
        if char in "\t\n\r\x0b\x0c":
            out.append(" ")
        elif unicodedata.category(char) == "Cc" or char in _HIDING:
            continue
        else:
            out.append(char)
    return "".join(out)


def html_text(value: object) -> str:
    """Text for HTML content or a quoted attribute value."""
    return html.escape(clean_text(value), quote=True)


def markdown_text(value: object) -> str:
    """Text for a Markdown paragraph or table cell: it renders as itself, never as markup.

    HTML-significant characters become entities, Markdown punctuation is backslash-escaped, and
    ``$`` (which opens math on GitHub, where a backslash does not always stop it) is wrapped in a span.
    """
    text = html.escape(clean_text(value), quote=False)
    text = _MARKDOWN_SPECIAL.sub(r"\\\1", text)
    text = _AUTOLINK.sub(lambda m: "\\" + m.group(0), text)
    text = _LINE_START.sub(lambda m: m.group(1) + (f"\\{m.group(2)}" if m.group(2) else f"{m.group(3)}\\."), text)
    return text.replace("$", "<span>$</span>")


def shorten(text: str, limit: int) -> str:
    """`text` cut to `limit` characters with an ellipsis, so one odd value cannot blow up a table."""
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"
