"""Liquid templates for HTTP connectors' bodies and messages (webhook, Slack).

One environment for all: an undefined variable is an error (a typo must not send an empty
field), nothing is HTML-escaped, and the ``json`` filter writes a value as JSON.
"""

from __future__ import annotations

from liquid import Environment, StrictUndefined
from liquid.exceptions import LiquidError

from backhaul.destinations.http.client import dumps_json


def template_environment() -> Environment:
    """A Liquid environment for bodies: undefined variables are errors; ``json`` filter."""
    env = Environment(undefined=StrictUndefined, autoescape=False)
    env.filters["json"] = lambda value: dumps_json(value).decode("utf-8")
    return env


def liquid_problem(source: str) -> str | None:
    """Why ``source`` does not compile (``"not valid Liquid: ..."``), or ``None`` when it does."""
    try:
        template_environment().from_string(source)
    except LiquidError as exc:
        return f"not valid Liquid: {first_line(exc)}"
    return None


def first_line(exc: BaseException) -> str:
    """The first line of an error's text (its type's name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
