"""Liquid templates for HTTP connectors' bodies and messages (webhook, Slack).

They use Backhaul's one Liquid environment (:mod:`backhaul.templates`): an undefined
variable is an error, nothing is HTML-escaped, and the ``json`` filter writes a value as
JSON.
"""

from __future__ import annotations

from liquid import Environment

from backhaul.templates import first_line, liquid_environment, liquid_problem


def template_environment() -> Environment:
    """The environment bodies and messages render in (see :mod:`backhaul.templates`)."""
    return liquid_environment()


__all__ = ["first_line", "liquid_problem", "template_environment"]
