"""Audience and schema files in a project: loading, errors as ``file:line: key: message``,
``backhaul validate`` against the warehouse, ``backhaul models``, and syncing an audience."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.audiences.projects import audience_file
from tests.audiences.projects import duckdb_project
from tests.audiences.projects import write
from tests.audiences.test_operators import DATA
from tests.conftest import run_cli
from tests.conftest import sqlite_rows

from backhaul import api
from backhaul.config.checks import check_project
from backhaul.errors import ConfigErrors

pytestmark = pytest.mark.integration

EU = """\
schema: people
description: People in France or Germany
columns: [name, country]
conditions:
  - {column: country, op: in, value: [FR, DE]}
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return duckdb_project(tmp_path / "proj", DATA)


def _errors(root: Path) -> list[str]:
    with pytest.raises(ConfigErrors) as caught:
        api.load_project(root)
    return [e.message for e in caught.value.errors]


def test_an_audience_loads_as_a_model_of_the_same_name(root: Path) -> None:
    audience_file(root, "eu", EU)
    project = api.load_project(root)
    model = project.models["eu"]
    assert model.audience == "eu"
    assert model.config.source == "wh"
    assert model.config.primary_key == ["id"]
    assert model.config.description == "People in France or Germany"
    assert model.personal == frozenset({"name"})
    assert project.models["people"].personal == frozenset({"name"})  # previews mask it too
    assert project.audience_schemas["people"].dialect == "duckdb"
    import duckdb

    with duckdb.connect(str(root / "wh.duckdb"), read_only=True) as con:
        rows = con.execute(f"SELECT * FROM ({model.sql}) ORDER BY id").fetchall()
    assert rows == [(1, "Ann O'Neil", "FR"), (2, "bob", "DE"), (5, "dan\\x", "FR")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "schema: people\nconditions:\n  - {column: countri, op: equals, value: FR}\n",
            "audiences/bad.yml:3: conditions.0.column: `countri` is not a column of the parent "
            "model `people` (did you mean `country`?)",
        ),
        (
            "schema: people\nconditions:\n  - any:\n      - {column: age, op: contains, value: 1}\n",
            "audiences/bad.yml:4: conditions.0.any.0.op: `contains` does not apply to the number "
            "column `age`",
        ),
        (
            "schema: people\nconditions:\n  - {column: born, op: after, value: soon}\n",
            "audiences/bad.yml:3: conditions.0.value: the date column `born` expects a date "
            "(YYYY-MM-DD), got the text 'soon'",
        ),
        (
            "schema: people\nconditions:\n  - {related: account, at_least: 1}\n",
            "audiences/bad.yml:3: conditions.0.related: unknown related model `account` in schema "
            "`people` (did you mean `accounts`?)",
        ),
        (
            "schema: people\nconditions:\n  - {related: accounts, at_least: 2}\n",
            "audiences/bad.yml:3: conditions.0.at_least: `at_least: 2` can never hold",
        ),
        (
            "schema: people\nconditions:\n  - {event: visits, did_not: true, at_least: 1}\n",
            "audiences/bad.yml:3: conditions.0: `did_not` already means `exactly: 0`",
        ),
        (
            "schema: people\nconditions:\n  - {colum: x}\n",
            "audiences/bad.yml:3: conditions.0: a condition needs one of the keys column, related",
        ),
        (
            "schema: people\nconditions:\n  - {column: age, op: gt, value: 1, valu: 2}\n",
            "audiences/bad.yml:3: conditions.0.valu: unknown key `valu` (did you mean `value`?)",
        ),
        (
            "schema: people\nconditions:\n  - {sql: 'age >'}\n",
            "audiences/bad.yml:3: conditions.0.sql: the SQL is not one boolean expression",
        ),
        (
            "schema: peeple\n",
            "audiences/bad.yml:1: schema: unknown audience schema `peeple` (did you mean `people`?",
        ),
        (
            "schema: people\ncolumns: [name, emial]\n",
            "audiences/bad.yml:2: columns.1: `emial` is not a column of the parent model",
        ),
        (
            "schema: people\nsplits:\n  holdout: 10\n  groups:\n    - {name: a, percent: 80}\n",
            "audiences/bad.yml:2: splits: `holdout` and the group percents add up to 90, not 100",
        ),
        (
            "schema: people\nconditions:\n  - {column: seen, op: within_last, days: 3}\n"
            "tests:\n  - name: x\n    expect_in: [1]\n",
            "audiences/bad.yml:5: tests.0: audience `bad` counts days back from now: set `now:`",
        ),
    ],
)
def test_mistakes_name_the_file_line_and_key(root: Path, text: str, expected: str) -> None:
    audience_file(root, "bad", text)
    errors = _errors(root)
    assert any(e.startswith(expected) for e in errors), errors


