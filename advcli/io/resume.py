"""The resume state of an interrupted training run, stored without pickle.

Continuing from it gives the same result as a run that never stopped (bit for bit on CPU for a
deterministic configuration). Tensors (weights, optimizer state, random generator states as
uint8 tensors, the guard's best snapshot, state a method carries between steps, the epoch's
shuffling order) go to ``resume.safetensors``; everything else (position, history, guard record,
optimizer hyper-parameters) to ``resume.json``. ``model.json`` records the checksums of both.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from ..errors import CheckpointError
from .documents import RESUME_FORMAT, RESUME_FORMAT_VERSION, RESUME_SCHEMA
from .schema import MAX_DOCUMENT_BYTES, parse_document, validate

RESUME_TENSORS_FILE = "resume.safetensors"
RESUME_INFO_FILE = "resume.json"


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class ResumeState:
    """Tensors by name plus a JSON-able description: all a training loop needs to continue."""

    tensors: dict[str, torch.Tensor]
    info: dict[str, Any]

    def encode(self) -> tuple[bytes, bytes]:
        """The bytes of ``resume.safetensors`` and ``resume.json``."""
        tensors = {name: value.detach().cpu().contiguous().clone() for name, value in self.tensors.items()}
        info = {"format": RESUME_FORMAT, "format_version": RESUME_FORMAT_VERSION, **self.info}
        return (save_tensors(tensors, metadata={"format": RESUME_FORMAT}),
                (json.dumps(info, indent=1) + "\n").encode())

    def group(self, prefix: str) -> dict[str, torch.Tensor]:
        """The tensors stored under ``prefix.``, with the prefix removed."""
        start = prefix + "."
        return {name[len(start):]: value for name, value in self.tensors.items() if name.startswith(start)}


def grouped(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`tensors` renamed under ``prefix.``."""
    return {f"{prefix}.{name}": value for name, value in tensors.items()}


def pack_optimizer(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state dict into tensors (``<param>.<key>``) and JSON-able rest."""
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, Any] = {"state": {}, "param_groups": state_dict["param_groups"]}
    for param, values in state_dict["state"].items():
        rest = plain["state"].setdefault(str(param), {})
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{param}.{key}"] = value
            else:
                rest[key] = value
    return tensors, plain


def unpack_optimizer(tensors: dict[str, torch.Tensor], plain: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`pack_optimizer`."""
    state: dict[int, dict[str, Any]] = {int(param): dict(rest) for param, rest in plain["state"].items()}
    for name, value in tensors.items():
        param, key = name.split(".", 1)
        state.setdefault(int(param), {})[key] = value
    return {"state": state, "param_groups": plain["param_groups"]}


def resume_files(state: ResumeState) -> tuple[dict[str, bytes], dict[str, Any]]:
    """File contents to write into a run folder and the ``resume`` entry of its model.json."""
    tensor_bytes, info_bytes = state.encode()
    entry = {
        "tensors": RESUME_TENSORS_FILE,
        "tensors_sha256": _sha256(tensor_bytes),
        "info": RESUME_INFO_FILE,
        "info_sha256": _sha256(info_bytes),
        "iteration": state.info.get("step"),
    }
    return {RESUME_TENSORS_FILE: tensor_bytes, RESUME_INFO_FILE: info_bytes}, entry


def _read_checked(path: Path, digest: str, limit: int) -> bytes:
    """The bytes of `path`, which must be a file of at most `limit` bytes with the sha256 `digest`."""
    if not path.is_file():
        raise CheckpointError(f"{path}: resume file is missing")
    if path.stat().st_size > limit:
        raise CheckpointError(f"{path}: {path.stat().st_size} bytes, more than a resume state of this run can hold")
    data = path.read_bytes()
    if _sha256(data) != digest:
        raise CheckpointError(f"{path}: checksum mismatch, the resume state is corrupt or was altered")
    return data


def read_resume_state(run_path: Path, entry: dict[str, Any], *, max_tensor_bytes: int) -> ResumeState:
    """Read and verify the resume state a run folder's model.json points to (an entry that fits
    model.json's schema); `max_tensor_bytes` bounds resume.safetensors before it is read."""
    tensors_path, info_path = run_path / entry["tensors"], run_path / entry["info"]
    info_bytes = _read_checked(info_path, entry["info_sha256"], MAX_DOCUMENT_BYTES)
    tensor_bytes = _read_checked(tensors_path, entry["tensors_sha256"], max_tensor_bytes)
    info = parse_document(info_bytes, str(info_path))
    if not isinstance(info, dict) or info.get("format") != RESUME_FORMAT:
        raise CheckpointError(f"{info_path}: not an advcli resume state")
    validate(info, RESUME_SCHEMA, str(info_path))
    try:
        tensors = load_tensors(tensor_bytes)
    except (SafetensorError, ValueError) as error:
        raise CheckpointError(f"{tensors_path}: unreadable safetensors file ({error})") from None
    return ResumeState(tensors=tensors, info=info)
