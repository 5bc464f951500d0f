"""Snowflake and BigQuery: no warehouse here, so each compiled query is parsed back in its
dialect, translated to DuckDB by sqlglot and run on the hand-made world; it must select the
members worked out by hand. This checks the SQL is valid in the dialect as sqlglot knows it
and means the same thing."""

from __future__ import annotations

from typing import Any

import pytest
import sqlglot
from tests.audiences import test_operators as hand
from tests.audiences.world import CATALOG
from tests.audiences.world import NOW
from tests.audiences.world import TABLES
from tests.audiences.world import DuckWorld
from tests.audiences.world import audience
from tests.audiences.world import key_query

from backhaul.audiences.compiler import Compiler

CASES = [
    (audience([c]), expected)
    for c, expected in hand.COLUMN_CASES + hand.RELATED_CASES + hand.EVENT_CASES
] + list(hand.GROUP_CASES)
OTHERS = {"nobody": audience([], match="any")}


@pytest.fixture(scope="module")
def loaded(duck: DuckWorld) -> DuckWorld:
    duck.load(hand.DATA)
    return duck


@pytest.mark.parametrize("dialect", ["snowflake", "bigquery"])
def test_snowflake_and_bigquery_sql_means_the_same(loaded: DuckWorld, dialect: str) -> None:
    queries = {t: f'SELECT * FROM "{t}"' for t in TABLES}
    failures: list[Any] = []
    for config, expected in CASES:
        compiler = Compiler(CATALOG, OTHERS, dialect, queries, now=NOW)
        sql = key_query(compiler, config)
        in_duckdb = sqlglot.transpile(sql, read=dialect, write="duckdb")[0]
        got = {r[0] for r in loaded.rows(in_duckdb)}
        if got != expected:
            failures.append((config.conditions, expected, got, sql))
    assert not failures, failures[:3]


def test_each_dialect_gets_its_own_spelling() -> None:
    config = audience(
        [
            {"column": "name", "op": "starts_with", "value": "it's"},
            {"event": "visits", "within_last_days": 3},
        ],
        splits={"groups": [{"name": "a", "percent": 50}, {"name": "b", "percent": 50}]},
    )
    queries = {t: f"SELECT * FROM {t}" for t in TABLES}

    def sql(dialect: str, now: Any = NOW) -> str:
        compiler = Compiler(CATALOG, {}, dialect, queries, now=now)
        return compiler.render(compiler.members("a", config))

    assert 'STARTSWITH("p"."name", \'it\\\'s\')' in sql("snowflake")
    assert "STARTS_WITH(`p`.`name`, 'it\\'s')" in sql("bigquery")
    assert "STARTS_WITH(\"p\".\"name\", 'it''s')" in sql("postgres")
    assert "TO_HEX(MD5(" in sql("bigquery")
    assert "CONVERT_TIMEZONE('UTC', CURRENT_TIMESTAMP())" in sql("snowflake", None)
    assert "CURRENT_TIMESTAMP AT TIME ZONE 'UTC'" in sql("postgres", None)
