"""Deprecated module paths from before the package layout: ``import advcli.precision`` and the like
keep working for now, with a DeprecationWarning naming where each name lives today.

Each old module is served by a stand-in that looks names up in the modules that now hold them.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from typing import Any, Optional, Sequence

MOVED_MODULES: dict[str, tuple[str, ...]] = {
    "advcli.layers": ("advcli.models.layers",),
    "advcli.devices": ("advcli.runtime.device", "advcli.runtime.memory"),
    "advcli.precision": ("advcli.runtime.precision", "advcli.runtime.autocast"),
    "advcli.runs": ("advcli.io.runs", "advcli.io.layout", "advcli.io.atomic"),
    "advcli.resume": ("advcli.io.resume",),
    "advcli.provenance": ("advcli.io.provenance",),
    "advcli.plots": ("advcli.io.plots",),
    "advcli.crafting": ("advcli.evaluation.crafting",),
    "advcli.backends": ("advcli.runtime.loading", "advcli.runtime.backends.onnxruntime",
                        "advcli.runtime.backends.torch", "advcli.runtime.classifier"),
    "advcli.guard": ("advcli.training.guard", "advcli.training.collapse"),
    "advcli.sanity": ("advcli.evaluation.sanity",),
    "advcli.apgd": ("advcli.attacks.methods._apgd", "advcli.attacks.methods.apgd_ce", "advcli.attacks.methods.apgd_dlr"),
    "advcli.square": ("advcli.attacks.methods._square", "advcli.runtime.classifier"),
    "advcli.autoattack": ("advcli.attacks.methods.auto", "advcli.attacks.methods.square", "advcli.attacks.sequence"),
}


class _MovedModule(types.ModuleType):
    """Stands in for a module that moved: each attribute comes from the first new module that has it."""

    def __init__(self, name: str, targets: Sequence[str]) -> None:
        super().__init__(name, f"Deprecated: moved to {', '.join(targets)}.")
        self._targets = tuple(targets)

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        for target in self._targets:
            module = importlib.import_module(target)
            if hasattr(module, attribute):
                return getattr(module, attribute)
        raise AttributeError(f"{self.__name__} (moved to {', '.join(self._targets)}) has no attribute {attribute!r}")


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname: str, path: Optional[Sequence[str]], target: Optional[types.ModuleType] = None
                  ) -> Optional[importlib.machinery.ModuleSpec]:
        if fullname not in MOVED_MODULES:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        targets = MOVED_MODULES[spec.name]
        warnings.warn(f"{spec.name} is deprecated; import from {' or '.join(targets)}", DeprecationWarning,
                      stacklevel=2)
        return _MovedModule(spec.name, targets)

    def exec_module(self, module: types.ModuleType) -> None:
        """Nothing to run: the stand-in resolves names on demand."""


def install_moved_module_aliases() -> None:
    """Serve the old module paths (once per process)."""
    if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModuleFinder())
