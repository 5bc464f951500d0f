"""Ask the warehouse about an audience: size, size per condition, sample, breakdown, overlap,
priority lists.

Everything runs through the project's source classes (``Source.stream``), so it works on
any warehouse the compiler has a dialect for; it is tested on DuckDB and Postgres. An
:class:`Explorer` holds one open source and one compiler; the audience may be a saved one
(by name) or an unsaved :class:`AudienceConfig` being edited::

    with open_explorer(project, "people") as ex:
        size = ex.size("enterprise_eu", project.audiences["enterprise_eu"].config)
        rows = ex.sample("enterprise_eu", config).rows

Personal-data columns are masked inside the warehouse (``'***'``), so their values never
leave it through these functions.
"""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlglot import exp

from backhaul import pyvalues
from backhaul.audiences.audience import SPLIT_COLUMN
from backhaul.audiences.audience import AudienceConfig
from backhaul.audiences.audience import Splits
from backhaul.audiences.compiler import PARENT
from backhaul.audiences.compiler import Compiler
from backhaul.audiences.compiler import col
from backhaul.audiences.compiler import combine
from backhaul.audiences.compiler import ident
from backhaul.audiences.conditions import AudienceCondition
from backhaul.audiences.conditions import ColumnCondition
from backhaul.audiences.conditions import Condition
from backhaul.audiences.conditions import EventCondition
from backhaul.audiences.conditions import GroupCondition
from backhaul.audiences.conditions import RelatedCondition
from backhaul.audiences.conditions import SqlCondition
from backhaul.audiences.defs import AudienceSchemaDef
from backhaul.audiences.splits import bucket_expr
from backhaul.audiences.splits import group_bounds
from backhaul.audiences.splits import holdout_bound
from backhaul.config.project import Project
from backhaul.errors import BackhaulError
from backhaul.errors import ConfigError

SAMPLE_ROWS = 25
SUGGESTED_VALUES = 50
MASK = "***"


@dataclass(frozen=True)
class ConditionSize:
    """One top-level condition: members it matches alone, and with the ones before it."""

    key: str  # ``conditions.N`` in the audience file
    label: str
    alone: int
    cumulative: int


@dataclass(frozen=True)
class AudienceSize:
    """How many people the audience holds.

    Attributes:
        parent: Rows of the parent with a key (everyone the audience could hold).
        matched: Rows matching the conditions.
        holdout: Matched rows held out by the splits.
        members: Matched rows that syncs receive (``matched - holdout``).
        splits: Members per split group (empty without groups).
        conditions: Each top-level condition's count alone and cumulated in order.
    """

    parent: int
    matched: int
    holdout: int
    members: int
    splits: dict[str, int]
    conditions: list[ConditionSize]


@dataclass(frozen=True)
class Sample:
    columns: list[str]
    rows: list[list[Any]]
    masked: list[str]  # the columns shown as ``***``


@dataclass(frozen=True)
class Breakdown:
    column: str
    values: list[tuple[Any, int]]  # most frequent first
    other: int  # members whose value is not among ``values``


@dataclass(frozen=True)
class Overlap:
    first: int
    second: int
    both: int

    @property
    def only_first(self) -> int:
        return self.first - self.both

    @property
    def only_second(self) -> int:
        return self.second - self.both


def describe(cond: Condition) -> str:
    """A short plain-text label of a condition, for tables and charts."""
    if isinstance(cond, ColumnCondition):
        shown = "" if cond.value is None else f" {cond.value}"
        days = "" if cond.days is None else f" {cond.days} days"
        return f"{cond.column} {cond.op}{shown}{days}"
    if isinstance(cond, RelatedCondition):
        kind, n = cond.count_rule()
        return f"has {kind.replace('_', ' ')} {n} {cond.related}" + (
            " where ..." if cond.where else ""
        )
    if isinstance(cond, EventCondition):
        timed = cond.first or cond.last
        if timed is not None:
            which = "first" if cond.first else "last"
            return f"{which} {cond.event} {timed.op}"
        kind, n = cond.count_rule()
        return f"did {cond.event} {kind.replace('_', ' ')} {n} times"
    if isinstance(cond, AudienceCondition):
        return ("not in " if cond.negated else "in ") + cond.audience
    if isinstance(cond, SqlCondition):
        return f"sql: {cond.sql}"
    if isinstance(cond, GroupCondition):
        return f"{cond.match} of {len(cond.items)} conditions"
    return type(cond).__name__  # pragma: no cover


