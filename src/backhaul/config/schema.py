"""JSON Schema of the project files, generated from the pydantic models (never by hand).

Editors use it for completion and inline errors: the YAML language server reads a
``# yaml-language-server: $schema=<path>`` line at the top of each file. Source and
destination schemas are unions over the config models of the registered connectors; a
connector that fails to import is left out with a warning instead of failing the export.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Annotated
from typing import Any
from typing import Literal
from typing import Union
from typing import get_origin

from pydantic import BaseModel
from pydantic import Field
from pydantic import TypeAdapter

from backhaul.config.models import ModelConfig
from backhaul.config.models import ProjectConfig
from backhaul.config.models import SyncConfig
from backhaul.plugins import Registry

DIALECT = "https://json-schema.org/draft/2020-12/schema"
# File kind -> schema file name; `backhaul.yml` gets `backhaul.schema.json`.
SCHEMA_FILES = {
    "project": "backhaul.schema.json",
    "source": "source.schema.json",
    "model": "model.schema.json",
    "destination": "destination.schema.json",
    "sync": "sync.schema.json",
    "audience_schema": "audience_schema.schema.json",
    "audience": "audience.schema.json",
    "priority_list": "priority_list.schema.json",
    "channel": "channel.schema.json",
}
TITLES = {
    "project": "Backhaul project (backhaul.yml)",
    "source": "Backhaul source (sources/*.yml)",
    "model": "Backhaul model (models/*.yml)",
    "destination": "Backhaul destination (destinations/*.yml)",
    "sync": "Backhaul sync (syncs/*.yml)",
    "audience_schema": "Backhaul audience schema (audience_schemas/*.yml)",
    "audience": "Backhaul audience (audiences/*.yml)",
    "priority_list": "Backhaul priority list (priority_lists/*.yml)",
    "channel": "Backhaul alert channel (channels/*.yml)",
}
FOLDER_OF = {
    "source": "sources",
    "model": "models",
    "destination": "destinations",
    "sync": "syncs",
    "audience_schema": "audience_schemas",
    "audience": "audiences",
    "priority_list": "priority_lists",
    "channel": "channels",
}


@dataclass
class SchemaBundle:
    """One JSON Schema per file kind, and the connectors that could not be included."""

    schemas: dict[str, dict[str, Any]]
    warnings: list[str] = field(default_factory=list)


def _connector_models(
    known: dict[str, str], load: Any, kind: str, warnings: list[str]
) -> list[type[BaseModel]]:
    models: list[type[BaseModel]] = []
    for type_ in sorted(known):
        try:
            model = load(type_).config_model
        except Exception as exc:  # one broken plugin must not stop the export
            warnings.append(
                f"{kind} type `{type_}` left out of the schema: cannot load {known[type_]} "
                f"({type(exc).__name__}: {exc})"
            )
            continue
        if model not in models:
            models.append(model)
    return models


def _has_type_literal(model: type[BaseModel]) -> bool:
    info = model.model_fields.get("type")
    return info is not None and get_origin(info.annotation) is Literal


def _union(models: list[type[BaseModel]]) -> Any:
    """A union tagged by ``type`` when every member declares ``type: Literal[...]``."""
    if not models:
        return dict[str, Any]  # no usable connector: accept any mapping
    if len(models) == 1:
        return models[0]
    union: Any = Union[tuple(models)]  # noqa: UP007 - built at run time from a tuple
    if all(_has_type_literal(m) for m in models):
        return Annotated[union, Field(discriminator="type")]
    return union


def _kinds(registry: Registry, warnings: list[str]) -> dict[str, Any]:
    sources = _connector_models(registry.sources, registry.source, "source", warnings)
    destinations = _connector_models(
        registry.destinations, registry.destination, "destination", warnings
    )
    from backhaul.audiences.audience import AudienceConfig
    from backhaul.audiences.priority import PriorityListConfig
    from backhaul.audiences.schema import AudienceSchemaConfig

    return {
        "project": ProjectConfig,
        "source": _union(sources),
        "model": ModelConfig,
        "destination": _union(destinations),
        "sync": SyncConfig,
        "audience_schema": AudienceSchemaConfig,
        "audience": AudienceConfig,
        "priority_list": PriorityListConfig,
        "channel": _channel_union(),
    }


def _channel_union() -> Any:
    from backhaul.alerts.channels import CHANNEL_TYPES

    return _union([model for model, _ in CHANNEL_TYPES.values()])


def schema_bundle(registry: Registry | None = None) -> SchemaBundle:
    """A standalone JSON Schema for each file kind, plus warnings about skipped connectors."""
    registry = registry if registry is not None else Registry.discover()
    warnings: list[str] = []
    schemas: dict[str, dict[str, Any]] = {}
    for kind, type_ in _kinds(registry, warnings).items():
        body = TypeAdapter(type_).json_schema()
        schema: dict[str, Any] = {"$schema": DIALECT, "title": TITLES[kind], **body}
        schema["title"] = TITLES[kind]
        if warnings and kind in ("source", "destination"):
            mine = [w for w in warnings if w.startswith(kind)]
            if mine:
                schema["$comment"] = "; ".join(mine)
        schemas[kind] = schema
    return SchemaBundle(schemas, warnings)


def project_schema(registry: Registry | None = None) -> dict[str, Any]:
    """All file kinds in one JSON Schema: shared ``$defs`` plus one entry per kind.

    ``$defs.project``, ``$defs.source``, ``$defs.model``, ``$defs.destination`` and
    ``$defs.sync`` are the schemas of the files of each kind. Connectors that could not be
    imported are listed under ``$comment``.
    """
    registry = registry if registry is not None else Registry.discover()
    warnings: list[str] = []
    kinds = _kinds(registry, warnings)
    mode: Literal["validation"] = "validation"
    inputs = [(kind, mode, TypeAdapter(tp)) for kind, tp in kinds.items()]
    refs, shared = TypeAdapter.json_schemas(inputs, ref_template="#/$defs/{model}")
    defs: dict[str, Any] = dict(shared.get("$defs", {}))
    for (kind, _), schema in refs.items():
        if kind in defs:  # pragma: no cover - a model named like a kind
            raise ValueError(f"schema definition `{kind}` is defined twice")
        defs[str(kind)] = {"title": TITLES[str(kind)], **schema}
    bundle: dict[str, Any] = {
        "$schema": DIALECT,
        "title": "Backhaul project files",
        "description": "One entry in $defs per file kind: " + ", ".join(SCHEMA_FILES),
        "$defs": defs,
    }
    if warnings:
        bundle["$comment"] = "; ".join(warnings)
    return bundle


def modeline(kind: str, file: str, schema_dir: str = ".backhaul/schema") -> str:
    """The YAML language server line for a file at ``file`` (relative to the project root).

    The schema path is written relative to the YAML file, which is how the language server
    resolves it.
    """
    depth = len(Path(file).parent.parts)
    prefix = "../" * depth
    return f"# yaml-language-server: $schema={prefix}{schema_dir}/{SCHEMA_FILES[kind]}"


def _readme(schema_dir: str, warnings: list[str]) -> str:
    lines = [
        "# JSON Schemas of the Backhaul project files",
        "",
        "Generated from the configuration models by `backhaul schema`; do not edit by hand.",
        "Editors with the YAML language server (VS Code's YAML extension, and others) use",
        "them for completion and inline errors when a file starts with a modeline:",
        "",
        "| file | first line |",
        "|---|---|",
    ]
    examples = {
        "project": "backhaul.yml",
        "source": "sources/warehouse.yml",
        "model": "models/users.yml",
        "destination": "destinations/crm.yml",
        "sync": "syncs/users_to_crm.yml",
        "audience_schema": "audience_schemas/people.yml",
        "audience": "audiences/eu_customers.yml",
        "priority_list": "priority_lists/offers.yml",
        "channel": "channels/team_slack.yml",
    }
    for kind, file in examples.items():
        lines.append(f"| `{file}` | `{modeline(kind, file, schema_dir)}` |")
    lines += [
        "",
        "The path is relative to the YAML file: add one `../` per subfolder level.",
    ]
    if warnings:
        lines += ["", "Left out (the connector could not be loaded):", ""]
        lines += [f"- {w}" for w in warnings]
    return "\n".join(lines) + "\n"


def write_schemas(
    out_dir: str | Path, registry: Registry | None = None, *, schema_dir: str = ".backhaul/schema"
) -> list[Path]:
    """Write one ``<kind>.schema.json`` per file kind and a README on the modelines.

    Args:
        out_dir: Folder to write to (created if needed).
        registry: Connector registry; default: built-ins plus installed entry points.
        schema_dir: ``out_dir`` as seen from the project root, for the modelines in the README.

    Returns:
        The files written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bundle = schema_bundle(registry)
    written: list[Path] = []
    for kind, schema in bundle.schemas.items():
        path = out / SCHEMA_FILES[kind]
        path.write_text(json.dumps(schema, indent=2, sort_keys=False) + "\n", encoding="utf-8")
        written.append(path)
    readme = out / "README.md"
    readme.write_text(_readme(schema_dir, bundle.warnings), encoding="utf-8")
    written.append(readme)
    return written


__all__ = [
    "SCHEMA_FILES",
    "SchemaBundle",
    "modeline",
    "project_schema",
    "schema_bundle",
    "write_schemas",
]