def test_membership_loops_are_rejected(root: Path) -> None:
    audience_file(root, "a", "schema: people\nconditions:\n  - {in_audience: b}\n")
    audience_file(root, "b", "schema: people\nconditions:\n  - {not_in_audience: a}\n")
    errors = _errors(root)
    assert (
        "audiences/a.yml:3: conditions.0.in_audience: audience membership loops (a → b → a)"
        in errors[0]
    )
    assert any(e.startswith("audiences/b.yml:3: conditions.0.not_in_audience") for e in errors)


def test_schema_mistakes_are_reported_in_the_schema_file(root: Path) -> None:
    schema = root / "audience_schemas" / "people.yml"
    text = schema.read_text()
    schema.write_text(text.replace("model: visits", "model: visit"))
    audience_file(root, "eu", EU)
    errors = _errors(root)
    assert len(errors) == 1, errors  # the audience on it is not blamed too
    assert any(
        e.startswith("audience_schemas/people.yml:29: events.visits.model: unknown model `visit`")
        for e in errors
    ), errors
    schema.write_text(text.replace("timestamp: at", "timestamp: page"))
    assert any(
        "events.visits.timestamp: the timestamp column `page` is declared string" in e
        for e in _errors(root)
    )


def test_an_audience_cannot_take_a_model_name(root: Path) -> None:
    audience_file(root, "people", "schema: people\n")
    assert any(
        e.startswith("audiences/people.yml: audience `people` has the name of the model")
        for e in _errors(root)
    )


def test_validate_checks_schemas_and_audiences_against_the_warehouse(root: Path) -> None:
    schema = root / "audience_schemas" / "people.yml"
    schema.write_text(
        schema.read_text()
        .replace("    score: number\n", "    score: string\n")
        .replace("    country: string\n", "    country: string\n    email: string\n")
    )
    audience_file(root, "eu", EU)
    project = api.load_project(root)
    messages = [e.message for e in check_project(project)]
    assert any(
        m.startswith(
            "audience_schemas/people.yml:11: parent.columns.score: declared string, but "
            "the warehouse type is DOUBLE (number)"
        )
        for m in messages
    ), messages
    assert any(
        m.startswith(
            "audience_schemas/people.yml:9: parent.columns.email: `email` is not in the "
            "output of model `people`"
        )
        for m in messages
    ), messages
    assert check_project(project, open_sources=False) == []


def test_validate_asks_to_declare_a_type_the_values_misread(tmp_path: Path) -> None:
    root = duckdb_project(tmp_path / "proj", DATA)
    schema = root / "audience_schemas" / "people.yml"
    schema.write_text(schema.read_text().replace("    seen: timestamp\n", ""))
    schema.write_text(
        schema.read_text().replace(
            "    name: {type: string, personal: true}\n",
            "    name: {type: string, personal: true}\n    seen:\n",
        )
    )
    audience_file(
        root,
        "recent",
        "schema: people\nconditions:\n  - {column: seen, op: equals, value: 2024-06-14}\n",
    )
    messages = [e.message for e in check_project(api.load_project(root))]
    assert messages == [
        "audiences/recent.yml:3: conditions.0.column: `seen` is timestamp in the warehouse but "
        "the audience reads it as date from its value: declare `seen: timestamp` in the columns "
        "of `people` in the schema"
    ]


def test_validate_reports_a_raw_sql_condition_the_warehouse_rejects(root: Path) -> None:
    audience_file(root, "odd", "schema: people\nconditions:\n  - {sql: no_such_column > 1}\n")
    project = api.load_project(root)
    messages = [e.message for e in check_project(project)]
    assert len(messages) == 1, messages
    assert messages[0].startswith(
        "audiences/odd.yml:2: conditions: the compiled audience SQL fails in the warehouse:"
    )
    assert "no_such_column" in messages[0]


