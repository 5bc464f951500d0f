"""Load ``audience_schemas/``, ``audiences/`` and ``priority_lists/`` into the project, and
compile each audience and priority list into a model.

Called by :func:`backhaul.config.loader.load_project` with the files it read (so the same
YAML reading, position tracking and error format apply). Each audience becomes a model of
the same name: its SQL is the compiled audience (relative dates against the warehouse's
clock), its primary key the parent's key, its source the parent's source, so syncs use it
with ``model: <audience name>`` in any mode. A priority list becomes a model the same way:
the parent's key and the ``audience`` each person landed in.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import replace
from pathlib import Path
from typing import Any

from backhaul.audiences.audience import AudienceConfig
from backhaul.audiences.catalog import Catalog
from backhaul.audiences.compiler import Compiler
from backhaul.audiences.defs import AudienceDef
from backhaul.audiences.defs import AudienceSchemaDef
from backhaul.audiences.priority import PriorityListConfig
from backhaul.audiences.priority import PriorityListDef
from backhaul.audiences.priority import priority_query
from backhaul.audiences.schema import AudienceSchemaConfig
from backhaul.audiences.typecheck import Problem
from backhaul.audiences.typecheck import check_audience
from backhaul.audiences.typecheck import membership_cycles
from backhaul.audiences.types import TEMPORAL
from backhaul.config.models import ModelConfig
from backhaul.config.project import ModelDef
from backhaul.config.project import Positions
from backhaul.config.project import SourceDef
from backhaul.config.project import unknown_name
from backhaul.errors import ConfigError
from backhaul.plugins import Registry

FileRead = tuple[str, Path, dict[str, Any], Positions]


@dataclass(frozen=True)
class LoadedAudiences:
    schemas: dict[str, AudienceSchemaDef]
    audiences: dict[str, AudienceDef]
    models: dict[str, ModelDef]  # the project's models, audiences added, personal marked
    priority_lists: dict[str, PriorityListDef]


def _error(positions: Positions, key: str | None, message: str) -> ConfigError:
    return positions.error(message, key)


def dialect_of(source: SourceDef, registry: Registry) -> str:
    """The sqlglot dialect of a source: its class's ``dialect`` or ``kind``, else its type."""
    type_ = str(source.raw.get("type") or getattr(source.config, "type", ""))
    try:
        cls = registry.source(type_)
    except Exception:  # a broken plugin was reported by the loader already
        return type_
    return str(getattr(cls, "dialect", "") or getattr(cls, "kind", "") or type_)


def problems_to_errors(problems: Iterable[Problem], positions: Positions) -> list[ConfigError]:
    """Checker problems as ``file:line: key: message`` errors."""
    return [_error(positions, p.key, p.message) for p in problems]


def load_audiences(
    schema_files: Iterable[FileRead],
    audience_files: Iterable[FileRead],
    sources: Mapping[str, SourceDef],
    models: Mapping[str, ModelDef],
    registry: Registry,
    errors: list[ConfigError],
    priority_files: Iterable[FileRead] = (),
) -> LoadedAudiences:
    """Validate and resolve schemas and audiences; compile audiences into models.

    Problems are appended to ``errors``; an audience is compiled only when no audience or
    schema has a problem (its SQL could otherwise refer to something that is not there).
    """
    from backhaul.config.loader import validate

    schemas: dict[str, AudienceSchemaDef] = {}
    broken: set[str] = set()  # schema files with errors: their audiences are not checked
    for name, path, data, positions in schema_files:
        broken.add(name)
        config, found = validate(AudienceSchemaConfig, data, positions)
        errors.extend(found)
        if config is not None:
            schema = _resolve_schema(name, config, path, positions, sources, models, registry)
            if isinstance(schema, list):
                errors.extend(schema)
            else:
                schemas[name] = schema
                broken.discard(name)

    audiences: dict[str, AudienceDef] = {}
    for name, path, data, positions in audience_files:
        config, found = validate(AudienceConfig, data, positions)
        errors.extend(found)
        if name in models:
            errors.append(
                ConfigError(
                    f"audience `{name}` has the name of the model in models/: an audience is "
                    "a model too, so rename one",
                    file=positions.file.as_posix(),
                )
            )
        elif config is not None:
            audiences[name] = AudienceDef(name, config, path, positions)

    errors.extend(_audience_errors(audiences, schemas, broken))
    lists: dict[str, PriorityListDef] = {}
    for name, path, data, positions in priority_files:
        config, found = validate(PriorityListConfig, data, positions)
        errors.extend(found)
        if config is not None:
            shared = _priority_schema(name, config, positions, audiences, models)
            if isinstance(shared, list):
                errors.extend(shared)
            else:
                lists[name] = PriorityListDef(name, config, path, positions, shared)
    out_models = _mark_personal(dict(models), schemas)
    if not errors:
        compiled_defs: list[AudienceDef | PriorityListDef] = [*audiences.values(), *lists.values()]
        for compiled in compiled_defs:
            out_models[compiled.name] = compiled_model(compiled, schemas, audiences, out_models)
    return LoadedAudiences(schemas, audiences, out_models, lists)


