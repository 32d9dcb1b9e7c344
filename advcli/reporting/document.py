"""The report as plain data: sections of facts, tables, figures and example cards.

Builders fill these with raw strings and numbers; the HTML and Markdown writers escape every
string as they render it, so no builder can forget to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

#: Cell and line states. Each is shown by a symbol as well as a colour, so it survives print and colour blindness.
GOOD, BAD, WARN, MUTED = "good", "bad", "warn", "muted"
SYMBOLS = {GOOD: "✓", BAD: "✗", WARN: "⚠", MUTED: "○"}


@dataclass
class Cell:
    """One table cell; `status` marks it good, bad, warn or muted (symbol and colour)."""

    text: str
    status: Optional[str] = None
    numeric: bool = False
    code: bool = False  # a hash or path: monospace, may wrap anywhere
    strong: bool = False


@dataclass
class Table:
    headers: list[str]
    rows: list[list[Cell]]
    caption: Optional[str] = None


@dataclass
class Facts:
    """Label/value pairs (the model card, an evaluation's settings)."""

    items: list[tuple[str, Cell]]


@dataclass
class Paragraph:
    text: str


@dataclass
class Notice:
    """A line that must not be missed: a failed threshold, an inconsistency, an unchecked link."""

    text: str
    status: str = WARN


@dataclass
class Figure:
    """A PNG figure; `name` is its file stem next to the Markdown report."""

    name: str
    png: bytes
    alt: str
    caption: str


@dataclass
class ExampleCard:
    """One adversarial example: labels, predictions and three PNG panels (clean, adversarial, perturbation)."""

    index: int
    true_label: str
    clean_prediction: str
    adversarial_prediction: str
    clean_correct: bool
    adversarial_correct: bool
    clean_png: bytes
    adversarial_png: bytes
    perturbation_png: bytes
    strip_png: bytes  # the three panels side by side, for the Markdown twin
    perturbation: float  # largest absolute pixel change
    target: Optional[str] = None
    target_reached: Optional[bool] = None


@dataclass
class ExampleGrid:
    cards: list[ExampleCard]
    magnification: int
    caption: str


Block = Union[Paragraph, Notice, Facts, Table, Figure, ExampleGrid]


@dataclass
class Section:
    """A titled part of the report; `key` names it in anchors and tests (``model-card``, ``training``...)."""

    key: str
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Headline:
    """A figure shown large at the top of the report."""

    label: str
    value: str
    detail: str = ""
    status: Optional[str] = None


@dataclass
class Report:
    title: str
    subtitle: str
    headlines: list[Headline]
    sections: list[Section]

    def section(self, key: str) -> Optional[Section]:
        return next((section for section in self.sections if section.key == key), None)
