"""What the editors of sources, models, destinations and syncs show and write.

The form of each kind is drawn from its pydantic config model (a connector's own model for
sources and destinations), so a new connector gets its form for free: each key becomes a
field of a kind (text, number, yes/no, choice, list, YAML, secret). Values sent back are
turned into YAML values here and laid over the file with
:func:`backhaul.config.yamledit.edit_yaml`; checking them is left to the project's own
validation (``backhaul validate --offline``) in :func:`backhaul.gitsave.save_files`.

Secrets never reach a file: a secret field holds the name of an environment variable and
is written as ``${env:NAME}``; a literal value at a secret-looking key is refused.
"""

from __future__ import annotations

import enum
import re
import types
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import Literal
from typing import Union
from typing import get_args
from typing import get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo as PydanticField
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from backhaul.config.models import ModelConfig
from backhaul.config.models import SyncConfig
from backhaul.config.project import Project
from backhaul.config.yamledit import dump_text
from backhaul.config.yamledit import plain
from backhaul.gitsave import Problem

KINDS = {
    "sources": "source",
    "models": "model",
    "destinations": "destination",
    "syncs": "sync",
    "channels": "alert channel",
}
# Kinds whose file starts with `type:`, the connector or channel kind its form is drawn from.
TYPED = ("sources", "destinations", "channels")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ENV_REF = re.compile(r"^\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}$")
_SECRET_WORDS = ("token", "password", "secret", "api_key", "apikey", "private_key", "passphrase")
MODEL_KEYS = ("source", "primary_key", "table", "dbt", "description", "tags")
# Every key of a sync file but `match` and `mappings`, which the mapping editor writes.
SYNC_KEYS = (
    "model",
    "destination",
    "object",
    "mode",
    "on_remove",
    "nulls",
    "non_finite",
    "schedule",
    "max_remove_pct",
    "batch_size",
    "concurrency",
    "tags",
    "description",
    "enabled",
    "alerts",
    "hooks",
    "writeback",
    "planner",
    "planner_schema",
)
Widget = Literal["text", "number", "bool", "choice", "list", "yaml", "secret"]


@dataclass
class FormField:
    """One key of a file as the editor shows it."""

    key: str
    widget: Widget
    required: bool = False
    description: str = ""
    choices: list[str] = field(default_factory=list)
    value: Any = None  # as the widget shows it (text, list, bool, env var name)


def is_secret(key: str, info: PydanticField | None = None) -> bool:
    """A key whose value is a secret: its name says so, or its description asks for
    ``${env:...}``."""
    low = key.lower()
    if any(word in low for word in _SECRET_WORDS):
        return True
    return bool(info is not None and info.description and "${env:" in info.description)


def _unwrap(tp: Any) -> tuple[Any, bool]:
    """The type without ``None`` and whether None was allowed."""
    origin = get_origin(tp)
    if origin is Union or origin is types.UnionType:
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
        return tp, type(None) in get_args(tp)
    return tp, False


def _widget(key: str, info: PydanticField) -> tuple[Widget, list[str]]:
    tp, _ = _unwrap(info.annotation)
    if get_origin(tp) is Literal:
        return "choice", [str(a) for a in get_args(tp)]
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "choice", [str(m.value) for m in tp]
    if tp is bool:
        return "bool", []
    if tp in (int, float):
        return "number", []
    if tp is str:
        return ("secret" if is_secret(key, info) else "text"), []
    if get_origin(tp) is list and get_args(tp) == (str,):
        return "list", []
    return "yaml", []


def model_fields(model: type[BaseModel], keys: tuple[str, ...] | None = None) -> list[FormField]:
    """The form of a config model: one field per key (all keys, or ``keys`` in order)."""
    by_key = {(info.alias or name): info for name, info in model.model_fields.items()}
    wanted = keys if keys is not None else tuple(k for k in by_key if k != "type")
    out = []
    for key in wanted:
        info = by_key[key]
        widget, choices = _widget(key, info)
        out.append(FormField(key, widget, info.is_required(), info.description or "", choices))
    return out


def _shown(widget: Widget, value: Any) -> Any:
    if value is None:
        return [] if widget == "list" else ("" if widget != "bool" else None)
    if widget == "secret":
        found = ENV_REF.match(str(value))
        return found.group(1) if found else ""
    if widget == "list":
        return [str(v) for v in value] if isinstance(value, list) else [str(value)]
    if widget == "yaml":
        return _yaml_text(value)
    if widget == "bool":
        return bool(value)
    return str(value)


def _yaml_text(value: Any) -> str:
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    return dump_text(yaml, value)


def fill(fields: list[FormField], data: dict[str, Any]) -> list[FormField]:
    """The fields with the values the file holds now."""
    for f in fields:
        f.value = _shown(f.widget, data.get(f.key))
        if f.widget == "secret" and data.get(f.key) and not f.value:
            f.description = (
                "This file holds a value written in it, not an environment variable: name "
                "one to replace it. " + f.description
            )
    return fields


def defs_of(project: Project, kind: str) -> dict[str, Any]:
    """The project's items of ``kind`` by name (channel files are read here: the project
    keeps them apart, for the alerts)."""
    if kind == "channels":
        from backhaul.alerts.config import load_channels

        return load_channels(project)[0]
    found: dict[str, Any] = getattr(project, kind)
    return found


def types_of(project: Project, kind: str) -> list[str]:
    """The ``type:`` values a file of a typed kind may have."""
    if kind == "channels":
        from backhaul.alerts.channels import CHANNEL_TYPES

        return sorted(CHANNEL_TYPES)
    return sorted(project.registry.sources if kind == "sources" else project.registry.destinations)


