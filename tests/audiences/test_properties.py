"""Property-based tests: random condition trees over random rows.

- The compiled SQL selects exactly the members the independent Python evaluator selects,
  in DuckDB and in Postgres.
- Values holding quotes, backslashes, SQL keywords, comment markers and unicode never
  change the query's structure: the SQL parsed back has the same tree as the SQL of the same
  audience with every text value replaced by ``x``, and each value comes back intact as a
  string literal.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlglot
from hypothesis import assume
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from sqlglot import exp
from tests.audiences import test_operators as hand
from tests.audiences.evaluator import Evaluator
from tests.audiences.strategies import HOSTILE
from tests.audiences.strategies import STRINGS
from tests.audiences.strategies import trees
from tests.audiences.strategies import world_data
from tests.audiences.world import CATALOG
from tests.audiences.world import NOW
from tests.audiences.world import SCHEMA
from tests.audiences.world import TABLES
from tests.audiences.world import DuckWorld
from tests.audiences.world import audience
from tests.audiences.world import key_query

from backhaul.audiences.audience import AudienceConfig
from backhaul.audiences.compiler import Compiler
from backhaul.audiences.defs import AudienceSchemaDef
from backhaul.audiences.explore import Explorer
from backhaul.audiences.typecheck import check_audience
from backhaul.config.models import DuckDBSourceConfig
from backhaul.config.project import Positions
from backhaul.sources.duckdb import DuckDBSource

OTHERS = {
    "fr": audience([{"column": "country", "op": "equals", "value": "FR"}]),
    "young_or_vip": audience(
        [
            {"column": "age", "op": "lt", "value": 30},
            {"column": "vip", "op": "equals", "value": True},
        ],
        match="any",
    ),
}
DIALECTS = ["duckdb", "postgres", "snowflake", "bigquery"]


def _config(conditions: list[dict[str, Any]], match: str, **extra: Any) -> AudienceConfig:
    config = AudienceConfig.model_validate(
        {"schema": "people", "match": match, "conditions": conditions, **extra}
    )
    problems = check_audience("a", config, CATALOG, OTHERS, dialect="duckdb")
    assume(not problems)
    return config


@st.composite
def cases(draw: st.DrawFn) -> tuple[dict[str, list[dict[str, Any]]], AudienceConfig]:
    data = draw(world_data())
    strings = [r["value"] for r in data["_strings"]]
    conditions = draw(trees(strings, sorted(OTHERS)))
    match = draw(st.sampled_from(["all", "any", "none"]))
    return data, _config(conditions, match)


def test_the_evaluator_agrees_with_the_hand_worked_cases() -> None:
    """The evaluator is checked against the expectations worked out by hand."""
    evaluator = Evaluator(hand.DATA, {"nobody": audience([], match="any")}, NOW)
    for condition, expected in (
        hand.COLUMN_CASES + hand.RELATED_CASES + hand.EVENT_CASES + hand.SQL_CASES[:3]
    ):
        assert evaluator.members(audience([condition])) == expected, condition
    for config, expected in hand.GROUP_CASES:
        assert evaluator.members(config) == expected, config


@given(cases())
def test_duckdb_selects_what_the_evaluator_selects(duck: DuckWorld, case: Any) -> None:
    data, config = case
    duck.load(data)
    assert duck.members(config, OTHERS) == Evaluator(data, OTHERS, NOW).members(config)


@settings(max_examples=settings.default.max_examples * 2 // 3)
@given(cases())
def test_postgres_selects_what_the_evaluator_selects(pg: DuckWorld, case: Any) -> None:
    data, config = case
    pg.load(data)
    assert pg.members(config, OTHERS) == Evaluator(data, OTHERS, NOW).members(config)


@pytest.fixture(scope="module")
def explorer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DuckWorld, Explorer]]:
    """The world in a DuckDB file, and an explorer reading it through the DuckDB source."""
    path = tmp_path_factory.mktemp("size") / "wh.duckdb"
    world = DuckWorld(str(path))
    config = DuckDBSourceConfig(type="duckdb", path=str(path), read_only=False)
    source = DuckDBSource(config, path.parent)
    schema = AudienceSchemaDef("people", SCHEMA, CATALOG, "wh", "duckdb", path, Positions(path))
    queries = {t: f'SELECT * FROM "{t}"' for t in TABLES}
    compiler = Compiler(CATALOG, OTHERS, "duckdb", queries, now=NOW)
    try:
        yield world, Explorer(schema, compiler, source)
    finally:
        source.close()
        world.close()


@settings(max_examples=max(20, settings.default.max_examples // 2))
@given(cases())
def test_size_counts_what_the_evaluator_counts(explorer: Any, case: Any) -> None:
    """Total, each top-level condition alone and cumulated: the one-pass size query."""
    world, ex = explorer
    data, config = case
    world.load(data)
    evaluator = Evaluator(data, OTHERS, NOW)
    size = ex.size("a", config)
    assert size.matched == len(evaluator.members(config))
    assert size.parent == len([p for p in data["people"] if p.get("id") is not None])
    for i, found in enumerate(size.conditions):
        alone = config.model_copy(update={"conditions": [config.conditions[i]], "match": "all"})
        upto = config.model_copy(update={"conditions": config.conditions[: i + 1]})
        assert found.alone == len(evaluator.members(alone))
        assert found.cumulative == len(evaluator.members(upto))


def _plain_text(conditions: Any) -> Any:
    """The same conditions with every text value replaced by ``x``."""
    if isinstance(conditions, list):
        return [_plain_text(c) for c in conditions]
    if isinstance(conditions, dict):
        out = {}
        for key, value in conditions.items():
            if key == "value" and isinstance(value, str):
                out[key] = "x"
            elif key == "value" and isinstance(value, list):
                out[key] = ["x" if isinstance(v, str) else v for v in value]
            else:
                out[key] = _plain_text(value)
        return out
    return conditions


def _values(conditions: Any) -> list[str]:
    if isinstance(conditions, list):
        return [v for c in conditions for v in _values(c)]
    if isinstance(conditions, dict):
        found = []
        for key, value in conditions.items():
            if key == "value" and isinstance(value, str):
                found.append(value)
            elif key == "value" and isinstance(value, list):
                found += [v for v in value if isinstance(v, str)]
            else:
                found += _values(value)
        return found
    return []


def _shape(sql: str, dialect: str) -> tuple[str, list[str]]:
    """The parsed tree with string literals blanked, and the literals themselves."""
    tree = sqlglot.parse_one(sql, dialect=dialect)
    literals = []
    for node in tree.find_all(exp.Literal):
        if node.is_string:
            literals.append(node.this)
            node.set("this", "?")
    return tree.sql(dialect=dialect), literals


@settings(max_examples=max(20, settings.default.max_examples // 3))  # parsing back is slow
@given(
    st.lists(st.one_of(st.sampled_from(HOSTILE), STRINGS), min_size=1, max_size=4),
    st.data(),
)
def test_values_never_change_the_query_structure(hostile: list[str], data: st.DataObject) -> None:
    conditions = data.draw(trees(hostile, sorted(OTHERS)))
    assume(_values(conditions))
    seed = data.draw(st.sampled_from(hostile))
    splits = {"seed": seed, "holdout": 10, "groups": [{"name": "a", "percent": 90}]}
    config = _config(conditions, "all", splits=splits)
    twin = _config(_plain_text(conditions), "all", splits=splits | {"seed": "x"})
    queries = {t: f'SELECT * FROM "{t}"' for t in TABLES}
    for dialect in DIALECTS:
        compiler = Compiler(CATALOG, OTHERS, dialect, queries, now=NOW)
        sql = compiler.render(compiler.members("a", config))
        twin_sql = compiler.render(compiler.members("a", twin))
        shape, literals = _shape(sql, dialect)
        twin_shape, _ = _shape(twin_sql, dialect)
        assert shape == twin_shape, dialect
        for value in [*_values(conditions), seed + ":"]:
            assert value in literals, (dialect, value)


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_run_as_literals_in_both_warehouses(world: DuckWorld, value: str) -> None:
    """The value is compared, not executed: exactly the row holding it matches."""
    world.load({"people": [{"id": 1, "name": value}, {"id": 2, "name": "plain"}]})
    assert world.members(audience([{"column": "name", "op": "equals", "value": value}])) == {1}
    assert world.members(audience([{"column": "name", "op": "contains", "value": value}])) == (
        {1, 2} if value in "plain" else {1}
    )
    rows = world.rows(key_query(world.compiler(), audience([])))
    assert sorted(r[0] for r in rows) == [1, 2]  # the tables are still there
