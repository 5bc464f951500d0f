"""Validators shared by the config models."""

from __future__ import annotations

from typing import Any

from pydantic import BeforeValidator


def _listed(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


# On a list of names: a file may also give one name (`primary_key: id`).
one_or_many = BeforeValidator(_listed, json_schema_input_type=str | list[str])

__all__ = ["one_or_many"]
