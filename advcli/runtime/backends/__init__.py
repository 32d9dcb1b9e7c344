"""Backends that load a model for evaluation: one file per backend, each registering a :class:`Backend`.

``torch`` loads a run folder (weights for white-box attacks); ``onnxruntime`` runs an ONNX file
(attacked white-box through its conversion to torch when that reproduces onnxruntime);
``torchscript`` and ``torch-export`` load pickled programs, which run code when loaded, and so only
when the caller trusts the file (`trust_pickled_model`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ...registry import Registry

if TYPE_CHECKING:
    from ..classifier import Classifier


def _default_contract() -> Any:
    from ..onnx_import.contract import InputContract

    return InputContract()


@dataclass(frozen=True)
class LoadRequest:
    """How to load a model: the `device` choice, the input `contract` of a foreign model
    (:class:`~advcli.runtime.onnx_import.contract.InputContract`), and whether files that run code when
    loaded may be loaded (`trust_pickled_model`)."""

    device: str = "auto"
    contract: Any = field(default_factory=_default_contract)
    trust_pickled_model: bool = False


@dataclass(frozen=True)
class Backend:
    """How to load a model path as a :class:`~advcli.runtime.classifier.Classifier` (`load(path,
    request)`), and the file suffixes that call for this backend."""

    load: Callable[[Path, LoadRequest], "Classifier"]
    suffixes: tuple[str, ...] = ()


BACKENDS: Registry[Backend] = Registry("backend", param="backend", package=__name__,
                                       order=("torch", "onnxruntime", "torchscript", "torch-export"))
