"""Checking JSON documents read from files before any of their values is used: types, ranges, sizes
and nesting depth, so that a hand-edited or crafted file is refused with one line naming the field
at fault, never met with a traceback or an allocation its values ask for.

A schema is a check: a function of a value and the field's dotted name that raises
:class:`Invalid` when the value does not fit. The constructors here build them; :func:`validate`
applies one to a parsed document and turns the first misfit into a :class:`CheckpointError`.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from ..errors import AdvcliError, CheckpointError

MAX_DOCUMENT_BYTES = 64 << 20
MAX_DEPTH = 64

Check = Callable[[Any, str], None]


class Invalid(Exception):
    """A field that does not fit its schema: where it is, what it should be, what it is."""

    def __init__(self, where: str, expected: str, value: Any = None, *, shown: bool = True) -> None:
        super().__init__(where)
        self.where, self.expected, self.value, self.shown = where, expected, value, shown

    def describe(self) -> str:
        field = f"'{self.where}'" if self.where else "the document"
        return f"{field} must be {self.expected}" + (f", got {describe_value(self.value)}" if self.shown else "")


def describe_value(value: Any, limit: int = 60) -> str:
    """A short JSON rendering of `value` for messages."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _join(where: str, key: object) -> str:
    return f"{where}.{key}" if where and isinstance(key, str) else (f"{where}[{key}]" if where else str(key))


def anything(value: Any, where: str) -> None:
    """Any JSON value (its depth is bounded when the document is read)."""


def string(*, choices: Optional[Sequence[str]] = None, pattern: Optional[str] = None, nonempty: bool = False,
           max_length: int = 4096, expected: Optional[str] = None) -> Check:
    compiled = re.compile(pattern) if pattern else None
    what = expected or (f"one of {', '.join(map(repr, choices))}" if choices else
                        "a non-empty string" if nonempty else "a string")

    def check(value: Any, where: str) -> None:
        if (not isinstance(value, str) or (nonempty and not value) or len(value) > max_length
                or (choices is not None and value not in choices) or (compiled and not compiled.fullmatch(value))):
            raise Invalid(where, what, value)

    return check


def integer(minimum: Optional[int] = None, maximum: Optional[int] = None) -> Check:
    what = "an integer" + (f" >= {minimum}" if minimum is not None and maximum is None else "") + (
        f" from {minimum} to {maximum}" if minimum is not None and maximum is not None else "")

    def check(value: Any, where: str) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or (minimum is not None and value < minimum) or (
                maximum is not None and value > maximum):
            raise Invalid(where, what, value)

    return check


def number(minimum: Optional[float] = None) -> Check:
    what = "a finite number" + (f" >= {minimum:g}" if minimum is not None else "")

    def check(value: Any, where: str) -> None:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or (
                minimum is not None and value < minimum):
            raise Invalid(where, what, value)

    return check


def boolean(value: Any, where: str) -> None:
    if not isinstance(value, bool):
        raise Invalid(where, "true or false", value)


def nullable(check: Check) -> Check:
    def nullable_check(value: Any, where: str) -> None:
        if value is not None:
            check(value, where)

    return nullable_check


def scalar(value: Any, where: str) -> None:
    """A string, a number, true, false or null."""
    if value is not None and not isinstance(value, (str, int, float, bool)):
        raise Invalid(where, "a string, a number or null", value)


def list_of(item: Check, *, min_items: int = 0, max_items: Optional[int] = None, what: str = "") -> Check:
    count = (f"{min_items} to {max_items}" if max_items is not None and max_items != min_items else
             f"{min_items}" if max_items is not None else f"at least {min_items}" if min_items else "")
    expected = f"a list of {count + ' ' if count else ''}{what or 'items'}"

    def check(value: Any, where: str) -> None:
        if not isinstance(value, list) or len(value) < min_items or (max_items is not None and len(value) > max_items):
            raise Invalid(where, expected, value)
        for index, element in enumerate(value):
            item(element, _join(where, index))

    return check


def mapping(required: Optional[Mapping[str, Check]] = None, optional: Optional[Mapping[str, Check]] = None, *,
            values: Optional[Check] = None, keys: Optional[Check] = None) -> Check:
    """An object with `required` and `optional` fields (others are allowed, and checked by `values`
    when given); `keys` checks every key."""
    required, optional = dict(required or {}), dict(optional or {})

    def check(value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise Invalid(where, "an object ({...})", value)
        for name in required:
            if name not in value:
                raise Invalid(_join(where, name), "present", shown=False)
        for name, element in value.items():
            if keys is not None:
                keys(name, _join(where, name))
            field = required.get(name) or optional.get(name) or values
            if field is not None:
                field(element, _join(where, name))

    return check


def all_of(*checks: Check) -> Check:
    def check(value: Any, where: str) -> None:
        for each in checks:
            each(value, where)

    return check


def _depth(document: Any) -> int:
    deepest, stack = 0, [(document, 1)]
    while stack:
        value, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(value, dict):
            stack.extend((element, depth + 1) for element in value.values())
        elif isinstance(value, list):
            stack.extend((element, depth + 1) for element in value)
    return deepest


def parse_document(text: str | bytes, source: str, *, error: type[AdvcliError] = CheckpointError) -> Any:
    """Parse JSON text, refusing what is not UTF-8 JSON or nests deeper than :data:`MAX_DEPTH`."""
    try:
        document = json.loads(text)
    except UnicodeDecodeError:
        raise error(f"{source}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise error(f"{source}: corrupt JSON ({exc})") from None
    except RecursionError:
        raise error(f"{source}: corrupt JSON (nested deeper than {MAX_DEPTH} levels)") from None
    if _depth(document) > MAX_DEPTH:
        raise error(f"{source}: corrupt JSON (nested deeper than {MAX_DEPTH} levels)")
    return document


def read_document(path: Path, *, error: type[AdvcliError] = CheckpointError) -> Any:
    """The JSON document in the file at `path`, read only if it is a plain file of sane size."""
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise error(f"{path}: not a file")
        if size > MAX_DOCUMENT_BYTES:
            raise error(f"{path}: {size} bytes, too large for a description (at most {MAX_DOCUMENT_BYTES})")
        data = path.read_bytes()
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror or exc}") from None
    return parse_document(data, str(path), error=error)


def validate(document: Any, schema: Check, source: str, *, error: type[AdvcliError] = CheckpointError) -> Any:
    """`document` when it fits `schema`; otherwise an `error` naming the first field that does not."""
    try:
        schema(document, "")
    except Invalid as misfit:
        raise error(f"{source}: {misfit.describe()}") from None
    return document
