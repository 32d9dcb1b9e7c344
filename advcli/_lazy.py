"""Lazy package exports (PEP 562): a package names what it offers and where each name is defined,
and the defining module is imported only when the name is first used.

This keeps ``import advcli`` and the command line's start-up free of torch, while
``advcli.pgd`` or ``from advcli.attacks import pgd`` work as with eager imports.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for `package`, where `exports` maps each public name to the
    module (absolute, or relative to `package`) that defines it."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name], package), name)
        setattr(importlib.import_module(package), name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(exports) | set(vars(importlib.import_module(package))))

    return __getattr__, __dir__
