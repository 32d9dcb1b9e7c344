"""Hand-edited, corrupt and crafted checkpoints: run folders, resume states and ONNX files.

A user can edit ``model.json`` freely (it carries no checksum), so its cases change one field at
a time. The weights and the resume state are checksummed in ``model.json``; a crafted case that
gets past the checksum rewrites the file *and* its recorded sha256, as an attacker would.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file, save_file

META, WEIGHTS = "model.json", "model.safetensors"
RESUME_INFO, RESUME_TENSORS = "resume.json", "resume.safetensors"
REMOVE = object()  # as a value in a field change: delete the field


def sha256_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def read_meta(run: Path) -> dict[str, Any]:
    return json.loads((run / META).read_text())


def write_meta(run: Path, meta: Any) -> None:
    (run / META).write_text(json.dumps(meta, indent=2))


def set_field(document: dict[str, Any], dotted: str, value: Any) -> None:
    """document["a"]["b"] = value for "a.b" (REMOVE deletes it)."""
    *parents, last = dotted.split(".")
    for key in parents:
        document = document[key]
    if value is REMOVE:
        document.pop(last, None)
    else:
        document[last] = value


def edit_meta(run: Path, dotted: str, value: Any) -> None:
    meta = read_meta(run)
    set_field(meta, dotted, value)
    write_meta(run, meta)


def nested_json(depth: int) -> str:
    """A JSON document `depth` arrays deep: valid, but deeper than a recursive parser's stack."""
    return "[" * depth + "]" * depth


# Weights -------------------------------------------------------------------------------------------

def rewrite_weights(run: Path, change: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]) -> None:
    """Replace the weights by change(weights) and record the new file's sha256, as a forger would."""
    tensors = change(load_file(str(run / WEIGHTS)))
    save_file(tensors, str(run / WEIGHTS), metadata={"format": "advcli-run"})
    edit_meta(run, "weights.sha256", sha256_of((run / WEIGHTS).read_bytes()))


def replace_weights_bytes(run: Path, content: bytes, *, fix_checksum: bool) -> None:
    (run / WEIGHTS).write_bytes(content)
    if fix_checksum:
        edit_meta(run, "weights.sha256", sha256_of(content))


def nan_outputs(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The classifier's bias set to NaN: every output of every input is NaN."""
    tensors = dict(tensors)
    tensors["classifier.bias"] = torch.full_like(tensors["classifier.bias"], math.nan)
    return tensors


def flip_one_byte(run: Path) -> None:
    """Alter the weights without updating the checksum (what a disk error or a careless edit does)."""
    data = bytearray((run / WEIGHTS).read_bytes())
    data[-1] ^= 0xFF
    (run / WEIGHTS).write_bytes(bytes(data))


# Resume state ---------------------------------------------------------------------------------------

def read_resume_info(run: Path) -> dict[str, Any]:
    return json.loads((run / RESUME_INFO).read_text())


def write_resume_info(run: Path, content: str | bytes, *, fix_checksum: bool = True) -> None:
    """Replace resume.json; with `fix_checksum`, record its new sha256 in model.json too."""
    data = content.encode() if isinstance(content, str) else content
    (run / RESUME_INFO).write_bytes(data)
    if fix_checksum:
        edit_meta(run, "resume.info_sha256", sha256_of(data))


def edit_resume_info(run: Path, dotted: str, value: Any) -> None:
    info = read_resume_info(run)
    set_field(info, dotted, value)
    write_resume_info(run, json.dumps(info, indent=1) + "\n")


# ONNX -----------------------------------------------------------------------------------------------

def rewrite_onnx_metadata(source: Path, target: Path, changes: dict[str, Any]) -> Path:
    """Copy an ONNX file with some ``advcli.*`` metadata values replaced (REMOVE deletes the key)."""
    import onnx

    proto = onnx.load(str(source))
    entries = {entry.key: entry.value for entry in proto.metadata_props}
    for key, value in changes.items():
        if value is REMOVE:
            entries.pop(key, None)
        else:
            entries[key] = value
    del proto.metadata_props[:]
    for key, value in entries.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(target))
    return target


def onnx_metadata(path: Path) -> dict[str, str]:
    import onnx

    return {entry.key: entry.value for entry in onnx.load(str(path)).metadata_props}


def rewrite_resume_tensors(run: Path, change: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]) -> None:
    """Replace resume.safetensors by change(tensors) and record its new sha256, as a forger would."""
    tensors = change(load_file(str(run / RESUME_TENSORS)))
    save_file(tensors, str(run / RESUME_TENSORS), metadata={"format": "advcli-resume"})
    edit_meta(run, "resume.tensors_sha256", sha256_of((run / RESUME_TENSORS).read_bytes()))
