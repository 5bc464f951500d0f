"""Non-finite floats (NaN, +Infinity, -Infinity) in values bound for JSON.

JSON has no token for them: Python's ``json`` writes bare ``NaN`` and ``Infinity``, which a
strict receiver refuses, often for a whole batch. These helpers find such values anywhere
in a record (inside lists and objects too) and replace them, for the engine's
``non_finite`` policy and for the JSON encoder's clear error. Negative zero is finite and
JSON carries it (``-0.0``); nothing here touches it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from collections.abc import Iterator
from decimal import Decimal
from typing import Any


class NonFiniteError(ValueError):
    """A value bound for JSON holds NaN or an infinity.

    Attributes:
        path: Where the value is, as ``records[3].score`` (empty for a bare value).
        text: ``NaN``, ``Infinity`` or ``-Infinity``.
    """

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.text = text
        where = f" at `{path}`" if path else ""
        super().__init__(f"the value{where} is {text}, which JSON cannot carry")


def is_non_finite(value: Any) -> bool:
    """Whether ``value`` is a float (or decimal) that is NaN or infinite."""
    if isinstance(value, float):
        return not math.isfinite(value)
    return isinstance(value, Decimal) and not value.is_finite()


def text_of(value: float | Decimal) -> str:
    """The name of a non-finite number as JavaScript spells it: ``NaN``, ``Infinity``,
    ``-Infinity``."""
    number = float(value)
    if math.isnan(number):
        return "NaN"
    return "Infinity" if number > 0 else "-Infinity"


def find(value: Any, path: str = "") -> tuple[str, str] | None:
    """``(path, text)`` of the first non-finite float in ``value``, or ``None``."""
    for where, found in _walk(value, path):
        return where, text_of(found)
    return None


def _walk(value: Any, path: str) -> Iterator[tuple[str, float | Decimal]]:
    if isinstance(value, float | Decimal):
        if is_non_finite(value):
            yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _walk(item, f"{path}[{i}]")


def replace(value: Any, by: Callable[[float | Decimal], Any]) -> Any:
    """``value`` with every non-finite number ``f`` replaced by ``by(f)`` (copied only where
    something changes)."""
    if isinstance(value, float | Decimal):
        return by(value) if is_non_finite(value) else value
    if isinstance(value, dict):
        items = {k: replace(v, by) for k, v in value.items()}
        return items if any(items[k] is not value[k] for k in value) else value
    if isinstance(value, list | tuple):
        replaced = [replace(v, by) for v in value]
        changed = any(a is not b for a, b in zip(replaced, value, strict=True))
        return replaced if changed else value
    return value


def as_null(value: float | Decimal) -> None:
    """Replacement for the ``null`` policy."""
    return None


__all__ = ["NonFiniteError", "as_null", "find", "is_non_finite", "replace", "text_of"]
