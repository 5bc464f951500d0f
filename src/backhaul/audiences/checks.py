"""``backhaul validate`` for audiences: the schemas and conditions against the warehouse.

At load, audiences are checked with the types the schema declares. Here each schema's
models are asked for their columns (``Source.columns``, which plans the SQL without
running it), and then:

- every key, timestamp and declared column must be in its model's output, with the
  declared type when one is given;
- every condition is checked again with the warehouse's types;
- a column whose type the schema leaves out must have the type its values suggest (the
  compiled SQL reads values by that type), else the schema must declare it;
- the compiled audience SQL must plan in the warehouse.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from backhaul.audiences.catalog import Catalog
from backhaul.audiences.catalog import Table
from backhaul.audiences.conditions import ColumnCondition
from backhaul.audiences.conditions import EventCondition
from backhaul.audiences.conditions import RelatedCondition
from backhaul.audiences.conditions import walk
from backhaul.audiences.defs import AudienceDef
from backhaul.audiences.defs import AudienceSchemaDef
from backhaul.audiences.loading import problems_to_errors
from backhaul.audiences.typecheck import Problem
from backhaul.audiences.typecheck import check_audience
from backhaul.audiences.typecheck import effective_type
from backhaul.audiences.types import from_warehouse
from backhaul.config.project import Positions
from backhaul.config.project import Project
from backhaul.errors import BackhaulError
from backhaul.errors import ConfigError


def _error(positions: Positions, key: str | None, message: str) -> ConfigError:
    return ConfigError(message, file=positions.file.as_posix(), line=positions.line(key), key=key)


def audience_errors(project: Project) -> tuple[list[ConfigError], set[str]]:
    """Problems of every schema and audience against the warehouse.

    Returns:
        The errors, and the names of the audiences that have one (their models' SQL need
        not be checked again).
    """
    errors: list[ConfigError] = []
    failed: set[str] = set()
    for name in sorted(project.audience_schemas):
        schema = project.audience_schemas[name]
        members = {n: a for n, a in project.audiences.items() if a.schema == name}
        found, bad = _check_schema(project, schema, members)
        errors += found
        failed |= bad
    return errors, failed


def audience_errors_of(project: Project, name: str) -> list[ConfigError]:
    """Problems of the audience ``name`` (and of its schema) against the warehouse; empty
    when ``name`` is not an audience. The check a sync of an audience passes before it runs."""
    audience = project.audiences.get(name)
    schema = project.audience_schemas.get(audience.schema) if audience is not None else None
    if audience is None or schema is None:
        return []
    return _check_schema(project, schema, {name: audience})[0]


def _check_schema(
    project: Project, schema: AudienceSchemaDef, audiences: Mapping[str, AudienceDef]
) -> tuple[list[ConfigError], set[str]]:
    from backhaul.engine.workspace import open_source

    try:
        source = open_source(project, project.models[schema.catalog.parent.model])
    except BackhaulError:
        return [], set()  # the source's own problem is reported by the project checks
    try:
        types: dict[str, dict[str, str]] = {}
        for model in schema.catalog.models:
            try:
                types[model] = dict(source.columns(project.models[model].sql))
            except BackhaulError:
                continue  # a model whose SQL fails is reported by the project checks
        errors = _schema_errors(schema, types)
        if errors:
            return errors, set(audiences)
        bound = schema.catalog.with_warehouse(types)
        configs = {n: a.config for n, a in project.audiences.items()}
        failed: set[str] = set()
        for name in sorted(audiences):
            audience = audiences[name]
            problems = check_audience(name, audience.config, bound, configs, dialect=schema.dialect)
            problems += _undeclared(audience, schema.catalog, bound)
            if not problems and name in project.models:
                problems += _plans(source, project.models[name].sql)
            if problems:
                failed.add(name)
                errors += problems_to_errors(problems, audience.positions)
        return errors, failed
    finally:
        source.close()


def _plans(source: Any, sql: str) -> list[Problem]:
    try:
        source.columns(sql)
    except BackhaulError as exc:
        first = exc.message.strip().splitlines()[0] if exc.message.strip() else "unknown error"
        return [Problem("conditions", f"the compiled audience SQL fails in the warehouse: {first}")]
    return []


def _schema_errors(
    schema: AudienceSchemaDef, types: dict[str, dict[str, str]]
) -> list[ConfigError]:
    errors: list[ConfigError] = []
    pos = schema.positions
    config = schema.config
    sections: list[tuple[str, Table, Any]] = [("parent", schema.catalog.parent, config.parent)]
    sections += [(f"related.{n}", schema.catalog.related[n], r) for n, r in config.related.items()]
    sections += [(f"events.{n}", schema.catalog.events[n], e) for n, e in config.events.items()]
    for prefix, table, spec in sections:
        have = types.get(table.model)
        if have is None:
            continue
        wanted: list[tuple[str, str | None]] = [(f"{prefix}.key", table.key)]
        if table.kind == "related":
            wanted.append((f"{prefix}.parent_key", table.parent_key))
        if table.kind == "event":
            wanted.append((f"{prefix}.timestamp", table.timestamp))
        for key, column in wanted:
            model = schema.catalog.parent.model if key.endswith("parent_key") else table.model
            columns = types.get(model, {})
            if column is not None and columns and column not in columns:
                errors.append(
                    _error(
                        pos,
                        key,
                        f"`{column}` is not in the output of model `{model}` "
                        f"(columns: {', '.join(columns)})",
                    )
                )
        for column, declared in spec.columns.items():
            key = f"{prefix}.columns.{column}"
            if column not in have:
                errors.append(
                    _error(
                        pos,
                        key,
                        f"`{column}` is not in the output of model `{table.model}` "
                        f"(columns: {', '.join(have)})",
                    )
                )
            elif declared.type is not None:
                actual = from_warehouse(have[column])
                if actual is not None and actual != declared.type:
                    errors.append(
                        _error(
                            pos,
                            key,
                            f"declared {declared.type}, but the warehouse type "
                            f"is {have[column]} ({actual}); fix `type`",
                        )
                    )
        if (
            table.kind == "event"
            and table.timestamp in have
            and table.timestamp not in spec.columns
        ):
            actual = from_warehouse(have[table.timestamp or ""])
            if actual is not None and actual.value not in ("date", "timestamp"):
                errors.append(
                    _error(
                        pos,
                        f"{prefix}.timestamp",
                        f"`{table.timestamp}` is "
                        f"{have[table.timestamp or '']} in the warehouse, not a date or timestamp",
                    )
                )
    return errors


def _undeclared(audience: AudienceDef, declared: Catalog, bound: Catalog) -> list[Problem]:
    """Columns the audience reads by its values' type where the warehouse says otherwise."""
    problems: list[Problem] = []
    tests: list[tuple[str, Table, Table, ColumnCondition]] = []
    for key, cond in walk(audience.config.conditions, "conditions"):
        if isinstance(cond, ColumnCondition):
            tests.append((key, declared.parent, bound.parent, cond))
        elif isinstance(cond, RelatedCondition) and cond.related in declared.related:
            tests += [
                (f"{key}.where.{j}", declared.related[cond.related], bound.related[cond.related], w)
                for j, w in enumerate(cond.where)
            ]
        elif isinstance(cond, EventCondition) and cond.event in declared.events:
            tests += [
                (f"{key}.where.{j}", declared.events[cond.event], bound.events[cond.event], w)
                for j, w in enumerate(cond.where)
            ]
    for key, before, after, cond in tests:
        read = effective_type(before, cond.column, cond.op, cond.value)
        actual = after.type_of(cond.column)
        if read is not None and actual is not None and read != actual:
            problems.append(
                Problem(
                    f"{key}.column",
                    f"`{cond.column}` is {actual} in the warehouse but the audience reads it "
                    f"as {read} from its value: declare `{cond.column}: {actual}` in the "
                    f"columns of `{before.model}` in the schema",
                )
            )
    return problems


__all__ = ["audience_errors"]