def test_cli_validate_and_models_list_the_audience(root: Path) -> None:
    audience_file(root, "eu", EU)
    ok = run_cli("validate", "-C", str(root))
    assert ok.returncode == 0, ok.stderr
    assert "5 models" in ok.stdout
    listed = run_cli("models", "-C", str(root))
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if " eu " in line)
    assert "audience (people)" in line and "id" in line
    audience_file(root, "bad", "schema: people\nconditions:\n  - {column: nope, op: is_null}\n")
    bad = run_cli("validate", "-C", str(root))
    assert bad.returncode == 2
    assert "audiences/bad.yml:3: conditions.0.column: `nope` is not a column" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_an_audience_syncs_like_a_model_and_mirror_mode_adds_and_removes_members(
    root: Path,
) -> None:
    audience_file(
        root,
        "eu",
        EU + "splits:\n  groups:\n    - {name: a, percent: 50}\n    - {name: b, percent: 50}\n",
    )
    write(
        root,
        "destinations/list.yml",
        "type: sqlite\npath: list.sqlite\ntable: members\ncreate_table: true\n",
    )
    write(
        root,
        "syncs/eu_list.yml",
        "model: eu\ndestination: list\nmode: mirror\nmax_remove_pct: 50\nmappings:\n"
        "  - {column: id, field: id}\n  - {column: name, field: name}\n"
        "  - {column: split, field: split}\n",
    )
    project = api.load_project(root)
    first = api.run(project, "eu_list")
    assert first.status.value == "succeeded", first
    rows = sqlite_rows(root / "list.sqlite", "members")
    assert [(r[0], r[1]) for r in rows] == [(1, "Ann O'Neil"), (2, "bob"), (5, "dan\\x")]
    assert {r[2] for r in rows} <= {"a", "b"}
    import duckdb

    with duckdb.connect(str(root / "wh.duckdb")) as con:
        con.execute("UPDATE people SET country = 'US' WHERE id = 2")  # leaves the audience
        con.execute("UPDATE people SET country = 'DE' WHERE id = 4")  # joins it
    second = api.run(api.load_project(root), "eu_list")
    assert second.status.value == "succeeded", second
    assert (second.counts.added, second.counts.removed) == (1, 1)
    assert [r[0] for r in sqlite_rows(root / "list.sqlite", "members")] == [1, 4, 5]


def test_cli_audience_shows_size_sample_breakdown_and_sql(root: Path) -> None:
    audience_file(root, "eu", EU)
    args = ("-C", str(root), "--now", "2024-06-15T12:00:00")
    shown = run_cli("audience", "eu", "--sample", "2", "--breakdown", "country", *args)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == "eu: 3 members of 5 (matched 3, holdout 0)"
    assert "country in ['FR', 'DE']" in shown.stdout
    assert "***" in shown.stdout and "Ann" not in shown.stdout
    as_json = run_cli("audience", "eu", "--json", "--breakdown", "country", *args)
    data = json.loads(as_json.stdout)
    assert (data["parent"], data["matched"], data["members"]) == (5, 3, 3)
    assert data["breakdown"]["values"] == [["FR", 2], ["DE", 1]]
    sql = run_cli("audience", "eu", "--sql", "-C", str(root))
    assert sql.returncode == 0
    assert sql.stdout.strip() == api.load_project(root).models["eu"].sql.strip()
    missing = run_cli("audience", "nope", "-C", str(root))
    assert missing.returncode == 2 and "unknown audience `nope` (known: eu)" in missing.stderr


def test_run_checks_the_audience_as_validate_does_and_sends_nothing(tmp_path: Path) -> None:
    # The warehouse reads `seen` as a timestamp but the audience compares it with a date:
    # only the check against the warehouse sees it, and `run` makes that check too.
    root = duckdb_project(tmp_path / "proj", DATA)
    schema = root / "audience_schemas" / "people.yml"
    schema.write_text(schema.read_text().replace("    seen: timestamp\n", ""))
    schema.write_text(
        schema.read_text().replace(
            "    name: {type: string, personal: true}\n",
            "    name: {type: string, personal: true}\n    seen:\n",
        )
    )
    audience_file(
        root,
        "recent",
        "schema: people\nconditions:\n  - {column: seen, op: equals, value: 2024-06-14}\n",
    )
    write(
        root,
        "destinations/list.yml",
        "type: sqlite\npath: list.sqlite\ntable: members\ncreate_table: true\n",
    )
    write(
        root,
        "syncs/recent_list.yml",
        "model: recent\ndestination: list\nmappings:\n  - {column: id, field: id}\n",
    )

    ran = run_cli("run", "recent_list", "-C", str(root))

    assert ran.returncode == 2, ran.stdout + ran.stderr
    lines = [ln for ln in ran.stderr.splitlines() if ln.strip()]
    assert lines == [
        "error: audiences/recent.yml:3: conditions.0.column: `seen` is timestamp in the "
        "warehouse but the audience reads it as date from its value: declare `seen: timestamp` "
        "in the columns of `people` in the schema"
    ]
    assert not (root / "list.sqlite").exists()
    planned = run_cli("plan", "recent_list", "-C", str(root))
    assert planned.returncode == 2 and "audiences/recent.yml:3:" in planned.stderr
