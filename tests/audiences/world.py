"""A small fixed world for audience tests: one schema, its tables, and warehouses to load it in.

people (parent, key ``id``) ─ N:1 ─ accounts (``people.account_id = accounts.id``)
       └─ 1:N ─ orders (``orders.person_id``)
       └─ events: visits (``visits.person_id``, ``visits.at``)

:class:`DuckWorld` and :class:`PgWorld` load the same rows into DuckDB (in memory) or a
Postgres schema and run compiled audiences there, returning the selected keys.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import duckdb
import psycopg
import pyarrow as pa
from psycopg import sql
from sqlglot import exp

from backhaul.audiences.audience import AudienceConfig
from backhaul.audiences.catalog import Catalog
from backhaul.audiences.compiler import Compiler
from backhaul.audiences.compiler import col
from backhaul.audiences.schema import AudienceSchemaConfig

SCHEMA = AudienceSchemaConfig.model_validate(
    {
        "parent": {
            "model": "people",
            "key": "id",
            "columns": {
                "name": {"type": "string", "personal": True},
                "country": "string",
                "age": "number",
                "score": "number",
                "vip": "boolean",
                "born": "date",
                "seen": "timestamp",
                "account_id": "number",
            },
        },
        "related": {
            "accounts": {
                "model": "accounts",
                "cardinality": "N:1",
                "key": "id",
                "parent_key": "account_id",
                "columns": {"plan": "string", "seats": "number"},
            },
            "orders": {
                "model": "orders",
                "cardinality": "1:N",
                "key": "person_id",
                "columns": {"amount": "number", "status": "string"},
            },
        },
        "events": {
            "visits": {
                "model": "visits",
                "key": "person_id",
                "timestamp": "at",
                "columns": {"page": "string"},
            }
        },
    }
)
CATALOG = Catalog.build("people", SCHEMA, "id")

# Column types per table, in table order (the DDL of both warehouses).
TABLES: dict[str, dict[str, str]] = {
    "people": {
        "id": "BIGINT",
        "name": "VARCHAR",
        "country": "VARCHAR",
        "age": "BIGINT",
        "score": "DOUBLE PRECISION",
        "vip": "BOOLEAN",
        "born": "DATE",
        "seen": "TIMESTAMP",
        "account_id": "BIGINT",
    },
    "accounts": {"id": "BIGINT", "plan": "VARCHAR", "seats": "BIGINT"},
    "orders": {"person_id": "BIGINT", "amount": "DOUBLE PRECISION", "status": "VARCHAR"},
    "visits": {"person_id": "BIGINT", "at": "TIMESTAMP", "page": "VARCHAR"},
}
_ARROW_TYPES = {
    "BIGINT": pa.int64(),
    "VARCHAR": pa.string(),
    "DOUBLE PRECISION": pa.float64(),
    "BOOLEAN": pa.bool_(),
    "DATE": pa.date32(),
    "TIMESTAMP": pa.timestamp("us"),
}
# The same columns as Arrow schemas, to load rows into DuckDB in one statement per table.
ARROW = {
    table: pa.schema([(c, _ARROW_TYPES[t]) for c, t in columns.items()])
    for table, columns in TABLES.items()
}
NOW = datetime(2024, 6, 15, 12, 0, 0)

Data = Mapping[str, list[dict[str, Any]]]


def audience(conditions: list[Any], match: str = "all", **extra: Any) -> AudienceConfig:
    return AudienceConfig.model_validate(
        {"schema": "people", "match": match, "conditions": conditions, **extra}
    )


def key_query(
    compiler: Compiler, config: AudienceConfig, name: str = "a", *, splits: bool = False
) -> str:
    members = compiler.members(name, config, splits=splits).subquery("m")
    return compiler.render(exp.select(col("m", "id")).from_(members))


class DuckWorld:
    """The world in an in-memory DuckDB."""

    dialect = "duckdb"

    def __init__(self, path: str = ":memory:") -> None:
        self.con = duckdb.connect(path)

    def table(self, name: str) -> str:
        return f'"{name}"'

    def load(self, data: Data) -> None:
        for table, columns in TABLES.items():
            defs = ", ".join(f'"{c}" {t}' for c, t in columns.items())
            self.con.execute(f'CREATE OR REPLACE TABLE "{table}" ({defs})')
            rows = [{c: r.get(c) for c in columns} for r in data.get(table, [])]
            if rows:
                # One Arrow table of the columns' own types: executemany runs one INSERT
                # per row, which takes seconds for the thousands of rows some tests load.
                incoming = pa.Table.from_pylist(rows, schema=ARROW[table])
                self.con.register("incoming", incoming)
                try:
                    self.con.execute(f'INSERT INTO "{table}" SELECT * FROM incoming')
                finally:
                    self.con.unregister("incoming")

    def rows(self, query: str) -> list[tuple[Any, ...]]:
        return self.con.execute(query).fetchall()

    def compiler(
        self, audiences: Mapping[str, AudienceConfig] | None = None, now: datetime | None = NOW
    ) -> Compiler:
        queries = {t: f"SELECT * FROM {self.table(t)}" for t in TABLES}
        return Compiler(CATALOG, dict(audiences or {}), self.dialect, queries, now=now)

    def members(
        self,
        config: AudienceConfig,
        audiences: Mapping[str, AudienceConfig] | None = None,
        now: datetime | None = NOW,
    ) -> set[Any]:
        return {r[0] for r in self.rows(key_query(self.compiler(audiences, now), config))}

    def close(self) -> None:
        self.con.close()


class PgWorld(DuckWorld):
    """The world in a schema of its own in a Postgres database (dropped by :meth:`close`)."""

    dialect = "postgres"

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.schema = f"aud_{uuid.uuid4().hex[:10]}"
        self.conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(self.schema)))
        self.conn.execute("SET TIME ZONE 'UTC'")

    def table(self, name: str) -> str:
        return f'"{self.schema}"."{name}"'

    def load(self, data: Data) -> None:
        with self.conn.transaction():
            for table, columns in TABLES.items():
                ident = sql.Identifier(self.schema, table)
                self.conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ident))
                defs = sql.SQL(", ").join(
                    sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t))
                    for c, t in columns.items()
                )
                self.conn.execute(sql.SQL("CREATE TABLE {} ({})").format(ident, defs))
                rows = [[r.get(c) for c in columns] for r in data.get(table, [])]
                if rows:
                    with self.conn.cursor() as cur:
                        marks = sql.SQL(", ").join(sql.Placeholder() for _ in columns)
                        cur.executemany(
                            sql.SQL("INSERT INTO {} VALUES ({})").format(ident, marks), rows
                        )

    def rows(self, query: str) -> list[tuple[Any, ...]]:
        with self.conn.cursor() as cur:
            cur.execute(query.encode())  # bytes: psycopg sends the text as it is, no %-parsing
            return list(cur.fetchall())

    def close(self) -> None:
        try:
            self.conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.schema))
            )
        finally:
            self.conn.close()