def _priority_schema(
    name: str,
    config: PriorityListConfig,
    positions: Positions,
    audiences: Mapping[str, AudienceDef],
    models: Mapping[str, ModelDef],
) -> str | list[ConfigError]:
    """The one schema a priority list's audiences share; errors unless they exist, appear
    once and share one."""
    clash = "model in models/" if name in models else "audience" if name in audiences else None
    if clash is not None:
        message = (
            f"priority list `{name}` has the name of the {clash}: a priority list is a model "
            "too, so rename one"
        )
        return [ConfigError(message, file=positions.file.as_posix())]
    errors: list[ConfigError] = []
    schema: str | None = None
    for i, audience in enumerate(config.audiences):
        key = f"audiences.{i}"
        if audience in config.audiences[:i]:
            errors.append(_error(positions, key, f"audience `{audience}` is listed twice"))
        elif audience not in audiences:
            errors.append(_error(positions, key, unknown_name("audience", audience, audiences)))
        elif schema is None:
            schema = audiences[audience].schema
        elif audiences[audience].schema != schema:
            message = (
                f"audience `{audience}` is built on schema `{audiences[audience].schema}` and "
                f"`{config.audiences[0]}` on `{schema}`: a priority list needs one schema"
            )
            errors.append(_error(positions, key, message))
    if errors or schema is None:
        return errors
    return schema


def _resolve_schema(
    name: str,
    config: AudienceSchemaConfig,
    path: Path,
    positions: Positions,
    sources: Mapping[str, SourceDef],
    models: Mapping[str, ModelDef],
    registry: Registry,
) -> AudienceSchemaDef | list[ConfigError]:
    errors: list[ConfigError] = []
    used = [("parent.model", config.parent.model)]
    used += [(f"related.{n}.model", r.model) for n, r in config.related.items()]
    used += [(f"events.{n}.model", e.model) for n, e in config.events.items()]
    for where, model in used:
        if model not in models:
            errors.append(_error(positions, where, unknown_name("model", model, models)))
    if errors:
        return errors
    parent = models[config.parent.model]
    key = config.parent.key
    if key is None:
        if len(parent.config.primary_key) != 1:
            return [
                _error(
                    positions,
                    "parent.model",
                    f"model `{parent.name}` has a primary key of "
                    f"{len(parent.config.primary_key)} columns: set `parent.key` to the one "
                    "column that identifies a person",
                )
            ]
        key = parent.config.primary_key[0]
    source = parent.config.source
    for where, model in used[1:]:
        other = models[model].config.source
        if other != source:
            errors.append(
                _error(
                    positions,
                    where,
                    f"model `{model}` reads source `{other}` but the parent reads `{source}`: "
                    "an audience runs in one warehouse",
                )
            )
    for n, event in config.events.items():
        spec = event.columns.get(event.timestamp)
        if spec is not None and spec.type is not None and spec.type not in TEMPORAL:
            errors.append(
                _error(
                    positions,
                    f"events.{n}.timestamp",
                    f"the timestamp column `{event.timestamp}` is declared {spec.type}; "
                    "it must be a date or a timestamp",
                )
            )
    if source not in sources:
        errors.append(
            _error(
                positions,
                "parent.model",
                unknown_name("source", source, sources) + f"; model `{parent.name}` reads it",
            )
        )
    if errors:
        return errors
    return AudienceSchemaDef(
        name,
        config,
        Catalog.build(name, config, key),
        source,
        dialect_of(sources[source], registry),
        path,
        positions,
    )


