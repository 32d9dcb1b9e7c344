"""Choosing the backend a model path calls for, and loading it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..errors import CheckpointError
from ..io.runs import DEFAULT_RUNS_DIR, resolve_run_path
from .backends import BACKENDS
from .classifier import Classifier

_ONNX_FIRST_BYTE = b"\x08"  # an ONNX ModelProto opens with its ir_version field (1, varint)


def detect_backend(path: Path) -> str:
    """The backend a model path calls for: run folders are torch, ONNX files onnxruntime."""
    path = Path(path)
    if path.is_dir() or not path.exists():
        return "torch"
    for name, backend in BACKENDS.items():
        if path.suffix.lower() in backend.suffixes:
            return name
    with open(path, "rb") as handle:
        if handle.read(1) == _ONNX_FIRST_BYTE:
            return "onnxruntime"
    raise CheckpointError(f"{path}: neither a run folder nor an ONNX file; pass `backend` to say which", param="backend")


def load_classifier(
    model: Optional[str | Path],
    *,
    backend: Optional[str] = None,
    device: str = "auto",
    runs_dir: Path | str = DEFAULT_RUNS_DIR,
) -> tuple[Classifier, bool]:
    """The model to evaluate (the newest run by default) and whether it was picked automatically."""
    path, automatic = resolve_run_path(model, runs_dir)
    name = BACKENDS.check(backend or detect_backend(path))
    return BACKENDS.get(name).load(path, device), automatic
