"""Run folders: weights in safetensors plus JSON metadata, written atomically, never pickled.

A run folder ``runs/<name>/`` holds ``model.safetensors``, ``model.json``, ``history.csv`` and
``loss.png``. It is assembled in a hidden sibling folder and renamed into place in one step, so an
interrupted or failed save never leaves a half-written run and never replaces an earlier one.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import CheckpointError
from ..models import build_model
from .atomic import atomic_folder, write_json_atomic
from .layout import DEFAULT_RUNS_DIR, HISTORY_FILE, META_FILE, RUN_FORMAT, WEIGHTS_FILE
from .provenance import file_sha256

RUN_FORMAT_VERSION = 1


@dataclass
class Run:
    """A loaded run: its folder, metadata and ready-to-use model (in eval mode)."""

    path: Path
    meta: dict[str, Any]
    model: nn.Module

    @property
    def fingerprint(self) -> str:
        return self.meta["weights"]["sha256"]

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def data_spec(self) -> str:
        return self.meta["data"]["spec"]


def default_run_name(kind: str, when: Optional[datetime] = None) -> str:
    """A sortable, readable default name such as ``20261126-101502-robust`` (for `when`, default now)."""
    return f"{(when or datetime.now()).strftime('%Y%m%d-%H%M%S')}-{kind}"


def check_run_dir_free(path: Path) -> None:
    """Fail early, before any training, when `path` would clobber an existing run or file."""
    if path.exists():
        raise CheckpointError(f"{path} already exists; choose another `out` (earlier results are never overwritten)",
                              param="out")


def _write_history(path: Path, history: list[dict[str, Any]]) -> None:
    fields: list[str] = []
    for row in history:
        fields.extend(key for key in row if key not in fields)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields or ["iteration"])
        writer.writeheader()
        writer.writerows(history)


def save_run(
    path: Path,
    model: nn.Module,
    meta: dict[str, Any],
    history: list[dict[str, Any]],
    *,
    extra_writers: Iterable[Callable[[Path], None]] = (),
) -> Path:
    """Save a complete run folder at `path` atomically; returns `path`.

    `extra_writers` are called with the staging folder to add further files (plots).
    """
    path = Path(path)
    check_run_dir_free(path)
    with atomic_folder(path) as staging:
        state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
        save_file(state, str(staging / WEIGHTS_FILE), metadata={"format": RUN_FORMAT})
        meta = dict(meta)
        meta.update(format=RUN_FORMAT, format_version=RUN_FORMAT_VERSION)
        meta["weights"] = {"file": WEIGHTS_FILE, "sha256": file_sha256(staging / WEIGHTS_FILE)}
        _write_history(staging / HISTORY_FILE, history)
        for writer in extra_writers:
            writer(staging)
        write_json_atomic(staging / META_FILE, meta)
        check_run_dir_free(path)
    return path


def _run_dir_of(target: Path) -> Path:
    if target.is_dir():
        return target
    if target.name in (META_FILE, WEIGHTS_FILE):
        return target.parent
    raise CheckpointError(f"{target}: not a run folder (expected a folder with {META_FILE} and {WEIGHTS_FILE})")


def read_run_meta(path: Path) -> dict[str, Any]:
    """Read and validate a run's ``model.json``."""
    meta_path = path / META_FILE
    if not meta_path.is_file():
        raise CheckpointError(f"{path}: no {META_FILE}; not a complete run folder")
    try:
        meta = json.loads(meta_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{meta_path}: corrupt JSON ({error})") from None
    if not isinstance(meta, dict) or meta.get("format") != RUN_FORMAT:
        raise CheckpointError(f"{meta_path}: not an advcli run description")
    if meta.get("format_version", 0) > RUN_FORMAT_VERSION:
        raise CheckpointError(f"{meta_path}: written by a newer advcli (format {meta.get('format_version')})")
    for key in ("architecture", "input_shape", "classes", "weights", "data"):
        if key not in meta:
            raise CheckpointError(f"{meta_path}: missing field {key!r}")
    return meta


def load_run(target: Path | str, *, device: torch.device | str = "cpu") -> Run:
    """Load a run folder (or its model.json / model.safetensors) with integrity checks."""
    target = Path(target)
    if not target.exists():
        raise CheckpointError(f"{target}: no such run folder or file")
    path = _run_dir_of(target)
    meta = read_run_meta(path)
    weights_path = path / meta["weights"].get("file", WEIGHTS_FILE)
    if not weights_path.is_file():
        raise CheckpointError(f"{weights_path}: weights file is missing")
    digest = file_sha256(weights_path)
    if digest != meta["weights"].get("sha256"):
        raise CheckpointError(f"{weights_path}: checksum mismatch, the weights are corrupt or were altered")
    try:
        state = load_file(str(weights_path), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{weights_path}: unreadable safetensors file ({error})") from None
    model = build_model(meta["architecture"], tuple(meta["input_shape"]), len(meta["classes"]))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[0]
        raise CheckpointError(f"{weights_path}: weights do not fit {meta['architecture']} ({first_line})") from None
    model.to(device).eval()
    return Run(path=path, meta=meta, model=model)


def find_latest_run(runs_dir: Path | str = DEFAULT_RUNS_DIR) -> Path:
    """The newest complete run under `runs_dir` (by its creation time in model.json)."""
    runs_dir = Path(runs_dir)
    candidates: list[tuple[str, float, Path]] = []
    if runs_dir.is_dir():
        for child in runs_dir.iterdir():
            if child.name.startswith(".") or not (child / META_FILE).is_file():
                continue
            try:
                created = json.loads((child / META_FILE).read_text()).get("created", "")
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue
            candidates.append((str(created), (child / META_FILE).stat().st_mtime, child))
    if not candidates:
        raise CheckpointError(f"no trained runs under {runs_dir}/; train one first (advcli train) or pass `model`",
                              param="model")
    return max(candidates, key=lambda item: (item[0], item[1]))[2]


def resolve_run_path(model: Optional[str | Path], runs_dir: Path | str = DEFAULT_RUNS_DIR) -> tuple[Path, bool]:
    """The run to use and whether it was picked automatically (the newest under `runs_dir`)."""
    if model is None:
        return find_latest_run(runs_dir), True
    return Path(model), False
