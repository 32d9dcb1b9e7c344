"""The report as one self-contained HTML page: inline CSS, images as PNG data URIs, no script,
nothing fetched from anywhere. Every string is escaped here, as it is written."""

from __future__ import annotations

import base64

from .._version import __version__
from .document import (
    BAD,
    GOOD,
    MUTED,
    SYMBOLS,
    WARN,
    Block,
    Cell,
    ExampleCard,
    ExampleGrid,
    Facts,
    Figure,
    Headline,
    Notice,
    Paragraph,
    Report,
    Section,
    Table,
)
from .text import html_text as esc

CSS = """
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --soft: #f6f8fa; --accent: #0969da;
        --good: #1a7f37; --bad: #cf222e; --warn: #9a6700; --good-bg: #dafbe1; --bad-bg: #ffebe9; --warn-bg: #fff8c5; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); background: #fff; font: 15px/1.5 -apple-system, "Segoe UI", "Noto Sans",
       Helvetica, Arial, sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 28px 32px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 36px 0 12px; padding-bottom: 6px; border-bottom: 1px solid var(--line); }
.subtitle { color: var(--muted); margin: 0 0 20px; }
.headlines { display: flex; flex-wrap: wrap; gap: 12px; }
.headline { flex: 1 1 200px; border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; background: var(--soft); }
.headline .label { color: var(--muted); font-size: 13px; text-transform: uppercase; letter-spacing: .04em; }
.headline .value { font-size: 30px; font-weight: 600; line-height: 1.2; }
.headline .detail { color: var(--muted); font-size: 13px; }
.headline.good .value { color: var(--good); } .headline.bad .value { color: var(--bad); }
.headline.muted .value { color: var(--muted); }
nav.toc { margin: 18px 0 0; font-size: 14px; } nav.toc a { color: var(--accent); margin-right: 14px; text-decoration: none; }
table { border-collapse: collapse; margin: 8px 0; font-size: 14px; }
th, td { border: 1px solid var(--line); padding: 5px 10px; text-align: left; vertical-align: top; }
th { background: var(--soft); font-weight: 600; }
tbody tr:nth-child(even) td { background: #fbfcfd; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.strong { font-weight: 700; }
p.caption { color: var(--muted); font-size: 13px; margin: 2px 0 14px; max-width: 760px; }
table.facts th { width: 170px; white-space: nowrap; }
.code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 13px; overflow-wrap: anywhere; }
.nowrap { white-space: nowrap; }
.good { color: var(--good); } .bad { color: var(--bad); } .warn { color: var(--warn); } .muted { color: var(--muted); }
td.good { background: var(--good-bg) !important; } td.bad { background: var(--bad-bg) !important; }
td.warn { background: var(--warn-bg) !important; }
.notice { border-left: 4px solid var(--warn); background: var(--warn-bg); padding: 8px 12px; margin: 10px 0; border-radius: 4px; }
.notice.bad { border-color: var(--bad); background: var(--bad-bg); } .notice.good { border-color: var(--good); background: var(--good-bg); }
figure.plot { margin: 8px 0; } figure.plot img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px; }
figcaption { color: var(--muted); font-size: 13px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(250px, 1fr)); gap: 12px; margin: 10px 0; }
figure.example { margin: 0; border: 1px solid var(--line); border-radius: 8px; padding: 8px 10px; background: #fff; }
.example .head { font-size: 13px; color: var(--muted); margin-bottom: 4px; }
.example .head b { color: var(--fg); font-size: 15px; }
.panels { display: flex; gap: 6px; }
.panels div { text-align: center; font-size: 11px; color: var(--muted); }
.panels img { display: block; width: 72px; height: 72px; image-rendering: pixelated; border: 1px solid var(--line); }
ul.predictions { list-style: none; padding: 0; margin: 6px 0 0; font-size: 14px; }
ul.predictions li { padding: 1px 6px; border-radius: 4px; margin-top: 2px; }
ul.predictions li.good { background: var(--good-bg); } ul.predictions li.bad { background: var(--bad-bg); }
ul.predictions .sym { font-weight: 700; display: inline-block; width: 1.2em; }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; border-top: 1px solid var(--line); padding-top: 10px; }
@media print { main { max-width: none; padding: 0; } .grid { grid-template-columns: repeat(3, 1fr); } }
"""


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _cell(cell: Cell, tag: str = "td") -> str:
    classes = [c for c in (cell.status, "num" if cell.numeric else None, "strong" if cell.strong else None) if c]
    text = esc(cell.text)
    if cell.status in SYMBOLS:
        text = f"{SYMBOLS[cell.status]} {text}"
    if cell.code:
        text = f'<span class="code{" nowrap" if len(cell.text) <= 40 else ""}">{text}</span>'
    attr = f' class="{" ".join(classes)}"' if classes else ""
    return f"<{tag}{attr}>{text}</{tag}>"