def _count_if(condition: exp.Expr) -> exp.Expr:
    return exp.Count(this=exp.Case().when(condition, exp.Literal.number(1), copy=False))


@dataclass
class Explorer:
    """One schema's audiences against one open warehouse connection."""

    schema: AudienceSchemaDef
    compiler: Compiler
    source: Any  # a backhaul.sources Source

    def _rows(self, query: exp.Expr) -> tuple[list[str], list[list[Any]]]:
        sql = self.compiler.render(query)
        table = self.source.stream(sql).read_all()
        names = list(table.schema.names)
        return names, [list(row.values()) for row in pyvalues.rows(table)]

    def sql(self, name: str, config: AudienceConfig) -> str:
        """The audience model's SQL ("view SQL")."""
        return self.compiler.render(self.compiler.members(name, config))

    def size(self, name: str, config: AudienceConfig) -> AudienceSize:
        """Counts in one pass over the parent (each condition evaluated once per row)."""
        c = self.compiler
        key = col(PARENT, c.catalog.parent.key)
        # Null may stand for false in the counts unless a `none` negates the flags.
        filtering = config.match != "none"
        flags = [c.condition(cond, filtering=filtering) for cond in config.conditions]
        inner: list[exp.Expr] = [
            exp.alias_(f, ident(f"c{i}"), copy=False) for i, f in enumerate(flags)
        ]
        if config.splits is not None:
            inner.append(exp.alias_(bucket_expr(key, config.splits, name), ident("b"), copy=False))
        if not inner:
            inner.append(exp.alias_(exp.true(), ident("c_all"), copy=False))
        q = "q"
        refs = [col(q, f"c{i}") for i in range(len(flags))]
        matched = combine(config.match, [r.copy() for r in refs])
        outer: list[exp.Expr] = [
            exp.alias_(exp.Count(this=exp.Star()), ident("parent"), copy=False),
            exp.alias_(_count_if(matched), ident("matched"), copy=False),
        ]
        for i, ref in enumerate(refs):
            outer.append(exp.alias_(_count_if(ref.copy()), ident(f"alone{i}"), copy=False))
            upto = combine(config.match, [r.copy() for r in refs[: i + 1]])
            outer.append(exp.alias_(_count_if(upto), ident(f"cumulative{i}"), copy=False))
        bucket = col(q, "b")
        held = holdout_bound(config.splits) if config.splits is not None else None
        if held is not None:
            outer.append(
                exp.alias_(
                    _count_if(
                        exp.and_(
                            matched.copy(), bucket.copy() < exp.Literal.string(held), copy=False
                        )
                    ),
                    ident("holdout"),
                    copy=False,
                )
            )
        groups = group_bounds(config.splits) if config.splits is not None else []
        low = held
        for i, (_group, bound) in enumerate(groups):
            parts = [matched.copy()]
            if low is not None:
                parts.append(bucket.copy() >= exp.Literal.string(low))
            if bound is not None:
                parts.append(bucket.copy() < exp.Literal.string(bound))
            outer.append(
                exp.alias_(_count_if(exp.and_(*parts, copy=False)), ident(f"split{i}"), copy=False)
            )
            low = bound
        sub = c.parent().select(*inner, copy=False).subquery(q, copy=False)
        names, rows = self._rows(exp.select(*outer, copy=False).from_(sub, copy=False))
        row = dict(zip(names, rows[0], strict=True))
        matched_n = int(row["matched"])
        holdout_n = int(row.get("holdout") or 0)
        return AudienceSize(
            parent=int(row["parent"]),
            matched=matched_n,
            holdout=holdout_n,
            members=matched_n - holdout_n,
            splits={g: int(row[f"split{i}"]) for i, (g, _) in enumerate(groups)},
            conditions=[
                ConditionSize(
                    f"conditions.{i}",
                    describe(cond),
                    int(row[f"alone{i}"]),
                    int(row[f"cumulative{i}"]),
                )
                for i, cond in enumerate(config.conditions)
            ],
        )

    def sample(self, name: str, config: AudienceConfig, limit: int = SAMPLE_ROWS) -> Sample:
        """Up to ``limit`` members (holdout excluded), personal columns masked in the warehouse.

        The rows are the members with the lowest split hash: a spread-out, repeatable pick.
        """
        c = self.compiler
        # No columns chosen or declared: every column, and no column is marked personal.
        columns = c.output_columns(config)
        personal = c.catalog.parent.personal
        members = c.members(name, config).subquery("m", copy=False)
        projections: list[exp.Expr] = (
            [] if columns else [exp.Column(this=exp.Star(), table=ident("m"))]
        )
        for name_ in columns:
            ref = col("m", name_)
            if name_ in personal:
                masked = (
                    exp.Case()
                    .when(ref.is_(exp.null()), exp.null(), copy=False)
                    .else_(exp.Literal.string(MASK), copy=False)
                )
                projections.append(exp.alias_(masked, ident(name_), copy=False))
            else:
                projections.append(ref)
        if columns and config.splits is not None and config.splits.groups:
            projections.append(col("m", SPLIT_COLUMN))
        order = bucket_expr(col("m", c.catalog.parent.key), config.splits or Splits(), name)
        query = (
            exp.select(*projections, copy=False)
            .from_(members, copy=False)
            .order_by(order, col("m", c.catalog.parent.key), copy=False)
            .limit(int(limit), copy=False)
        )
        names, rows = self._rows(query)
        return Sample(names, rows, [n for n in columns if n in personal])

    def breakdown(
        self, name: str, config: AudienceConfig, column: str, limit: int = 20
    ) -> Breakdown:
        """Members per value of a parent column (most frequent first), holdout excluded."""
        c = self.compiler
        parent = c.catalog.parent
        if parent.closed and column not in parent.columns:
            raise ConfigError(f"`{column}` is not a column of the parent model `{parent.model}`")
        if column in parent.personal:
            raise ConfigError(
                f"`{column}` holds personal data: a breakdown would show its values; "
                "choose another column"
            )
        members = c.members(name, config.model_copy(update={"columns": [column]}))
        count = exp.Count(this=exp.Star())
        query = (
            exp.select(
                exp.alias_(col("m", column), ident("value"), copy=False),
                exp.alias_(count, ident("n"), copy=False),
                copy=False,
            )
            .from_(members.subquery("m", copy=False), copy=False)
            .group_by(col("m", column), copy=False)
            .order_by(exp.Ordered(this=count.copy(), desc=True), col("m", column), copy=False)
        )
        _, rows = self._rows(query)
        values = [(r[0], int(r[1])) for r in rows]
        shown = values[: int(limit)]
        return Breakdown(column, shown, sum(n for _, n in values[int(limit) :]))

    def overlap(self, first: AudienceConfig, second: AudienceConfig) -> Overlap:
        """Members of each audience and of both (by conditions; holdouts not applied)."""
        c = self.compiler
        flags = c.parent().select(
            exp.alias_(c.predicate(first, filtering=True), ident("a"), copy=False),
            exp.alias_(c.predicate(second, filtering=True), ident("b"), copy=False),
            copy=False,
        )
        a, b = col("q", "a"), col("q", "b")
        query = exp.select(
            exp.alias_(_count_if(a), ident("first"), copy=False),
            exp.alias_(_count_if(b.copy()), ident("second"), copy=False),
            exp.alias_(
                _count_if(exp.and_(a.copy(), b.copy(), copy=False)), ident("both"), copy=False
            ),
            copy=False,
        ).from_(flags.subquery("q", copy=False), copy=False)
        _, rows = self._rows(query)
        return Overlap(int(rows[0][0]), int(rows[0][1]), int(rows[0][2]))

    def values(self, table: str, column: str, limit: int = SUGGESTED_VALUES) -> list[Any] | None:
        """The distinct values of a column, for suggestions; None when there are more than
        ``limit`` or the column holds personal data (its values must not leave the warehouse).

        Args:
            table: ``parent``, or the name of a related or event model of the schema.
            column: A column of that table.
        """
        catalog = self.compiler.catalog
        found = catalog.parent if table == "parent" else None
        found = found or catalog.related.get(table) or catalog.events.get(table)
        if found is None:
            raise ConfigError(f"`{table}` is not the parent, a related or an event model")
        if found.closed and column not in found.columns:
            raise ConfigError(f"`{column}` is not a column of `{table}`")
        if column in found.personal:
            return None
        ref = col("t", column)
        query = (
            exp.select(ref, copy=False)
            .distinct()
            .from_(self.compiler.relation(found.model, "t"), copy=False)
            .where(exp.not_(ref.copy().is_(exp.null()), copy=False), copy=False)
            .order_by(ref.copy(), copy=False)
            .limit(int(limit) + 1, copy=False)
        )
        _, rows = self._rows(query)
        return None if len(rows) > limit else [r[0] for r in rows]

    def priority(self, names: list[str]) -> list[tuple[str, int]]:
        """People per audience of an ordered list, each in the first audience they match."""
        from backhaul.audiences.priority import priority_counts

        _, rows = self._rows(priority_counts(self.compiler, names))
        found = {str(r[0]): int(r[1]) for r in rows}
        return [(n, found.get(n, 0)) for n in names]


