"""``torch``: a run folder, loaded with its weights (which also serve white-box attacks)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ...errors import AdvcliError
from ...io.runs import Run, load_run
from ..classifier import Classifier, torch_logits
from ..device import auto_fallback_note, resolve_device
from . import BACKENDS, Backend, LoadRequest


def torch_classifier(run: Run, notes: Optional[list[str]] = None) -> Classifier:
    """A loaded run as a classifier (its model also serves white-box attacks)."""
    return Classifier(
        path=run.path, backend="torch", fingerprint=run.fingerprint, logits=torch_logits(run.model),
        device=next(run.model.parameters()).device, classes=run.classes,
        input_shape=tuple(run.meta["input_shape"]), data_spec=run.data_spec, model=run.model, notes=notes or [],
    )


def refuse_contract_for_runs(contract: object) -> None:
    """A run folder's model takes advcli's own pixels and gives logits: an input contract would mislead."""
    changed = contract.changed() if contract is not None else []  # type: ignore[attr-defined]
    if changed:
        raise AdvcliError(f"`{changed[0]}` describes the input of an ONNX file or a Python module; a run folder's "
                          "model takes advcli's own pixels in [0, 1], NCHW, and gives logits", param=changed[0])


def load_torch_classifier(path: Path, request: LoadRequest | str = LoadRequest()) -> Classifier:
    request = LoadRequest(device=request) if isinstance(request, str) else request
    refuse_contract_for_runs(request.contract)
    note = auto_fallback_note(request.device)
    return torch_classifier(load_run(path, device=resolve_device(request.device)), notes=[note] if note else [])


BACKENDS.register("torch", Backend(load_torch_classifier, suffixes=(".json", ".safetensors")))
