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

RESUME_TENSORS_FILE = "resume.safetensors"
RESUME_INFO_FILE = "resume.json"
RESUME_FORMAT = "advcli-resume"
RESUME_FORMAT_VERSION = 1


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


def read_resume_state(run_path: Path, entry: dict[str, Any]) -> ResumeState:
    """Read and verify the resume state a run folder's model.json points to."""
    contents = {}
    for kind in ("tensors", "info"):
        path = run_path / str(entry.get(kind, ""))
        if not path.is_file():
            raise CheckpointError(f"{path}: resume file is missing")
        data = path.read_bytes()
        if _sha256(data) != entry.get(f"{kind}_sha256"):
            raise CheckpointError(f"{path}: checksum mismatch, the resume state is corrupt or was altered")
        contents[kind] = data
    try:
        tensors = load_tensors(contents["tensors"])
    except (SafetensorError, ValueError) as error:
        raise CheckpointError(f"{run_path / RESUME_TENSORS_FILE}: unreadable safetensors file ({error})") from None
    try:
        info = json.loads(contents["info"])
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{run_path / RESUME_INFO_FILE}: corrupt JSON ({error})") from None
    if not isinstance(info, dict) or info.get("format") != RESUME_FORMAT:
        raise CheckpointError(f"{run_path / RESUME_INFO_FILE}: not an advcli resume state")
    if info.get("format_version", 0) > RESUME_FORMAT_VERSION:
        raise CheckpointError(f"{run_path / RESUME_INFO_FILE}: written by a newer advcli")
    return ResumeState(tensors=tensors, info=info)
