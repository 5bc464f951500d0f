"""``${env:NAME}`` references: find them, check them, and resolve them at run time.

Configs are loaded with references unresolved, so no secret value is kept on a loaded
project. :func:`resolve` makes a resolved copy just before a connector opens and returns
the values it substituted, so callers can hand them to the
:class:`~backhaul.observe.redact.Redactor`.

Syntax: ``${env:NAME}``, ``${env:NAME:-default}`` (default used when NAME is unset), and
``$${`` for a literal ``${``. Anything else starting with ``${`` is an error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from typing import TypeVar

from pydantic import BaseModel

from backhaul.config.project import Positions
from backhaul.errors import ConfigError
from backhaul.errors import ConfigErrors

T = TypeVar("T")

_REF = re.compile(r"^env:([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?$", re.DOTALL)


@dataclass(frozen=True, slots=True)
class _Ref:
    start: int
    end: int  # index after the closing brace
    name: str | None  # None for the `$${` escape
    default: str | None = None


class _BadRef(ValueError):
    """A ``${...}`` that is not a valid reference."""


def _scan(text: str) -> Iterator[_Ref]:
    """Yield the references (and escapes) in ``text``, left to right."""
    pos = 0
    while True:
        start = text.find("${", pos)
        if start < 0:
            return
        if start > 0 and text[start - 1] == "$":
            yield _Ref(start - 1, start + 2, None)
            pos = start + 2
            continue
        end = text.find("}", start + 2)
        if end < 0:
            raise _BadRef(f"unclosed reference `{_clip(text[start:])}`: write `${{env:NAME}}`")
        body = text[start + 2 : end]
        match = _REF.match(body)
        if match is None:
            raise _BadRef(
                f"unsupported reference `${{{_clip(body)}}}`: write `${{env:NAME}}` "
                "or `${env:NAME:-default}` (use `$${` for a literal `${`)"
            )
        yield _Ref(start, end + 1, match.group(1), match.group(2))
        pos = end + 1


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _walk(value: Any, key: str) -> Iterator[tuple[str, str]]:
    """Yield ``(dotted key, string)`` for every string inside ``value``."""
    if isinstance(value, str):
        yield key, value
    elif isinstance(value, BaseModel):
        for name, info in type(value).model_fields.items():
            yield from _walk(getattr(value, name), _join(key, info.alias or name))
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _walk(v, _join(key, str(k)))
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from _walk(v, _join(key, str(i)))


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _error(message: str, positions: Positions | None, key: str) -> ConfigError:
    file = positions.file.as_posix() if positions else None
    line = positions.line(key) if positions else None
    return ConfigError(message, file=file, line=line, key=key or None)


def references(value: Any) -> list[str]:
    """Names of the environment variables ``value`` refers to, without reading them.

    Malformed references are skipped here; :func:`check_references` reports them.
    """
    names: list[str] = []
    for _, text in _walk(value, ""):
        try:
            for ref in _scan(text):
                if ref.name is not None and ref.name not in names:
                    names.append(ref.name)
        except _BadRef:
            continue
    return names


def check_references(
    value: Any,
    *,
    positions: Positions | None,
    key_prefix: str = "",
    environ: Mapping[str, str] | None = None,
    syntax_only: bool = False,
) -> list[ConfigError]:
    """Report malformed references and unset variables, without reading any value.

    With ``syntax_only`` only malformed references are reported (the loader's check).
    """
    env = os.environ if environ is None else environ
    errors: list[ConfigError] = []
    for key, text in _walk(value, key_prefix):
        try:
            refs = list(_scan(text))
        except _BadRef as exc:
            errors.append(_error(str(exc), positions, key))
            continue
        for ref in refs:
            if syntax_only or ref.name is None or ref.default is not None:
                continue
            if ref.name not in env:
                errors.append(_missing(ref.name, positions, key))
    return errors


def _missing(name: str, positions: Positions | None, key: str) -> ConfigError:
    return _error(
        f"environment variable {name} is not set (referenced by `{key}`): "
        f"export it, or write `${{env:{name}:-default}}`",
        positions,
        key,
    )


def resolve(
    value: T,
    *,
    positions: Positions | None,
    key_prefix: str = "",
    environ: Mapping[str, str] | None = None,
) -> tuple[T, list[str]]:
    """Replace every ``${env:NAME}`` in ``value`` with the variable's value.

    Walks pydantic models, dicts, lists and strings; ``value`` itself is not changed.

    Args:
        value: A config model or plain data holding references.
        positions: Where the keys are in the YAML file, for error messages.
        key_prefix: Dotted key path of ``value`` inside its file.
        environ: Variables to read (default: ``os.environ``).

    Returns:
        The resolved copy and the list of substituted secret values (defaults written in
        the file are not secret and are not listed).

    Raises:
        ConfigError: A variable is not set or a reference is malformed (every problem is
            reported, as :class:`~backhaul.errors.ConfigErrors` when there are several).
    """
    env = os.environ if environ is None else environ
    secrets: list[str] = []
    errors: list[ConfigError] = []
    resolved = _resolve(value, key_prefix, env, positions, secrets, errors)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ConfigErrors(errors)
    return resolved, secrets


def _resolve(
    value: Any,
    key: str,
    env: Mapping[str, str],
    positions: Positions | None,
    secrets: list[str],
    errors: list[ConfigError],
) -> Any:
    if isinstance(value, str):
        return _resolve_text(value, key, env, positions, secrets, errors)
    if isinstance(value, BaseModel):
        changes: dict[str, Any] = {}
        for name, info in type(value).model_fields.items():
            old = getattr(value, name)
            new = _resolve(old, _join(key, info.alias or name), env, positions, secrets, errors)
            if new is not old:
                changes[name] = new
        return value.model_copy(update=changes) if changes else value
    if isinstance(value, Mapping):
        return {
            k: _resolve(v, _join(key, str(k)), env, positions, secrets, errors)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        items = [
            _resolve(v, _join(key, str(i)), env, positions, secrets, errors)
            for i, v in enumerate(value)
        ]
        return type(value)(items) if isinstance(value, tuple) else items
    return value


def _resolve_text(
    text: str,
    key: str,
    env: Mapping[str, str],
    positions: Positions | None,
    secrets: list[str],
    errors: list[ConfigError],
) -> str:
    if "${" not in text:
        return text
    try:
        refs = list(_scan(text))
    except _BadRef as exc:
        errors.append(_error(str(exc), positions, key))
        return text
    parts: list[str] = []
    pos = 0
    for ref in refs:
        parts.append(text[pos : ref.start])
        pos = ref.end
        if ref.name is None:
            parts.append("${")
            continue
        found = env.get(ref.name)
        if found is None:
            if ref.default is None:
                errors.append(_missing(ref.name, positions, key))
                continue
            parts.append(ref.default)
            continue
        if found and found not in secrets:
            secrets.append(found)
        parts.append(found)
    parts.append(text[pos:])
    return "".join(parts)


__all__ = ["check_references", "references", "resolve"]
