"""Run the test cases of audience files on in-memory DuckDB: no warehouse, no credentials.

Each case gives fixture rows per model (by model name) and the keys expected in and out.
The case's rows become DuckDB tables standing in for the models, the audience is compiled
for DuckDB against them (``now`` as the case says), and the selected keys are compared with
the expectations. Columns the schema declares or the conditions use but the rows leave out
are created empty, so a case only writes the columns it is about.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from datetime import date
from datetime import datetime
from typing import Any

import duckdb
from sqlglot import exp

from backhaul.audiences.audience import AudienceConfig
from backhaul.audiences.audience import AudienceTest
from backhaul.audiences.catalog import Catalog
from backhaul.audiences.catalog import Table
from backhaul.audiences.compiler import Compiler
from backhaul.audiences.compiler import col
from backhaul.audiences.compiler import ident
from backhaul.audiences.conditions import AudienceCondition
from backhaul.audiences.conditions import ColumnCondition
from backhaul.audiences.conditions import EventCondition
from backhaul.audiences.conditions import RelatedCondition
from backhaul.audiences.conditions import walk
from backhaul.audiences.defs import AudienceSchemaDef
from backhaul.audiences.typecheck import effective_type
from backhaul.audiences.types import ColumnType
from backhaul.audiences.types import coerce
from backhaul.audiences.types import type_of_value
from backhaul.config.project import Project
from backhaul.errors import ConfigError

DUCK_TYPES = {
    ColumnType.STRING: "VARCHAR",
    ColumnType.NUMBER: "DOUBLE",
    ColumnType.BOOLEAN: "BOOLEAN",
    ColumnType.DATE: "DATE",
    ColumnType.TIMESTAMP: "TIMESTAMP",
}


@dataclass(frozen=True)
class CaseResult:
    """The outcome of one test case.

    Attributes:
        missing: Keys expected in the audience that it did not select.
        unexpected: Keys expected out that it selected.
        error: Why the case could not run (bad fixture rows, SQL error); a failure.
    """

    audience: str
    case: str
    missing: list[Any] = field(default_factory=list)
    unexpected: list[Any] = field(default_factory=list)
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and not self.missing and not self.unexpected


class FixtureError(Exception):
    """A fixture value that does not fit its column."""


def _case_now(case: AudienceTest) -> datetime | None:
    if case.now is None:
        return None
    read = coerce(case.now, ColumnType.TIMESTAMP)
    return read if isinstance(read, datetime) else datetime(read.year, read.month, read.day)


def _used_columns(
    config: AudienceConfig, catalog: Catalog, audiences: Mapping[str, AudienceConfig]
) -> dict[str, dict[str, ColumnType | None]]:
    """Per model, the columns the conditions test (through referenced audiences too)."""
    used: dict[str, dict[str, ColumnType | None]] = {}

    def note(table: Table, cond: ColumnCondition) -> None:
        kind = effective_type(table, cond.column, cond.op, cond.value)
        current = used.setdefault(table.model, {})
        if current.get(cond.column) is None:
            current[cond.column] = kind

    pending, seen = [config], set()
    while pending:
        for _, cond in walk(pending.pop().conditions, "conditions"):
            if isinstance(cond, ColumnCondition):
                note(catalog.parent, cond)
            elif isinstance(cond, RelatedCondition) and cond.related in catalog.related:
                for w in cond.where:
                    note(catalog.related[cond.related], w)
            elif isinstance(cond, EventCondition) and cond.event in catalog.events:
                for w in cond.where:
                    note(catalog.events[cond.event], w)
            elif isinstance(cond, AudienceCondition) and cond.audience not in seen:
                seen.add(cond.audience)
                if cond.audience in audiences:
                    pending.append(audiences[cond.audience])
    return used


def _join_hints(catalog: Catalog, case: AudienceTest) -> dict[str, dict[str, ColumnType]]:
    """Types for join columns a case leaves empty, from the column they join to."""
    parent = catalog.parent
    pairs = [
        ((parent.model, t.parent_key or parent.key), (t.model, t.key))
        for t in catalog.related.values()
    ]
    pairs += [((parent.model, parent.key), (t.model, t.key)) for t in catalog.events.values()]
    declared = {(t.model, c): k for t in catalog.tables for c, k in t.columns.items() if k}
    hints: dict[str, dict[str, ColumnType]] = {}
    for a, b in pairs:
        for here, there in ((a, b), (b, a)):
            values = [r.get(there[1]) for r in case.rows.get(there[0], [])]
            kinds = {type_of_value(v) for v in values if v is not None}
            kind = next(iter(kinds)) if len(kinds) == 1 else declared.get(there)
            if kind is not None:
                hints.setdefault(here[0], {}).setdefault(here[1], kind)
    return hints


def _model_columns(
    catalog: Catalog, model: str, used: dict[str, ColumnType | None]
) -> dict[str, ColumnType | None]:
    """Declared columns, keys and used columns of one model, with what is known of types."""
    columns: dict[str, ColumnType | None] = {}

    def add(name: str | None, kind: ColumnType | None) -> None:
        if name is not None and columns.get(name) is None:
            columns[name] = kind

    for table in catalog.tables:
        if table.model == model:
            for name, kind in table.columns.items():
                add(name, kind)
            add(table.key, None)
            add(table.timestamp, table.type_of(table.timestamp or "") or ColumnType.TIMESTAMP)
        if table.kind == "related" and catalog.parent.model == model:
            add(table.parent_key, None)
    for name, kind in used.items():
        add(name, kind)
    return columns


def _fixture_type(name: str, values: list[Any], known: ColumnType | None) -> ColumnType | None:
    found = [v for v in values if v is not None]
    if known is not None:
        return known
    kinds = {type_of_value(v) for v in found}
    if None in kinds:
        raise FixtureError(f"column `{name}` holds a value that is not text, a number or a date")
    if kinds == {ColumnType.DATE, ColumnType.TIMESTAMP}:
        return ColumnType.TIMESTAMP
    if len(kinds) > 1:
        shown = " and ".join(sorted(str(k) for k in kinds))
        raise FixtureError(f"column `{name}` mixes {shown} values; use one type")
    return next(iter(kinds)) if kinds else None


def _duck_type(kind: ColumnType | None, values: list[Any]) -> str:
    if kind is None:
        return "VARCHAR"
    if kind is ColumnType.NUMBER and all(
        isinstance(v, int) and not isinstance(v, bool) for v in values if v is not None
    ):
        return "BIGINT"
    return DUCK_TYPES[kind]


def _create(
    con: duckdb.DuckDBPyConnection,
    table: str,
    columns: dict[str, ColumnType | None],
    rows: list[dict[str, Any]],
) -> None:
    names = list(dict.fromkeys([*columns, *(k for r in rows for k in r)]))
    types: list[str] = []
    for name in names:
        values = [r.get(name) for r in rows]
        kind = _fixture_type(name, values, columns.get(name))
        read = []
        for v in values:
            try:
                read.append(None if v is None or kind is None else coerce(v, kind))
            except ValueError as exc:
                raise FixtureError(f"column `{name}` {exc}") from None
        for r, v in zip(rows, read, strict=True):
            if name in r:
                r[name] = v
        types.append(_duck_type(kind, read))
    defs = ", ".join(
        f"{ident(n).sql(dialect='duckdb')} {t}" for n, t in zip(names, types, strict=True)
    )
    quoted = ident(table).sql(dialect="duckdb")
    con.execute(f"CREATE TABLE {quoted} ({defs})")
    if rows:
        marks = ", ".join("?" for _ in names)
        con.executemany(
            f"INSERT INTO {quoted} VALUES ({marks})", [[r.get(n) for n in names] for r in rows]
        )


def run_case(
    schema: AudienceSchemaDef,
    audiences: Mapping[str, AudienceConfig],
    name: str,
    config: AudienceConfig,
    case: AudienceTest,
) -> CaseResult:
    """Run one case of audience ``name``; never raises for a problem in the case itself."""
    catalog = schema.catalog
    used = _used_columns(config, catalog, audiences)
    for model, hinted in _join_hints(catalog, case).items():
        for column, kind in hinted.items():
            if used.setdefault(model, {}).get(column) is None:
                used[model][column] = kind
    con = duckdb.connect(":memory:")
    try:
        queries: dict[str, str] = {}
        for i, model in enumerate(catalog.models):
            table = f"fixture_{i}_{model}"
            rows = [dict(r) for r in case.rows.get(model, [])]
            try:
                _create(con, table, _model_columns(catalog, model, used.get(model, {})), rows)
            except FixtureError as exc:
                return CaseResult(name, case.name, error=f"rows of `{model}`: {exc}")
            queries[model] = f"SELECT * FROM {ident(table).sql(dialect='duckdb')}"
        compiler = Compiler(catalog, audiences, "duckdb", queries, now=_case_now(case))
        key = catalog.parent.key
        members = compiler.members(name, config, splits=False).subquery("m", copy=False)
        sql = compiler.render(exp.select(col("m", key), copy=False).from_(members, copy=False))
        try:
            selected = {_norm(r[0]) for r in con.execute(sql).fetchall()}
        except duckdb.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return CaseResult(name, case.name, error=f"the audience SQL fails: {first}")
    finally:
        con.close()
    missing = [k for k in case.expect_in if _norm(k) not in selected]
    unexpected = [k for k in case.expect_out if _norm(k) in selected]
    return CaseResult(name, case.name, missing, unexpected)


def _norm(key: Any) -> str:
    """Keys compare by their text, so ``1`` in YAML matches an integer or a text key."""
    if isinstance(key, float) and key.is_integer():
        return str(int(key))
    if isinstance(key, datetime | date):
        return key.isoformat()
    return str(key)


def run_tests(project: Project, names: list[str] | None = None) -> list[CaseResult]:
    """Run the test cases of the named audiences (default: every audience), in name order.

    Raises:
        ConfigError: A name is not an audience of the project.
    """
    chosen = sorted(project.audiences) if not names else list(dict.fromkeys(names))
    unknown = [n for n in chosen if n not in project.audiences]
    if unknown:
        known = ", ".join(sorted(project.audiences)) or "none"
        raise ConfigError(f"unknown audience `{unknown[0]}` (known: {known})")
    configs = {n: a.config for n, a in project.audiences.items()}
    results: list[CaseResult] = []
    for name in chosen:
        audience = project.audiences[name]
        schema = project.audience_schemas[audience.schema]
        for case in audience.config.tests:
            results.append(run_case(schema, configs, name, audience.config, case))
    return results


__all__ = ["CaseResult", "run_case", "run_tests"]