def _audience_errors(
    audiences: Mapping[str, AudienceDef],
    schemas: Mapping[str, AudienceSchemaDef],
    broken: set[str],
) -> list[ConfigError]:
    errors: list[ConfigError] = []
    configs = {n: a.config for n, a in audiences.items()}
    for audience in audiences.values():
        schema = schemas.get(audience.schema)
        if schema is None and audience.schema in broken:
            continue  # the schema file's own errors say what to fix first
        if schema is None:
            errors.append(
                _error(
                    audience.positions,
                    "schema",
                    unknown_name("audience schema", audience.schema, schemas),
                )
            )
            continue
        problems = check_audience(
            audience.name, audience.config, schema.catalog, configs, dialect=schema.dialect
        )
        errors.extend(problems_to_errors(problems, audience.positions))
    for name, (key, loop) in sorted(membership_cycles(configs).items()):
        errors.append(
            _error(
                audiences[name].positions,
                key,
                f"audience membership loops ({loop}); an audience cannot contain itself",
            )
        )
    return errors


def _mark_personal(
    models: dict[str, ModelDef], schemas: Mapping[str, AudienceSchemaDef]
) -> dict[str, ModelDef]:
    """Record on each model the columns any schema marks personal (masked in previews)."""
    personal: dict[str, set[str]] = {}
    for schema in schemas.values():
        for table in schema.catalog.tables:
            personal.setdefault(table.model, set()).update(table.personal)
    for model, columns in personal.items():
        if columns and model in models:
            models[model] = replace(models[model], personal=frozenset(columns))
    return models


def _compiler(
    schema: AudienceSchemaDef,
    audiences: Mapping[str, AudienceDef],
    models: Mapping[str, ModelDef],
) -> Compiler:
    """The compiler of a schema's audiences, over the SQL of the models it binds."""
    return Compiler(
        schema.catalog,
        {n: a.config for n, a in audiences.items()},
        schema.dialect,
        {m: models[m].sql for m in schema.catalog.models},
    )


def compiled_model(
    compiled: AudienceDef | PriorityListDef,
    schemas: Mapping[str, AudienceSchemaDef],
    audiences: Mapping[str, AudienceDef],
    models: Mapping[str, ModelDef],
) -> ModelDef:
    """The model an audience or a priority list compiles to, keyed by the schema's parent
    and read from its source (SQL for the warehouse's own clock).

    An audience's model has the columns it asks for; a priority list's has the parent's key
    and ``audience``, the audience each person landed in.
    """
    schema = schemas[compiled.schema]
    compiler = _compiler(schema, audiences, models)
    parent = schema.catalog.parent
    audience: str | None = None
    if isinstance(compiled, AudienceDef):
        sql = compiler.render(compiler.members(compiled.name, compiled.config))
        columns = compiler.output_columns(compiled.config)
        personal = parent.personal & set(columns) if columns else parent.personal
        audience = compiled.name
    else:
        sql = compiler.render(priority_query(compiler, list(compiled.config.audiences)))
        personal = parent.personal & frozenset({parent.key})
    config = ModelConfig(
        source=schema.source,
        primary_key=[parent.key],
        sql=sql,
        description=compiled.config.description,
        tags=list(compiled.config.tags),
    )
    return ModelDef(
        compiled.name,
        config,
        sql,
        None,
        compiled.positions,
        audience=audience,
        personal=personal,
    )


__all__ = [
    "LoadedAudiences",
    "compiled_model",
    "dialect_of",
    "load_audiences",
]
