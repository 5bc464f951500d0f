"""The one Liquid environment of Backhaul, and what a template needs from it.

Mapping templates (``template:`` in a sync), webhook bodies and Slack messages all render
through :func:`liquid_environment`, and ``validate`` checks them against that same
environment, so a filter the runtime knows is a filter the checks know, and a name the
checks reject is a name the runtime would have rendered empty. An undefined variable is an
error (a typo must not blank a field), nothing is HTML-escaped, and the ``json`` filter
writes a value as JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from liquid import Environment
from liquid import StrictUndefined
from liquid.exceptions import LiquidError

from backhaul.errors import first_line


def _json_filter(value: Any) -> str:
    from backhaul.destinations.http.client import dumps_json

    return dumps_json(value).decode("utf-8")


def _sql_filter(value: Any) -> str:
    """``value`` as a SQL literal: NULL, TRUE/FALSE, a number, or quoted text."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def liquid_environment() -> Environment:
    """A Liquid environment: undefined variables are errors; adds the ``json`` and ``sql``
    filters."""
    env = Environment(undefined=StrictUndefined, autoescape=False)
    env.filters["json"] = _json_filter
    env.filters["sql"] = _sql_filter
    return env


@dataclass(frozen=True)
class TemplateCheck:
    """What a template source needs, found without rendering it.

    ``error`` is set (and the rest empty) when the source does not parse.
    """

    error: str | None = None
    error_line: int | None = None  # the line of the template the parse error is on
    variables: frozenset[str] = frozenset()  # root names the template reads
    # every variable path the template reads (`run.id` is ("run", "id"))
    paths: frozenset[tuple[str, ...]] = frozenset()
    unknown_filters: tuple[str, ...] = ()  # filters the environment does not have


def check_template(source: str, env: Environment | None = None) -> TemplateCheck:
    """Parse ``source`` and list the variables and unknown filters it uses."""
    env = env or liquid_environment()
    try:
        bound = env.from_string(source)
        analysis = bound.analyze()
    except LiquidError as exc:
        return TemplateCheck(error=_message(exc), error_line=_line(exc, source))
    unknown = tuple(sorted(name for name in analysis.filters if name not in env.filters))
    paths = frozenset(
        tuple(str(s) for s in var.segments) for uses in analysis.globals.values() for var in uses
    )
    return TemplateCheck(
        variables=frozenset(analysis.globals), paths=paths, unknown_filters=unknown
    )


def liquid_problem(source: str) -> str | None:
    """Why ``source`` cannot render (``"not valid Liquid: ..."``), or ``None`` when it can."""
    found = check_template(source)
    if found.error is not None:
        return f"not valid Liquid: {found.error}"
    if found.unknown_filters:
        return f"not valid Liquid: {unknown_filters_text(found.unknown_filters)}"
    return None


def unknown_filters_text(names: tuple[str, ...]) -> str:
    """``unknown filter `x` (...)``, naming where the known ones are listed."""
    listed = ", ".join(f"`{n}`" for n in names)
    noun = "filter" if len(names) == 1 else "filters"
    return f"unknown Liquid {noun} {listed} (the filters Backhaul knows are listed in docs/configuration.md)"


def _message(exc: LiquidError) -> str:
    # `message` is the bare reason; str() adds a multi-line excerpt of the template.
    text = getattr(exc, "message", None)
    if isinstance(text, str) and text.strip():
        return text.strip().splitlines()[0]
    return first_line(exc)


def _line(exc: LiquidError, source: str) -> int | None:
    """The line of ``source`` the error points at, when Liquid says where."""
    token = getattr(exc, "token", None)
    index = getattr(token, "start_index", -1)
    if not isinstance(index, int) or index < 0:
        return None
    return source.count("\n", 0, index) + 1


__all__ = [
    "TemplateCheck",
    "check_template",
    "liquid_environment",
    "liquid_problem",
    "unknown_filters_text",
]