def form_for(
    kind: str, project: Project, data: dict[str, Any], type_: str | None
) -> list[FormField]:
    """The fields of a file of ``kind`` (``type_``: the connector of a source or destination)."""
    if kind == "models":
        fields = model_fields(ModelConfig, MODEL_KEYS)
        fields[0].widget, fields[0].choices = "choice", sorted(project.sources)
    elif kind == "syncs":
        fields = model_fields(SyncConfig, SYNC_KEYS)
        fields[0].widget, fields[0].choices = "choice", sorted(project.models)
        fields[1].widget, fields[1].choices = "choice", sorted(project.destinations)
    else:
        if not type_ or type_ not in types_of(project, kind):
            return []
        fields = model_fields(_config_model(project, kind, type_))
    return fill(fields, data)


def _config_model(project: Project, kind: str, type_: str) -> type[BaseModel]:
    if kind == "channels":
        from backhaul.alerts.channels import CHANNEL_TYPES

        return CHANNEL_TYPES[type_][0]
    load_cls = project.registry.source if kind == "sources" else project.registry.destination
    model: type[BaseModel] = load_cls(type_).config_model
    return model


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


def coerce(fields: list[FormField], sent: dict[str, Any]) -> tuple[dict[str, Any], list[Problem]]:
    """The YAML values of what the form sent (None removes a key) and the problems found.

    Only keys of the form are taken; an empty value removes its key, except a secret's,
    which keeps the value already in the file.
    """
    values: dict[str, Any] = {}
    problems: list[Problem] = []
    by_key = {f.key: f for f in fields}
    for key, raw in sent.items():
        f = by_key.get(key)
        if f is None:
            problems.append(Problem(f"`{key}` cannot be set from this form", key=key))
            continue
        try:
            value = _coerce_one(f, raw)
        except ValueError as exc:
            problems.append(Problem(str(exc), key=key))
            continue
        if value is _KEEP:
            continue
        values[key] = value
    for key, value in values.items():
        problems += [Problem(m, key=k) for k, m in literal_secrets(value, key)]
    return values, problems


_KEEP = object()


def _coerce_one(f: FormField, raw: Any) -> Any:
    if f.widget == "bool":
        return None if raw is None or raw == "" else bool(raw)
    if f.widget == "list":
        items = raw if isinstance(raw, list) else str(raw or "").split(",")
        found = [str(i).strip() for i in items if str(i).strip()]
        return found or None
    text = "" if raw is None else str(raw)
    if f.widget == "secret":
        name = text.strip()
        if not name:
            return _KEEP
        if name.startswith("${env:") and ENV_REF.match(name):
            return name
        if not ENV_NAME.match(name):
            raise ValueError(
                "name the environment variable that holds this secret (letters, digits and "
                "`_`, e.g. HUBSPOT_TOKEN); secrets are never written into the project's files"
            )
        return f"${{env:{name}}}"
    if not text.strip():
        return None
    if f.widget == "number":
        try:
            return _number(text.strip())
        except ValueError:
            raise ValueError(f"must be a number, not `{text.strip()}`") from None
    if f.widget == "yaml":
        try:
            return plain(_yaml_scalar(text))
        except (YAMLError, ValueError) as exc:
            raise ValueError(f"is not valid YAML: {str(exc).splitlines()[0]}") from None
    return text if "\n" in text else text.strip()


def _yaml_scalar(text: str) -> Any:
    return YAML(typ="safe", pure=True).load(text)


def literal_secrets(value: Any, key: str) -> list[tuple[str, str]]:
    """(key, message) for each secret-looking key holding a literal value, not a reference."""
    out: list[tuple[str, str]] = []
    if isinstance(value, dict):
        for k, v in value.items():
            out += literal_secrets(v, f"{key}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += literal_secrets(v, f"{key}.{i}")
    elif (
        isinstance(value, str)
        and value
        and is_secret(key.rsplit(".", 1)[-1])
        and "${env:" not in value
    ):
        out.append(
            (
                key,
                "write the name of an environment variable as `${env:NAME}`: secrets are "
                "never written into the project's files",
            )
        )
    return out


def _short(value: Any) -> str:
    text = str(value) if not isinstance(value, list | dict) else ""
    if isinstance(value, list) and all(not isinstance(v, dict | list) for v in value):
        text = ", ".join(str(v) for v in value)
    return text if text and len(text) <= 40 and "\n" not in text else ""


def change_message(kind: str, name: str, old: dict[str, Any] | None, new: dict[str, Any]) -> str:
    """A commit message naming what changed (``Edit sync s: mode upsert -> mirror``)."""
    what = KINDS[kind]
    if old is None:
        extra = ""
        if kind == "syncs":
            extra = f" ({new.get('model')} -> {new.get('destination')})"
        elif kind in TYPED:
            extra = f" ({new.get('type')})"
        return f"Create {what} {name}{extra}"
    parts = []
    for key in dict.fromkeys([*old, *new]):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if key == "mappings" and isinstance(a, list) and isinstance(b, list):
            parts.append(f"mappings ({len(a)} -> {len(b)} fields)" if len(a) != len(b) else key)
        elif a is None:
            parts.append(f"{key} set to {_short(b)}" if _short(b) else f"{key} added")
        elif b is None:
            parts.append(f"{key} removed")
        elif _short(a) and _short(b):
            parts.append(f"{key} {_short(a)} -> {_short(b)}")
        else:
            parts.append(key)
    return f"Edit {what} {name}: {', '.join(parts) or 'formatting'}"


__all__ = [
    "KINDS",
    "TYPED",
    "FormField",
    "change_message",
    "coerce",
    "defs_of",
    "fill",
    "form_for",
    "is_secret",
    "literal_secrets",
    "model_fields",
    "types_of",
]
