"""A shareable report of a run: one self-contained HTML file and a Markdown twin for PR comments.

``build_report(inputs)`` turns a run's model.json, history, evaluation, verification results and
adversarial examples into a :class:`Report`; ``write_html_report`` and ``write_markdown_report``
write it atomically. Only what the inputs hold is shown, and sections without data are left out.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.parse
from pathlib import Path
from typing import Optional

from advcli.errors import AdvcliError

from .card import headlines, model_card, training_section
from .document import Notice, Report, Section
from .examples import MAX_EXAMPLES, examples_section
from .html import render_html
from .inputs import (ReportInputs, check_model, check_verification, consistency_notes, load_examples,
                     load_report_inputs, read_history_csv)
from .markdown import render_markdown
from .results import sections as result_sections

__all__ = ["Report", "ReportInputs", "build_report", "check_verification", "load_examples", "load_report_inputs",
           "read_history_csv", "render_html", "render_markdown", "write_html_report", "write_markdown_report"]


def _title(inputs: ReportInputs) -> tuple[str, str]:
    model = inputs.model
    name = Path(str(inputs.evaluation.get("model", ""))).name if inputs.evaluation else ""
    title = inputs.title or f"advcli report: {name or model.get('architecture', 'model')}"
    data = model.get("data", {}).get("spec", "?") if isinstance(model.get("data"), dict) else "?"
    method = (model.get("training") or {}).get("method", "?")
    kind = "standard training" if method == "none" else f"{method} adversarial training"
    return title, f"{model.get('architecture', '?')} trained on {data} with {kind}"


def build_report(inputs: ReportInputs, *, max_examples: int = MAX_EXAMPLES) -> Report:
    """The report's content, checked: results of other weights and malformed figures raise AdvcliError."""
    check_model(inputs.model)
    notes = consistency_notes(inputs)
    verification = check_verification(inputs.verification) if inputs.verification is not None else None
    card = model_card(inputs)
    card.blocks += [Notice(note) for note in notes]
    sections: list[Optional[Section]] = [card, training_section(inputs),
                                         *result_sections(inputs.evaluation, verification)]
    if inputs.examples is not None:
        sections.append(examples_section(inputs.examples, inputs.classes, limit=max_examples))
    title, subtitle = _title(inputs)
    return Report(title, subtitle, headlines(inputs, verification), [s for s in sections if s is not None])


def _free(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise AdvcliError(f"{path} already exists; choose another name or pass overwrite=True")
    if path.is_dir() and path.suffix in (".html", ".md"):
        raise AdvcliError(f"{path} is a folder")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write_atomic(path: Path, text: str) -> None:
    """Write through a temp file and a rename, readable as any new file would be (umask)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_html_report(report: Report, path: Path | str, *, overwrite: bool = False) -> Path:
    """Write the self-contained HTML page (temp file + rename); an existing file needs `overwrite`."""
    path = Path(path)
    _free(path, overwrite)
    _write_atomic(path, render_html(report))
    return path


def _replace_folder(folder: Path, files: dict[str, bytes]) -> None:
    """Fill a fresh staging folder, then swap it in for `folder` (the old one is removed after)."""
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.partial-", dir=folder.parent))
    old: Optional[Path] = None
    try:
        for name, content in files.items():
            (staging / name).write_bytes(content)
        os.chmod(staging, 0o777 & ~_umask())
        if folder.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old-", dir=folder.parent))
            os.replace(folder, old / folder.name)
        os.rename(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def write_markdown_report(report: Report, path: Path | str, *, images: bool = True, overwrite: bool = False) -> Path:
    """Write the Markdown twin; its images go to ``<stem>_files/`` beside it (``images=False``: left
    out, with a note). Both are written atomically; existing ones need `overwrite`."""
    path = Path(path)
    folder = path.with_name(f"{path.stem}_files")
    _free(path, overwrite)
    if images:
        _free(folder, overwrite)
    text, files = render_markdown(report, urllib.parse.quote(folder.name) if images else None)
    path.parent.mkdir(parents=True, exist_ok=True)
    if images:
        _replace_folder(folder, files)
    _write_atomic(path, text)
    return path