def _table(table: Table) -> str:
    numeric = [all(row[i].numeric for row in table.rows if i < len(row)) and bool(table.rows)
               for i in range(len(table.headers))]
    head = "".join(f'<th class="num">{esc(h)}</th>' if numeric[i] else f"<th>{esc(h)}</th>"
                   for i, h in enumerate(table.headers))
    body = "".join("<tr>" + "".join(_cell(cell) for cell in row) + "</tr>" for row in table.rows)
    caption = f'<p class="caption">{esc(table.caption)}</p>' if table.caption else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{caption}"


def _facts(facts: Facts) -> str:
    rows = "".join(f"<tr><th>{esc(label)}</th>{_cell(value)}</tr>" for label, value in facts.items)
    return f'<table class="facts"><tbody>{rows}</tbody></table>'


def _prediction(word: str, name: str, correct: bool) -> str:
    status = GOOD if correct else BAD
    return (f'<li class="{status}"><span class="sym {status}">{SYMBOLS[status]}</span>'
            f"{word}: <b>{esc(name)}</b></li>")


def _example(card: ExampleCard, factor: int) -> str:
    panels = [("clean", card.clean_png), ("adversarial", card.adversarial_png), (f"perturbation ×{factor}", card.perturbation_png)]
    images = "".join(f'<div><img src="{_data_uri(png)}" alt="{esc(what)} image of example {card.index}">{esc(what)}</div>'
                     for what, png in panels)
    lines = [_prediction("clean", card.clean_prediction, card.clean_correct),
             _prediction("adversarial", card.adversarial_prediction, card.adversarial_correct)]
    if not card.clean_correct and card.perturbation == 0:
        lines.append('<li class="muted">wrong before the attack: left unchanged</li>')
    if card.target is not None:
        outcome = ("reached" if card.target_reached else "missed") if card.target_reached is not None \
            else "same as the true label: not attacked"
        lines.append(f'<li class="muted">target: <b>{esc(card.target)}</b> · {esc(outcome)}</li>')
    return (f'<figure class="example"><div class="head">#{card.index} · true label <b>{esc(card.true_label)}</b>'
            f' · max change {card.perturbation:.3f}</div><div class="panels">{images}</div>'
            f'<ul class="predictions">{"".join(lines)}</ul></figure>')


def _block(block: Block) -> str:
    if isinstance(block, Paragraph):
        return f"<p>{esc(block.text)}</p>"
    if isinstance(block, Notice):
        symbol = SYMBOLS.get(block.status, SYMBOLS[WARN])
        return f'<div class="notice {esc(block.status)}" role="note">{symbol} {esc(block.text)}</div>'
    if isinstance(block, Facts):
        return _facts(block)
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, Figure):
        return (f'<figure class="plot"><img src="{_data_uri(block.png)}" alt="{esc(block.alt)}">'
                f"<figcaption>{esc(block.caption)}</figcaption></figure>")
    if isinstance(block, ExampleGrid):
        cards = "".join(_example(card, block.magnification) for card in block.cards)
        return f'<p class="muted">{esc(block.caption)}</p><div class="grid">{cards}</div>'
    raise TypeError(f"unknown report block {type(block).__name__}")


def _headline(headline: Headline) -> str:
    status = f" {headline.status}" if headline.status in (GOOD, BAD, WARN, MUTED) else ""
    return (f'<div class="headline{status}"><div class="label">{esc(headline.label)}</div>'
            f'<div class="value">{esc(headline.value)}</div><div class="detail">{esc(headline.detail)}</div></div>')


def _section(section: Section) -> str:
    body = "\n".join(_block(block) for block in section.blocks)
    return f'<section id="section-{esc(section.key)}">\n<h2>{esc(section.title)}</h2>\n{body}\n</section>'


def render_html(report: Report) -> str:
    """The whole page as a string."""
    toc = "".join(f'<a href="#section-{esc(s.key)}">{esc(s.title)}</a>' for s in report.sections)
    sections = "\n".join(_section(section) for section in report.sections)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(report.title)}</title>
<style>{CSS}</style>
</head>
<body>
<main>
<header>
<h1>{esc(report.title)}</h1>
<p class="subtitle">{esc(report.subtitle)}</p>
<div class="headlines">{"".join(_headline(h) for h in report.headlines)}</div>
<nav class="toc">{toc}</nav>
</header>
{sections}
<footer>Made by advcli {esc(__version__)}. Every figure here was measured by the run, evaluation or
verification it names; this file holds all of its images and fetches nothing.</footer>
</main>
</body>
</html>
"""
