"""Liquid templates for HTTP connectors' bodies and messages (webhook, Slack).

They use Backhaul's one Liquid environment (:mod:`backhaul.templates`): an undefined
variable is an error, nothing is HTML-escaped, and the ``json`` filter writes a value as
JSON.
"""

from __future__ import annotations

from typing import Any

from liquid import Environment

from backhaul.templates import liquid_environment
from backhaul.templates import liquid_problem

# What a template rendered for one row reads besides the row's own fields.
ROW_VARIABLES = ("record", "operation", "key")


def template_environment() -> Environment:
    """The environment bodies and messages render in (see :mod:`backhaul.templates`)."""
    return liquid_environment()


def row_variables(record: dict[str, Any], operation: str, key: str) -> dict[str, Any]:
    """The variables of a template rendered for one row: its fields by name, and
    :data:`ROW_VARIABLES` (the whole record, the operation and the row's key)."""
    return {**record, "record": record, "operation": operation, "key": key}


__all__ = [
    "ROW_VARIABLES",
    "liquid_problem",
    "row_variables",
    "template_environment",
]
