"""Writing a report: the HTML page, and the Markdown twin with its images in a folder beside it,
each complete at its path or absent (temporary file or folder, then a rename)."""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.parse
from pathlib import Path
from typing import Optional

from ..errors import AdvcliError
from ..io.atomic import atomic_path
from .document import Report
from .html import render_html
from .markdown import render_markdown


def _free(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise AdvcliError(f"{path} already exists; choose another name or pass `overwrite`", param="overwrite")
    if path.is_dir() and path.suffix in (".html", ".md"):
        raise AdvcliError(f"{path} is a folder", param="out")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def write_html_report(report: Report, path: Path | str, *, overwrite: bool = False) -> Path:
    """Write the self-contained HTML page (temp file + rename); an existing file needs `overwrite`."""
    path = Path(path)
    _free(path, overwrite)
    _write_text(path, render_html(report))
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
    _write_text(path, text)
    return path


def write_report(report: Report, html: Path | str, *, markdown: bool = True, overwrite: bool = False
                 ) -> dict[str, Path]:
    """The HTML page at `html` and, with `markdown`, its twin beside it (``.md`` and ``_files/``); every
    destination is checked before anything is written, so a refusal leaves nothing behind."""
    html = Path(html)
    md = html.with_suffix(".md")
    _free(html, overwrite)
    if markdown:
        _free(md, overwrite)
        _free(md.with_name(f"{md.stem}_files"), overwrite)
    written = {"html": write_html_report(report, html, overwrite=overwrite)}
    if markdown:
        written["markdown"] = write_markdown_report(report, md, overwrite=overwrite)
    return written
