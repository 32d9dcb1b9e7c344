"""``torch``: a run folder, loaded with its weights (which also serve white-box attacks)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ...io.runs import Run, load_run
from ..classifier import Classifier, torch_logits
from ..device import auto_fallback_note, resolve_device
from . import BACKENDS, Backend


def torch_classifier(run: Run, notes: Optional[list[str]] = None) -> Classifier:
    """A loaded run as a classifier (its model also serves white-box attacks)."""
    return Classifier(
        path=run.path, backend="torch", fingerprint=run.fingerprint, logits=torch_logits(run.model),
        device=next(run.model.parameters()).device, classes=run.classes,
        input_shape=tuple(run.meta["input_shape"]), data_spec=run.data_spec, model=run.model, notes=notes or [],
    )


def load_torch_classifier(path: Path, device: str = "auto") -> Classifier:
    note = auto_fallback_note(device)
    return torch_classifier(load_run(path, device=resolve_device(device)), notes=[note] if note else [])


BACKENDS.register("torch", Backend(load_torch_classifier, suffixes=(".json", ".safetensors")))
