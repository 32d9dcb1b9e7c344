"""Configs made of small value objects, with a flat view.

A config is a dataclass whose fields are plain values or small frozen dataclasses (groups, such as
the threat or the runtime). Every leaf name is unique across the config, so the config reads and
writes as one flat mapping: that is what ``model.json`` and reports store (their keys stay stable
while the groups evolve), and what ``advcli.evaluate(eps=0.1, iters=20)`` accepts as overrides.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass, replace
from typing import Any, Mapping, TypeVar

from .errors import AdvcliError

C = TypeVar("C", bound="FlatSettings")


def check_seed(seed: Any) -> None:
    """A seed torch's generators take: an integer in [-2**63, 2**64)."""
    if not isinstance(seed, int) or isinstance(seed, bool) or not -(2**63) <= seed < 2**64:
        raise AdvcliError(f"`seed` must be an integer in [-2**63, 2**64), got {seed}", param="seed")


class FlatSettings:
    """Mixin for such configs: :meth:`flat`, :meth:`with_flat` and :meth:`from_flat`."""

    def _groups(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if is_dataclass(getattr(self, f.name))}  # type: ignore[arg-type]

    def flat(self) -> dict[str, Any]:
        """Every leaf setting by name, in field order (groups inlined)."""
        result: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if is_dataclass(value):
                result.update({leaf.name: getattr(value, leaf.name) for leaf in fields(value)})
            else:
                result[f.name] = value
        return result

    def with_flat(self: C, **changes: Any) -> C:
        """A copy with leaf settings changed by name, wherever they live; an unknown name is an error."""
        if not changes:
            return self
        groups = self._groups()
        owners = {leaf.name: group for group, value in groups.items() for leaf in fields(value)}
        top = {f.name for f in fields(self) if f.name not in groups}  # type: ignore[arg-type]
        direct: dict[str, Any] = {}
        nested: dict[str, dict[str, Any]] = {}
        for name, value in changes.items():
            if name in top:
                direct[name] = value
            elif name in owners:
                nested.setdefault(owners[name], {})[name] = value
            else:
                raise AdvcliError(f"unknown setting {name!r} for {type(self).__name__}; known: "
                                  f"{', '.join(sorted(top | set(owners)))}", param=name)
        for group, values in nested.items():
            direct[group] = replace(groups[group], **values)
        return replace(self, **direct)  # type: ignore[type-var]

    @classmethod
    def from_flat(cls: type[C], mapping: Mapping[str, Any]) -> C:
        """The default config with `mapping`'s settings applied."""
        return cls().with_flat(**dict(mapping))

    @classmethod
    def of(cls: type[C], **settings: Any) -> C:
        """The default config with `settings` applied by their flat names, e.g.
        ``TrainConfig.of(epochs=5, eps=0.1)``."""
        return cls().with_flat(**settings)
