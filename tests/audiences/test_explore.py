"""Size, size per condition and per split, sample, breakdown, overlap and priority lists,
through the project's own source classes, on a DuckDB file and on Postgres. Every number
is compared with a hand-written SQL count over the same rows."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest
from tests.audiences.projects import audience_file
from tests.audiences.projects import duckdb_project
from tests.audiences.projects import postgres_project
from tests.audiences.test_operators import DATA
from tests.audiences.world import NOW
from tests.audiences.world import PgWorld

from backhaul import api
from backhaul.audiences.audience import Splits
from backhaul.audiences.explore import MASK
from backhaul.audiences.explore import open_explorer
from backhaul.audiences.splits import assign
from backhaul.config.project import Project
from backhaul.errors import ConfigError

EXTRA = [
    {"id": 100 + i, "name": f"p{i}", "country": ["FR", "DE", "US"][i % 3], "age": i % 70}
    for i in range(60)
]
ROWS: dict[str, list[dict[str, Any]]] = {**DATA, "people": [*DATA["people"], *EXTRA]}

EU_ADULTS = """\
schema: people
columns: [name, country, age]
conditions:
  - {column: country, op: in, value: [FR, DE]}
  - {column: age, op: gte, value: 18}
  - any:
      - {event: visits, within_last_days: 30}
      - {column: age, op: lt, value: 50}
splits:
  holdout: 20
  groups:
    - {name: a, percent: 40}
    - {name: b, percent: 40}
