"""``torch-export``: a torch.export program (.pt2), loaded only when trusted, since loading unpickles
its contents; then attacked white-box like any torch module, behind its input contract."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..classifier import Classifier
from . import BACKENDS, Backend, LoadRequest
from ._pickled import load_pickled


def _load(path: Path, device: torch.device) -> nn.Module:
    return torch.export.load(str(path)).module().to(device)


def load_exported_classifier(path: Path, request: LoadRequest = LoadRequest()) -> Classifier:
    return load_pickled(path, request, "torch-export", _load)


BACKENDS.register("torch-export", Backend(load_exported_classifier, suffixes=(".pt2",)))
