"""Choosing the backend a model path calls for, and loading it.

Files that run code when loaded (TorchScript, torch.export programs, torch.save pickles) are told
apart by their content before anything is loaded: a ZIP archive's table of contents names what it
holds, and a raw pickle opens with its protocol byte.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Optional

from ..errors import AdvcliError, CheckpointError
from ..io.runs import DEFAULT_RUNS_DIR, resolve_run_path
from .backends import BACKENDS, LoadRequest
from .classifier import Classifier

_ONNX_FIRST_BYTE = b"\x08"  # an ONNX ModelProto opens with its ir_version field (1, varint)
_PICKLE_FIRST_BYTE = b"\x80"  # the PROTO opcode of pickle protocols 2 and above
_ZIP_MAGIC = b"PK\x03\x04"
PICKLED_BACKENDS = ("torchscript", "torch-export")
PICKLE_REASON = {
    "torchscript": "a TorchScript file runs code when loaded (torch.jit.load)",
    "torch-export": "a torch.export program unpickles its contents when loaded (torch.export.load)",
    "pickle": "a torch.save pickle runs code when loaded",
}


def sniff_pickled(path: Path) -> Optional[str]:
    """``torchscript``, ``torch-export`` or ``pickle`` for a file of that kind (read from its content,
    never loaded), None for anything else."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head[:1] == _PICKLE_FIRST_BYTE:
        return "pickle"
    if head != _ZIP_MAGIC:
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            names = [name.split("/", 1)[-1] for name in archive.namelist()]
    except (zipfile.BadZipFile, OSError):
        return None
    if "archive_format" in names:
        return "torch-export"
    if "constants.pkl" in names or any(name.startswith("code/") for name in names):
        return "torchscript"
    if "data.pkl" in names:
        return "pickle"
    return None


def detect_backend(path: Path) -> str:
    """The backend a model path calls for: run folders are torch, ONNX files onnxruntime, TorchScript
    and torch.export files their own (loaded only when trusted); a torch.save pickle is refused."""
    path = Path(path)
    if path.is_dir() or not path.exists():
        return "torch"
    kind = sniff_pickled(path)
    if kind == "pickle":
        raise CheckpointError(f"{path}: {PICKLE_REASON['pickle']}, and holds no program advcli can evaluate; "
                              "export the model to ONNX and pass the .onnx file as `model`", param="model")
    if kind is not None:
        return kind
    for name, backend in BACKENDS.items():
        if path.suffix.lower() in backend.suffixes and name not in PICKLED_BACKENDS:
            return name
    with open(path, "rb") as handle:
        if handle.read(1) == _ONNX_FIRST_BYTE:
            return "onnxruntime"
    raise CheckpointError(f"{path}: neither a run folder nor an ONNX file; pass `backend` to say which", param="backend")


def refuse_untrusted(path: Path, backend: str, request: LoadRequest) -> None:
    """Refuse to load a file that runs code when loaded, unless the caller trusts it."""
    if backend in PICKLED_BACKENDS and not request.trust_pickled_model:
        raise AdvcliError(f"{path}: {PICKLE_REASON[backend]}; export the model to ONNX and pass the .onnx file "
                          "(attacked white-box through its conversion), or pass `trust_pickled_model` if you trust "
                          "this file to run code on this machine", param="trust_pickled_model")


def load_classifier(
    model: Optional[str | Path],
    *,
    backend: Optional[str] = None,
    device: str = "auto",
    runs_dir: Path | str = DEFAULT_RUNS_DIR,
    request: Optional[LoadRequest] = None,
) -> tuple[Classifier, bool]:
    """The model to evaluate (the newest run by default) and whether it was picked automatically.
    `request` (default: `device` and advcli's own input contract) says how to load it."""
    path, automatic = resolve_run_path(model, runs_dir)
    request = request or LoadRequest(device=device)
    name = BACKENDS.check(backend or detect_backend(path))
    refuse_untrusted(path, name, request)
    return BACKENDS.get(name).load(path, request), automatic