"""
OLDER = "schema: people\nconditions:\n  - {column: age, op: gte, value: 40}\n"
FRENCH = "schema: people\nconditions:\n  - {column: country, op: equals, value: FR}\n"


@pytest.fixture(
    scope="module", params=["duckdb", pytest.param("postgres", marks=pytest.mark.integration)]
)
def setup(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Project, Any]]:
    """A loaded project and a function running hand-written SQL on its warehouse."""
    root = tmp_path_factory.mktemp("explore") / "proj"
    world: PgWorld | None = None
    if request.param == "duckdb":
        duckdb_project(root, ROWS)

        def run(sql: str) -> list[tuple[Any, ...]]:
            with duckdb.connect(str(root / "wh.duckdb"), read_only=True) as con:
                return con.execute(sql).fetchall()

        prefix = ""
    else:
        url = request.getfixturevalue("pg_url")
        world = PgWorld(url)
        postgres_project(root, world, url, ROWS)
        run = world.rows
        prefix = f'"{world.schema}".'
    for name, text in (("eu_adults", EU_ADULTS), ("older", OLDER), ("french", FRENCH)):
        audience_file(root, name, text)
    try:
        yield api.load_project(root), (run, prefix)
    finally:
        if world is not None:
            world.close()


def _count(setup: Any, where: str) -> int:
    run, prefix = setup[1]
    sql = f"SELECT COUNT(*) FROM {prefix}people p WHERE p.id IS NOT NULL AND ({where})"
    return int(run(sql)[0][0])


RECENT = (
    "p.id IN (SELECT person_id FROM {prefix}visits WHERE \"at\" >= TIMESTAMP '2024-05-16 12:00:00'"
    " AND \"at\" <= TIMESTAMP '2024-06-15 12:00:00')"
)


def test_size_equals_hand_written_counts(setup: Any) -> None:
    project, (_, prefix) = setup
    recent = RECENT.format(prefix=prefix)
    everyone = "TRUE"
    eu = "p.country IN ('FR', 'DE')"
    adult = "p.age >= 18"
    either = f"({recent} OR COALESCE(p.age < 50, FALSE))"
    with open_explorer(project, "people", now=NOW) as ex:
        size = ex.size("eu_adults", project.audiences["eu_adults"].config)
    assert size.parent == _count(setup, everyone)
    assert [c.alone for c in size.conditions] == [
        _count(setup, eu),
        _count(setup, adult),
        _count(setup, either),
    ]
    assert [c.cumulative for c in size.conditions] == [
        _count(setup, eu),
        _count(setup, f"{eu} AND {adult}"),
        _count(setup, f"{eu} AND {adult} AND {either}"),
    ]
    assert size.matched == size.conditions[-1].cumulative > 20
    assert [c.key for c in size.conditions] == ["conditions.0", "conditions.1", "conditions.2"]


def test_holdout_and_split_sizes_follow_the_hash(setup: Any) -> None:
    project, (run, prefix) = setup
    config = project.audiences["eu_adults"].config
    with open_explorer(project, "people", now=NOW) as ex:
        size = ex.size("eu_adults", config)
        members = ex.source.stream(ex.sql("eu_adults", config)).read_all().to_pylist()
    matched = [
        r[0]
        for r in run(
            f"SELECT id FROM {prefix}people p WHERE p.id IS NOT NULL AND p.country IN ('FR', 'DE') "
            f"AND p.age >= 18 "
            f"AND ({RECENT.format(prefix=prefix)} OR COALESCE(p.age < 50, FALSE))"
        )
    ]
    expected = Counter(
        assign(Splits.model_validate(config.splits.model_dump()), "eu_adults", k) for k in matched
    )
    assert size.holdout == expected["holdout"]
    assert size.splits == {"a": expected["a"], "b": expected["b"]}
    assert size.members == size.matched - size.holdout == len(members)
    assert Counter(r["split"] for r in members) == Counter({"a": expected["a"], "b": expected["b"]})


def test_sample_is_25_members_with_personal_data_masked(setup: Any) -> None:
    project, _ = setup
    config = project.audiences["eu_adults"].config
    with open_explorer(project, "people", now=NOW) as ex:
        sample = ex.sample("eu_adults", config)
        again = ex.sample("eu_adults", config)
        size = ex.size("eu_adults", config)
    assert sample.columns == ["id", "name", "country", "age", "split"]
    assert sample.masked == ["name"]
    assert len(sample.rows) == min(25, size.members)
    assert {row[1] for row in sample.rows} == {MASK}
    assert {row[2] for row in sample.rows} <= {"FR", "DE"}
    assert sample.rows == again.rows  # repeatable


def test_breakdown_by_a_column_counts_members(setup: Any) -> None:
    project, _ = setup
    config = project.audiences["french"].config
    older = project.audiences["older"].config
    with open_explorer(project, "people", now=NOW) as ex:
        by_country = ex.breakdown("older", older, "country")
        by_age = ex.breakdown("french", config, "age", limit=3)
        with pytest.raises(ConfigError, match="holds personal data"):
            ex.breakdown("french", config, "name")
    expected = {c: _count(setup, f"p.age >= 40 AND p.country = '{c}'") for c in ("FR", "DE", "US")}
    expected = {c: n for c, n in expected.items() if n}
    assert dict(by_country.values) == expected
    assert by_country.other == 0
    assert len(by_age.values) == 3
    assert sum(n for _, n in by_age.values) + by_age.other == _count(setup, "p.country = 'FR'")


def test_overlap_with_another_audience(setup: Any) -> None:
    project, _ = setup
    french = project.audiences["french"].config
    older = project.audiences["older"].config
    with open_explorer(project, "people", now=NOW) as ex:
        found = ex.overlap(french, older)
    assert found.first == _count(setup, "p.country = 'FR'")
    assert found.second == _count(setup, "p.age >= 40")
    assert found.both == _count(setup, "p.country = 'FR' AND p.age >= 40")
    assert found.only_first == found.first - found.both


def test_a_priority_list_puts_each_person_in_the_first_audience_they_match(setup: Any) -> None:
    project, _ = setup
    with open_explorer(project, "people", now=NOW) as ex:
        first = ex.priority(["french", "older"])
        second = ex.priority(["older", "french"])
    assert first == [
        ("french", _count(setup, "p.country = 'FR'")),
        ("older", _count(setup, "p.age >= 40 AND p.country IS DISTINCT FROM 'FR'")),
    ]
    assert second[0] == ("older", _count(setup, "p.age >= 40"))
    assert sum(n for _, n in first) == sum(n for _, n in second)


def test_an_unsaved_audience_can_be_explored(setup: Any) -> None:
    """The page will send edited audiences: they need no file."""
    project, _ = setup
    from backhaul.audiences.audience import AudienceConfig

    draft = AudienceConfig.model_validate(
        {
            "schema": "people",
            "conditions": [{"in_audience": "french"}, {"column": "age", "op": "lt", "value": 40}],
        }
    )
    with open_explorer(project, "people", now=datetime(2024, 6, 15)) as ex:
        size = ex.size("draft", draft)
    assert size.matched == _count(setup, "p.country = 'FR' AND p.age < 40")


def test_backslashes_stay_literal_on_a_postgres_that_reads_them_as_escapes(
    tmp_path: Path, pg_db: str
) -> None:
    """A server set to ``standard_conforming_strings = off`` would read ``\\'`` as a quote;
    the source turns the standard behaviour back on for its session."""
    import psycopg

    name = pg_db.rsplit("/", 1)[1]
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" SET standard_conforming_strings = off')
    world = PgWorld(pg_db)
    try:
        root = postgres_project(
            tmp_path / "proj",
            world,
            pg_db,
            {"people": [{"id": 1, "name": "a\\'b"}, {"id": 2, "name": "a\\"}, {"id": 3}]},
        )
        audience_file(
            root,
            "odd",
            'schema: people\nconditions:\n  - {column: name, op: equals, value: "a\\\\\'b"}\n',
        )
        project = api.load_project(root)
        with open_explorer(project, "people") as ex:
            size = ex.size("odd", project.audiences["odd"].config)
        assert size.matched == 1
    finally:
        world.close()
