"""An audience schema bound to what it describes: models, keys and column types.

The schema file names models and columns; a :class:`Catalog` is that schema resolved
against the project (the parent's key defaults to its model's primary key) and, when the
warehouse has been asked, with every column's type known. The compiler, the type checks and
the test runner all read a catalog, never the raw files.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace
from typing import Literal

from backhaul.audiences.schema import AudienceSchemaConfig
from backhaul.audiences.schema import ColumnSpec
from backhaul.audiences.types import ColumnType
from backhaul.audiences.types import from_warehouse


@dataclass(frozen=True)
class Table:
    """One model as the audience sees it.

    Attributes:
        name: The entity name in the schema (``accounts``), or ``parent``.
        kind: ``parent``, ``related`` or ``event``.
        model: The model it reads.
        key: Parent: its key. Related: its join column. Event: the column holding the
            parent's key.
        columns: Column types (None: not known). With ``closed``, the only columns there are.
        closed: The column list is complete (declared in the schema or read from the
            warehouse), so a condition on another column is an error.
        personal: Columns holding personal data.
        parent_key: Related only: the parent's join column.
        timestamp: Events only: when it happened.
        cardinality: Related only: ``1:1``, ``1:N`` or ``N:1``.
    """

    name: str
    kind: Literal["parent", "related", "event"]
    model: str
    key: str
    columns: dict[str, ColumnType | None] = field(default_factory=dict)
    closed: bool = False
    personal: frozenset[str] = frozenset()
    parent_key: str | None = None
    timestamp: str | None = None
    cardinality: str | None = None

    def type_of(self, column: str) -> ColumnType | None:
        return self.columns.get(column)

    def with_warehouse(self, types: dict[str, str]) -> Table:
        """This table with the warehouse's columns: declared types win, the rest are filled.

        When the schema declared columns, only those stay offered (plus the keys); the
        warehouse then only supplies missing types.
        """
        declared = self.columns if self.closed else {}
        if declared:
            columns = {
                name: kind if kind is not None else _warehouse_type(types, name)
                for name, kind in declared.items()
            }
        else:
            columns = {name: from_warehouse(t) for name, t in types.items()}
        return replace(self, columns=columns, closed=True)


def _warehouse_type(types: dict[str, str], name: str) -> ColumnType | None:
    found = types.get(name)
    return from_warehouse(found) if found is not None else None


def _declared(specs: dict[str, ColumnSpec], *always: str | None) -> dict[str, ColumnType | None]:
    columns: dict[str, ColumnType | None] = {name: spec.type for name, spec in specs.items()}
    for name in always:
        if name is not None and name not in columns:
            columns[name] = None
    return columns


@dataclass(frozen=True)
class Catalog:
    """A schema resolved for compilation: the parent, related and event tables."""

    name: str
    parent: Table
    related: dict[str, Table]
    events: dict[str, Table]
    shown: tuple[str, ...] = ()  # the parent columns the schema offers, in file order

    @classmethod
    def build(cls, name: str, config: AudienceSchemaConfig, parent_key: str) -> Catalog:
        """A catalog from a schema file; the parent key is already resolved by the loader."""
        p = config.parent
        parent = Table(
            "parent",
            "parent",
            p.model,
            parent_key,
            columns=_declared(p.columns, parent_key),
            closed=bool(p.columns),
            personal=frozenset(n for n, s in p.columns.items() if s.personal),
        )
        related = {
            n: Table(
                n,
                "related",
                r.model,
                r.key,
                columns=_declared(r.columns, r.key),
                closed=bool(r.columns),
                personal=frozenset(c for c, s in r.columns.items() if s.personal),
                parent_key=r.parent_key or parent_key,
                cardinality=r.cardinality,
            )
            for n, r in config.related.items()
        }
        events = {
            n: Table(
                n,
                "event",
                e.model,
                e.key,
                columns={**_declared(e.columns, e.key), e.timestamp: _ts(e.columns, e.timestamp)},
                closed=bool(e.columns),
                personal=frozenset(c for c, s in e.columns.items() if s.personal),
                timestamp=e.timestamp,
            )
            for n, e in config.events.items()
        }
        return cls(name, parent, related, events, tuple(p.columns))

    @property
    def tables(self) -> list[Table]:
        return [self.parent, *self.related.values(), *self.events.values()]

    @property
    def models(self) -> list[str]:
        """Every model the schema reads, parent first, each once."""
        return list(dict.fromkeys(t.model for t in self.tables))

    def with_warehouse(self, types: dict[str, dict[str, str]]) -> Catalog:
        """The catalog with column types from the warehouse (``{model: {column: type}}``)."""

        def bound(table: Table) -> Table:
            found = types.get(table.model)
            return table.with_warehouse(found) if found is not None else table

        return replace(
            self,
            parent=bound(self.parent),
            related={n: bound(t) for n, t in self.related.items()},
            events={n: bound(t) for n, t in self.events.items()},
        )


def _ts(specs: dict[str, ColumnSpec], column: str) -> ColumnType | None:
    spec = specs.get(column)
    return spec.type if spec is not None else None


__all__ = ["Catalog", "Table"]
