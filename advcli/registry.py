"""One registry mechanism for every table of named things: attacks, data formats, models, training
methods, sanity checks, backends, and the small closed vocabularies (norms, devices, precisions...).

A registry is either a *folder*, where each public module is one entry named after its file
(``apgd_ce.py`` is ``apgd-ce``) and registers itself when imported, or a fixed set of entries given
where the registry is made. Either way the names are known without importing any entry, so the
command line can list its choices without loading torch; an entry's module is imported the first
time the entry is asked for. A contributor adds an entry to a folder registry by adding one file
that calls :meth:`Registry.register` with the file's name: nothing else needs editing.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Callable, Generic, Iterable, Iterator, Mapping, Optional, TypeVar

from .errors import AdvcliError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one `kind` (used in messages), looked up by the parameter `param`.

    With `package`, entries live in that package's modules, one per entry (modules whose names start
    with ``_`` are shared helpers, not entries). `entries` gives entries directly. `order` lists names
    to show first (the rest follow alphabetically), e.g. the reference's attack before the others.
    """

    def __init__(
        self,
        kind: str,
        *,
        param: str,
        package: Optional[str] = None,
        entries: Optional[Mapping[str, T]] = None,
        order: Iterable[str] = (),
        error: type[AdvcliError] = AdvcliError,
    ) -> None:
        if (package is None) == (entries is None):
            raise ValueError("a registry takes either a package or its entries")
        self.kind = kind
        self.param = param
        self.package = package
        self._entries: dict[str, T] = dict(entries or {})
        self._order = tuple(order)
        self._error = error
        self._names: Optional[tuple[str, ...]] = None

    # Names ---------------------------------------------------------------------------------

    def names(self) -> tuple[str, ...]:
        """Every entry's name, `order` first, without importing any entry."""
        if self._names is None:
            found = set(self._entries) | set(self._module_names())
            first = [name for name in self._order if name in found]
            self._names = tuple(first + sorted(found - set(first)))
        return self._names

    def _module_names(self) -> list[str]:
        if self.package is None:
            return []
        package = importlib.import_module(self.package)
        return [info.name.replace("_", "-") for info in pkgutil.iter_modules(package.__path__)
                if not info.name.startswith("_")]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def choices(self) -> str:
        """The names as a comma-separated list, for messages and help texts."""
        return ", ".join(self.names())

    # Entries -------------------------------------------------------------------------------

    def check(self, name: object) -> str:
        """`name` if it is registered; otherwise an error listing the choices."""
        if name not in self:
            raise self._error(f"unknown {self.kind} {name!r}; choose one of: {self.choices()}", param=self.param)
        return name  # type: ignore[return-value]

    def get(self, name: str) -> T:
        """The entry called `name`, importing its module the first time."""
        self.check(name)
        if name not in self._entries and self.package is not None:
            importlib.import_module(f"{self.package}.{name.replace('-', '_')}")
        if name not in self._entries:
            raise RuntimeError(f"{self.package}.{name.replace('-', '_')} does not register the {self.kind} {name!r}")
        return self._entries[name]

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def items(self) -> list[tuple[str, T]]:
        """Every (name, entry), in the order of :meth:`names` (imports every entry)."""
        return [(name, self.get(name)) for name in self.names()]

    def register(self, name: str, entry: T) -> T:
        """Add `entry` as `name` (called by the entry's own module in a folder registry); returns it."""
        if name in self._entries and self._entries[name] is not entry:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry
        self._names = None
        return entry

    def registers(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`register`."""
        return lambda entry: self.register(name, entry)
