"""What the two pickled-program backends share: the trust check, the loud note, the classifier."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ...errors import CheckpointError
from ...io.provenance import file_sha256
from ..classifier import Classifier
from ..device import auto_fallback_note, resolve_device
from ..loading import PICKLE_REASON, refuse_untrusted, sniff_pickled
from ..user_module import module_classifier
from . import LoadRequest


def load_pickled(path: Path, request: LoadRequest, kind: str,
                 load: Callable[[Path, torch.device], nn.Module]) -> Classifier:
    """`path` (a `kind` file, checked by content first) loaded by `load` only when trusted."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file", param="model")
    found = sniff_pickled(path)
    if found != kind:
        raise CheckpointError(f"{path}: not a {kind} file (its content says {found or 'neither'})", param="backend")
    refuse_untrusted(path, kind, request)
    device = resolve_device(request.device)
    fingerprint = file_sha256(path)  # of the bytes that were trusted, read before they run
    try:
        model = load(path, device)
    except Exception as error:  # whatever the file's own code raises while loading
        raise CheckpointError(f"{path}: could not be loaded as {kind} ({type(error).__name__}: "
                              f"{' '.join(str(error).split())[:200]})") from None
    warning = (f"TRUSTED PICKLED MODEL: loading {path} executed code from the file "
               f"({PICKLE_REASON[kind].split(' (')[-1].rstrip(')')}), because `trust_pickled_model` was given")
    device_note = auto_fallback_note(request.device)
    return module_classifier(model, request.contract, path=path, backend=kind, fingerprint=fingerprint,
                             notes=[warning] + ([device_note] if device_note else []))
