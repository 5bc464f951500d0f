"""Splits and holdouts: decided by a hash of the key, stable as the audience grows, the same
in Python, DuckDB and Postgres, and close to the asked fractions."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from pydantic import ValidationError
from tests.audiences.world import CATALOG
from tests.audiences.world import TABLES
from tests.audiences.world import DuckWorld
from tests.audiences.world import PgWorld
from tests.audiences.world import audience

from backhaul.audiences.audience import Splits
from backhaul.audiences.compiler import Compiler
from backhaul.audiences.splits import assign
from backhaul.audiences.splits import bucket
from backhaul.audiences.splits import group_bounds
from backhaul.audiences.splits import holdout_bound

SPLITS = {
    "holdout": 10,
    "groups": [{"name": "email", "percent": 30}, {"name": "sms", "percent": 60}],
}


def _assigned(world: DuckWorld, config: Any) -> dict[Any, str]:
    """Every member's split, holdout members included (as ``holdout``)."""
    compiler = world.compiler()
    shown = world.rows(compiler.render(compiler.members("spring", config)))
    everyone = world.rows(compiler.render(compiler.members("spring", config, splits=False)))
    found = {row[0]: "holdout" for row in everyone}
    found.update({row[0]: row[-1] for row in shown})
    return found


def test_the_sql_assigns_what_python_assigns_in_both_warehouses(world: DuckWorld) -> None:
    world.load({"people": [{"id": i} for i in range(1, 3001)]})
    config = audience([], columns=[], splits=SPLITS)
    got = _assigned(world, config)
    splits = Splits.model_validate(SPLITS)
    assert got == {i: assign(splits, "spring", i) for i in range(1, 3001)}
    assert set(got.values()) == {"holdout", "email", "sms"}


def test_text_keys_split_the_same_in_duckdb_and_postgres(duck: DuckWorld, pg: PgWorld) -> None:
    """The hash reads the key's text: a text key lands in the same group everywhere."""
    keys = [f"user-{i}@example.com" for i in range(500)] + ["O'Neil", "ß", "日本", "a\\b"]
    duck.con.execute("CREATE OR REPLACE TABLE textkeys (id VARCHAR)")
    duck.con.executemany("INSERT INTO textkeys VALUES (?)", [[k] for k in keys])
    pg_table = f'"{pg.schema}".textkeys'
    pg.conn.execute(f"DROP TABLE IF EXISTS {pg_table}")
    pg.conn.execute(f"CREATE TABLE {pg_table} (id TEXT)")
    with pg.conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {pg_table} VALUES (%s)", [[k] for k in keys])
    config = audience([], columns=[], splits=SPLITS)
    found = []
    for world, table in ((duck, "textkeys"), (pg, pg_table)):
        queries = {t: f"SELECT * FROM {world.table(t)}" for t in TABLES}
        queries["people"] = f"SELECT * FROM {table}"
        compiler = Compiler(CATALOG, {}, world.dialect, queries)
        everyone = world.rows(compiler.render(compiler.members("spring", config, splits=False)))
        shown = dict(
            (r[0], r[-1]) for r in world.rows(compiler.render(compiler.members("spring", config)))
        )
        found.append({r[0]: shown.get(r[0], "holdout") for r in everyone})
    splits = Splits.model_validate(SPLITS)
    assert found[0] == found[1] == {k: assign(splits, "spring", k) for k in keys}


def test_adding_members_never_moves_existing_ones(duck: DuckWorld) -> None:
    config = audience([{"column": "age", "op": "gte", "value": 18}], columns=[], splits=SPLITS)
    first = [{"id": i, "age": 20 + i % 50} for i in range(1, 2001)]
    duck.load({"people": first})
    before = _assigned(duck, config)
    grown = first + [{"id": i, "age": 30} for i in range(2001, 6001)]
    grown += [{"id": i, "age": 5} for i in range(6001, 6501)]  # not members
    duck.load({"people": grown})
    after = _assigned(duck, config)
    assert len(after) == 6000
    assert {k: after[k] for k in before} == before
    assert _assigned(duck, config) == after  # and the same again: deterministic


def test_fractions_on_100k_keys_are_close_to_the_asked_percentages(duck: DuckWorld) -> None:
    duck.con.execute('DROP TABLE IF EXISTS "people"')
    duck.con.execute('CREATE TABLE "people" AS SELECT i::BIGINT AS id FROM range(1, 100001) t(i)')
    got = Counter(_assigned(duck, audience([], columns=[], splits=SPLITS)).values())
    assert sum(got.values()) == 100_000
    # Binomial standard deviation at 100k keys is under 0.16 points; allow 0.6.
    for name, percent in (("holdout", 10), ("email", 30), ("sms", 60)):
        assert abs(got[name] / 1000 - percent) < 0.6, (name, got)


def test_the_seed_reshuffles_and_defaults_to_the_audience_name() -> None:
    plain = Splits.model_validate(SPLITS)
    seeded = Splits.model_validate(SPLITS | {"seed": "spring"})
    keys = range(1000)
    assert [assign(plain, "spring", k) for k in keys] == [assign(seeded, "x", k) for k in keys]
    other = [assign(plain, "autumn", k) for k in keys]
    assert other != [assign(plain, "spring", k) for k in keys]
    assert bucket("spring", 1) == bucket("spring", "1")  # keys hash by their text


def test_bounds_cut_the_hash_range_at_the_percentages() -> None:
    splits = Splits.model_validate(SPLITS)
    assert holdout_bound(splits) == f"{-(-10 * 16**8 // 100):08x}"
    assert [n for n, _ in group_bounds(splits)] == ["email", "sms"]
    assert group_bounds(splits)[-1][1] is None  # the last group runs to the end
    assert holdout_bound(Splits.model_validate({"holdout": 0})) is None


@pytest.mark.parametrize(
    ("splits", "message"),
    [
        ({"holdout": 10, "groups": [{"name": "a", "percent": 50}]}, "add up to 60, not 100"),
        ({"groups": [{"name": "a", "percent": 50}, {"name": "a", "percent": 50}]}, "named twice"),
        ({"holdout": 10.001}, "two decimals"),
        ({"holdout": 100}, "less than 100"),
        ({"groups": [{"name": "a b", "percent": 100}]}, "should match pattern"),
    ],
)
def test_invalid_splits_say_what_is_wrong(splits: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Splits.model_validate(splits)
    assert message in str(caught.value)
