"""``torchscript``: a TorchScript file (torch.jit.save), loaded only when trusted, since loading runs
the code it holds; then attacked white-box like any torch module, behind its input contract."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..classifier import Classifier
from . import BACKENDS, Backend, LoadRequest
from ._pickled import load_pickled


def _load(path: Path, device: torch.device) -> nn.Module:
    return torch.jit.load(str(path), map_location=device)


def load_torchscript_classifier(path: Path, request: LoadRequest = LoadRequest()) -> Classifier:
    return load_pickled(path, request, "torchscript", _load)


BACKENDS.register("torchscript", Backend(load_torchscript_classifier, suffixes=(".pt", ".pth", ".jit", ".ts")))
