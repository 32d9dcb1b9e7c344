"""Run folders: weights in safetensors plus JSON metadata, written atomically, never pickled.

A run folder ``runs/<name>/`` holds ``model.safetensors``, ``model.json``, ``history.csv`` and
``loss.png``. It is assembled in a hidden sibling folder and renamed into place in one step, so an
interrupted or failed save never leaves a half-written run and never replaces an earlier one.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..data.limits import DataLimits
from ..errors import CheckpointError, OutputError
from ..models import build_model
from .atomic import atomic_folder, write_json_atomic
from .destinations import check_destination
from .documents import RUN_FORMAT_VERSION, check_run_meta
from .layout import DEFAULT_RUNS_DIR, HISTORY_FILE, META_FILE, RUN_FORMAT, WEIGHTS_FILE
from .provenance import file_sha256
from .schema import read_document
from .weights import check_layout, file_layout, model_layout


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


def default_run_name(kind: str) -> str:
    """A sortable, readable default name such as ``20261126-101502-robust``."""
    return f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{kind}"


def check_run_dir_free(path: Path, *, param: str = "out") -> None:
    """Fail early, before any training, when `path` would clobber an existing run or file, or cannot
    be created (under a file, in a read-only folder)."""
    check_destination(path, param=param, folder=True)


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
        try:
            save_file(state, str(staging / WEIGHTS_FILE), metadata={"format": RUN_FORMAT})
        except SafetensorError as error:
            raise OutputError(f"cannot write {path}: {' '.join(str(error).split())[:200]}; "
                              "nothing was written there") from None
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


def read_run_meta(path: Path, limits: Optional[DataLimits] = None) -> dict[str, Any]:
    """Read a run's ``model.json`` and check it against its schema (:mod:`advcli.io.documents`)."""
    meta_path = path / META_FILE
    if not meta_path.is_file():
        raise CheckpointError(f"{path}: no {META_FILE}; not a complete run folder")
    meta = read_document(meta_path)
    if not isinstance(meta, dict) or meta.get("format") != RUN_FORMAT:
        raise CheckpointError(f"{meta_path}: not an advcli run description")
    return check_run_meta(meta, str(meta_path), limits or DataLimits.current())


def load_run(target: Path | str, *, device: torch.device | str = "cpu") -> Run:
    """Load a run folder (or its model.json / model.safetensors) with integrity checks: model.json
    fits its schema, the weights their checksum, and the tensors the architecture model.json names
    (compared from the file's header before the model or the weights are allocated)."""
    target = Path(target)
    if not target.exists():
        raise CheckpointError(f"{target}: no such run folder or file")
    path = _run_dir_of(target)
    meta = read_run_meta(path)
    weights_path = path / meta["weights"]["file"]
    if not weights_path.is_file():
        raise CheckpointError(f"{weights_path}: weights file is missing")
    digest = file_sha256(weights_path)
    if digest != meta["weights"]["sha256"]:
        raise CheckpointError(f"{weights_path}: checksum mismatch, the weights are corrupt or were altered")
    architecture, shape, classes = meta["architecture"], tuple(meta["input_shape"]), len(meta["classes"])
    check_layout(file_layout(weights_path), model_layout(lambda: build_model(architecture, shape, classes)),
                 str(weights_path), f"{architecture} for inputs {list(shape)} and {classes} classes (model.json)")
    try:
        state = load_file(str(weights_path), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{weights_path}: unreadable safetensors file ({error})") from None
    model = build_model(architecture, shape, classes)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[0]
        raise CheckpointError(f"{weights_path}: weights do not fit {architecture} ({first_line})") from None
    model.to(device).eval()
    return Run(path=path, meta=meta, model=model)


def is_interrupted(meta: dict[str, Any]) -> bool:
    """Whether a run was stopped before its end (Ctrl-C) and saved with a resume state."""
    return bool(meta.get("metrics", {}).get("interrupted")) or "resume" in meta


@dataclass
class RunSearch:
    """The newest usable run under a folder, and the folders passed over with the reason for each."""

    path: Path
    skipped: list[tuple[Path, str]]


def newest_run(runs_dir: Path | str = DEFAULT_RUNS_DIR) -> RunSearch:
    """The newest finished run under `runs_dir` (by its creation time in model.json). Folders whose
    model.json cannot be used are passed over, and so are interrupted runs (name one to use it)."""
    runs_dir = Path(runs_dir)
    candidates: list[tuple[str, float, Path]] = []
    skipped: list[tuple[Path, str]] = []
    children = sorted(runs_dir.iterdir()) if runs_dir.is_dir() else []
    for child in children:
        if child.name.startswith(".") or not (child / META_FILE).is_file():
            continue
        try:
            meta = read_run_meta(child)
        except CheckpointError as error:
            skipped.append((child, f"unusable: {error.message}"))
            continue
        if is_interrupted(meta):
            skipped.append((child, "interrupted (resume it, or pass it as `model` to use it as it is)"))
            continue
        candidates.append((meta.get("created", ""), (child / META_FILE).stat().st_mtime, child))
    if not candidates:
        passed = f" ({len(skipped)} passed over: {skipped[0][0]} {skipped[0][1]})" if skipped else ""
        raise CheckpointError(f"no trained runs under {runs_dir}/{passed}; train one first (advcli train) or pass "
                              "`model`", param="model")
    return RunSearch(max(candidates, key=lambda item: (item[0], item[1]))[2], skipped)


def find_latest_run(runs_dir: Path | str = DEFAULT_RUNS_DIR) -> Path:
    """The newest finished run under `runs_dir` (see :func:`newest_run`)."""
    return newest_run(runs_dir).path


def resolve_run_path(model: Optional[str | Path], runs_dir: Path | str = DEFAULT_RUNS_DIR) -> tuple[Path, bool]:
    """The run to use and whether it was picked automatically (the newest under `runs_dir`)."""
    if model is None:
        return find_latest_run(runs_dir), True
    return Path(model), False
