"""The report as Markdown for a pull-request comment, with its images as PNG files in a folder
beside it (or left out, with a note). Every string is escaped here, as it is written."""

from __future__ import annotations

from typing import Optional

from .._version import __version__
from .document import (
    BAD,
    GOOD,
    SYMBOLS,
    WARN,
    Block,
    Cell,
    ExampleGrid,
    Facts,
    Figure,
    Notice,
    Paragraph,
    Report,
    Table,
)
from .text import markdown_text as esc

OMITTED = "Images are left out of this Markdown version; the HTML report holds them all."


def _cell(cell: Cell) -> str:
    text = esc(cell.text)
    if cell.status in SYMBOLS:
        text = f"{SYMBOLS[cell.status]} {text}"
    return f"**{text}**" if cell.strong else text


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(table: Table) -> list[str]:
    numeric = [bool(table.rows) and all(row[i].numeric for row in table.rows if i < len(row))
               for i in range(len(table.headers))]
    lines = [_row([esc(h) for h in table.headers]), _row(["---:" if n else "---" for n in numeric])]
    lines += [_row([_cell(cell) for cell in row]) for row in table.rows]
    if table.caption:
        lines += ["", f"*{esc(table.caption)}*"]
    return lines


def _facts(facts: Facts) -> list[str]:
    return [_row(["", ""]), _row(["---", "---"])] + [_row([f"**{esc(label)}**", _cell(value)]) for label, value in facts.items]


def _image(folder: Optional[str], name: str, alt: str, files: dict[str, bytes], png: bytes) -> str:
    files[f"{name}.png"] = png
    return f"![{esc(alt)}]({folder}/{name}.png)"


def _examples(grid: ExampleGrid, folder: Optional[str], files: dict[str, bytes]) -> list[str]:
    targeted = any(card.target is not None for card in grid.cards)
    headers = ["#", "true label", "clean", "adversarial"] + (["target"] if targeted else [])
    if folder is not None:
        headers.append(f"clean · adversarial · perturbation ×{grid.magnification}")
    lines = [esc(grid.caption), "", _row([esc(h) for h in headers]), _row(["---:"] + ["---"] * (len(headers) - 1))]
    for card in grid.cards:
        cells = [str(card.index), esc(card.true_label),
                 f"{SYMBOLS[GOOD if card.clean_correct else BAD]} {esc(card.clean_prediction)}",
                 f"{SYMBOLS[GOOD if card.adversarial_correct else BAD]} {esc(card.adversarial_prediction)}"]
        if targeted:
            outcome = ("reached" if card.target_reached else "missed") if card.target_reached is not None else "not attacked"
            cells.append(f"{esc(card.target)} ({outcome})" if card.target is not None else "—")
        if folder is not None:
            cells.append(_image(folder, f"example-{card.index}", f"example {card.index}", files, card.strip_png))
        lines.append(_row(cells))
    return lines


def _block(block: Block, folder: Optional[str], files: dict[str, bytes]) -> list[str]:
    if isinstance(block, Paragraph):
        return [esc(block.text)]
    if isinstance(block, Notice):
        return [f"> {SYMBOLS.get(block.status, SYMBOLS[WARN])} {esc(block.text)}"]
    if isinstance(block, Facts):
        return _facts(block)
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, Figure):
        if folder is None:
            return [f"*{esc(block.caption)}* (image left out)"]
        return [_image(folder, block.name, block.alt, files, block.png), "", f"*{esc(block.caption)}*"]
    if isinstance(block, ExampleGrid):
        return _examples(block, folder, files)
    raise TypeError(f"unknown report block {type(block).__name__}")


def render_markdown(report: Report, image_folder: Optional[str]) -> tuple[str, dict[str, bytes]]:
    """The Markdown text and the PNG files it links to (name -> bytes) under `image_folder`, a path
    relative to the Markdown file; with `image_folder` None the images are left out, with a note."""
    files: dict[str, bytes] = {}
    lines = [f"# {esc(report.title)}", "", esc(report.subtitle), ""]
    lines += [" · ".join(f"**{esc(h.label)}:** {SYMBOLS[h.status] + ' ' if h.status in (GOOD, BAD) else ''}"
                         f"{esc(h.value)} ({esc(h.detail)})" if h.detail else f"**{esc(h.label)}:** {esc(h.value)}"
                         for h in report.headlines), ""]
    if image_folder is None:
        lines += [f"> {esc(OMITTED)}", ""]
    for section in report.sections:
        lines += [f"## {esc(section.title)}", ""]
        for block in section.blocks:
            lines += _block(block, image_folder, files) + [""]
    lines.append(f"*Made by advcli {esc(__version__)}.*")
    return "\n".join(lines) + "\n", files