@contextmanager
def open_explorer(
    project: Project,
    schema: str,
    *,
    now: datetime | None = None,
    audiences: Mapping[str, AudienceConfig] | None = None,
) -> Iterator[Explorer]:
    """An :class:`Explorer` on the warehouse of ``schema``'s models, closed afterwards.

    Args:
        project: The loaded project.
        schema: An audience schema name.
        now: The time relative dates count from (default: the warehouse's clock).
        audiences: Audience definitions for membership conditions (default: the project's;
            pass edited ones to explore unsaved changes).
    """
    from backhaul.engine.workspace import open_source

    found = project.audience_schemas.get(schema)
    if found is None:
        known = ", ".join(sorted(project.audience_schemas)) or "none"
        raise ConfigError(f"unknown audience schema `{schema}` (known: {known})")
    configs = (
        dict(audiences)
        if audiences is not None
        else {n: a.config for n, a in project.audiences.items()}
    )
    queries = {m: project.models[m].sql for m in found.catalog.models}
    compiler = Compiler(found.catalog, configs, found.dialect, queries, now=now)
    source = open_source(project, project.models[found.catalog.parent.model])
    try:
        yield Explorer(found, compiler, source)
    finally:
        source.close()


def audience_size(project: Project, name: str, *, now: datetime | None = None) -> AudienceSize:
    """The size of a saved audience (a convenience over :class:`Explorer`)."""
    audience = project.audiences.get(name)
    if audience is None:
        raise BackhaulError(
            f"unknown audience `{name}` (known: {', '.join(sorted(project.audiences)) or 'none'})"
        )
    with open_explorer(project, audience.schema, now=now) as ex:
        return ex.size(name, audience.config)


__all__ = [
    "AudienceSize",
    "Breakdown",
    "ConditionSize",
    "Explorer",
    "Overlap",
    "Sample",
    "audience_size",
    "describe",
    "open_explorer",
]
