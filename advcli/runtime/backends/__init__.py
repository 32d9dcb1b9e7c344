"""Backends that load a model for evaluation: one file per backend, each registering a :class:`Backend`.

``torch`` loads a run folder (weights for white-box attacks); ``onnxruntime`` runs an exported file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ...registry import Registry

if TYPE_CHECKING:
    from ..classifier import Classifier


@dataclass(frozen=True)
class Backend:
    """How to load a model path as a :class:`~advcli.runtime.classifier.Classifier` (`load(path,
    device_choice)`), and the file suffixes that call for this backend."""

    load: Callable[[Path, str], "Classifier"]
    suffixes: tuple[str, ...] = ()


BACKENDS: Registry[Backend] = Registry("backend", param="backend", package=__name__, order=("torch", "onnxruntime"))
