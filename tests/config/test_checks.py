from __future__ import annotations

from pathlib import Path

import pytest

from backhaul.config import check_project
from backhaul.config import load_project
from backhaul.config.project import Project

from . import TrackedDuckDBSource
from . import good_project
from . import registry

pytestmark = pytest.mark.integration

SYNC = "syncs/users_to_crm.yml"
SECRET = "pa55-word-for-crm"


@pytest.fixture(autouse=True)
def _crm_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKHAUL_TEST_CRM_PASSWORD", SECRET)


def load(root: Path, changes: dict[str, str] | None = None) -> Project:
    return load_project(good_project(root, changes), registry=registry())


def where(
    project: Project, open_sources: bool = True
) -> list[tuple[str | None, int | None, str | None, str]]:
    return [
        (e.file, e.line, e.key, e.reason) for e in check_project(project, open_sources=open_sources)
    ]


def sync_with(*mapping_lines: str, extra: str = "") -> dict[str, str]:
    text = "model: users\ndestination: crm\n" + extra + "mappings:\n"
    return {SYNC: text + "".join(line + "\n" for line in mapping_lines)}


def test_good_project_is_clean(tmp_path: Path) -> None:
    assert where(load(tmp_path)) == []


def test_unknown_model_and_destination_with_suggestions(tmp_path: Path) -> None:
    text = "model: usres\ndestination: zzz\nmappings:\n  - column: id\n    field: id\n"
    project = load(tmp_path, {SYNC: text})
    assert where(project, open_sources=False) == [
        (SYNC, 1, "model", "unknown model `usres` (did you mean `users`? known: users)"),
        (SYNC, 2, "destination", "unknown destination `zzz` (known: crm)"),
    ]


def test_unknown_source(tmp_path: Path) -> None:
    project = load(tmp_path, {"models/users.yml": "source: warehous\nprimary_key: id\n"})
    assert where(project) == [
        (
            "models/users.yml",
            1,
            "source",
            "unknown source `warehous` (did you mean `warehouse`? known: warehouse)",
        )
    ]


def test_missing_env_var_is_reported_without_secret_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BACKHAUL_TEST_CRM_PASSWORD")
    monkeypatch.setenv("BACKHAUL_TEST_CRM_URL", SECRET)
    text = "type: test\nurl: ${env:BACKHAUL_TEST_CRM_URL}\npassword: ${env:BACKHAUL_TEST_CRM_PASSWORD}\n"
    project = load(tmp_path, {"destinations/crm.yml": text})
    errors = check_project(project)
    assert [(e.file, e.line, e.key) for e in errors] == [("destinations/crm.yml", 3, "password")]
    assert errors[0].reason.startswith(
        "environment variable BACKHAUL_TEST_CRM_PASSWORD is not set (referenced by `password`)"
    )
    assert all(SECRET not in str(e) and SECRET not in (e.detail or "") for e in errors)


def test_sql_error_names_the_sql_file_and_line(tmp_path: Path) -> None:
    sql = "SELECT id,\n       email\nFORM users\n"
    project = load(tmp_path, {"models/users.sql": sql})
    [(file, line, key, reason)] = where(project)
    assert (file, line, key) == ("models/users.sql", 3, "sql")
    assert reason.startswith("the model SQL fails in the warehouse: Parser Error: syntax error")
    assert 'at or near "users"' in reason


@pytest.mark.parametrize(
    "sql", ["\n\n", "-- to do: the query\n", ";\n", "/* soon */ ;\n-- later\n"]
)
@pytest.mark.parametrize("open_sources", [True, False])
def test_a_model_file_without_a_query_is_named_with_or_without_the_warehouse(
    tmp_path: Path, sql: str, open_sources: bool
) -> None:
    project = load(tmp_path, {"models/users.sql": sql})
    reason = "the model's SQL holds no query, only blanks, comments or `;`; write its SELECT"
    # One error, the same with or without the warehouse: no parser error beside it.
    assert where(project, open_sources=open_sources) == [("models/users.sql", 1, "sql", reason)]


def test_a_query_that_ends_too_early_is_named_at_its_last_line(tmp_path: Path) -> None:
    # Read nested in a subquery, the warehouse finds the error at the closing parenthesis
    # on the line after the model's: it is the model's last line, and the query's end.
    project = load(tmp_path, {"models/users.sql": "SELECT *\nFROM users WHERE\n\n"})
    [(file, line, key, reason)] = where(project)
    assert (file, line, key) == ("models/users.sql", 2, "sql")
    assert reason.endswith("syntax error at the end of the query")


def test_sql_error_of_inline_sql(tmp_path: Path) -> None:
    yml = "source: warehouse\nprimary_key: id\nsql: SELECT id FROM no_such_table\n"
    project = load(tmp_path, {"models/users.yml": yml, "models/users.sql": ""})
    [(file, line, key, reason)] = where(project)
    assert (file, line, key) == ("models/users.yml", 3, "sql")
    assert "Catalog Error: Table with name no_such_table does not exist" in reason


def test_primary_key_column_missing(tmp_path: Path) -> None:
    project = load(tmp_path, {"models/users.yml": "source: warehouse\nprimary_key: user_id\n"})
    assert where(project) == [
        (
            "models/users.yml",
            2,
            "primary_key",
            "primary key column `user_id` is not in the model's output (columns: id, email, "
            "first_name)",
        )
    ]


def test_second_primary_key_column_missing(tmp_path: Path) -> None:
    yml = "source: warehouse\nprimary_key:\n  - id\n  - Email\n"
    project = load(tmp_path, {"models/users.yml": yml})
    assert where(project) == [
        (
            "models/users.yml",
            4,
            "primary_key.1",
            "primary key column `Email` is not in the model's output (did you mean `email`?)",
        )
    ]


def test_mapping_from_missing_column(tmp_path: Path) -> None:
    project = load(
        tmp_path,
        sync_with("  - column: id", "    field: id", "  - column: emial", "    field: email"),
    )
    assert where(project) == [
        (
            SYNC,
            6,
            "mappings.1.column",
            "column `emial` is not in the output of model `users` (did you mean `email`?)",
        )
    ]


def test_template_variable_missing(tmp_path: Path) -> None:
    project = load(
        tmp_path,
        sync_with(
            "  - column: id",
            "    field: id",
            "  - template: '{{ first_name | upcase }} {{ last_name }}'",
            "    field: name",
        ),
    )
    assert where(project) == [
        (
            SYNC,
            6,
            "mappings.1.template",
            "template variable `last_name` is not a column of model `users` "
            "(did you mean `first_name`?)",
        )
    ]


def test_template_syntax_error(tmp_path: Path) -> None:
    project = load(
        tmp_path,
        sync_with(
            "  - column: id", "    field: id", "  - template: '{{ first_name'", "    field: n"
        ),
    )
    [(file, line, key, reason)] = where(project)
    assert (file, line, key) == (SYNC, 6, "mappings.1.template")
    assert reason == "the template does not parse: expected '}}', found end of file"


def test_batch_size_above_destination_maximum(tmp_path: Path) -> None:
    project = load(
        tmp_path, sync_with("  - column: id", "    field: id", extra="batch_size: 500\n")
    )
    assert where(project, open_sources=False) == [
        (
            SYNC,
            3,
            "batch_size",
            "batch_size 500 is above the largest batch the `test` destination accepts (100); "
            "set it to 100 or less",
        )
    ]
    ok = load(
        tmp_path / "ok", sync_with("  - column: id", "    field: id", extra="batch_size: 100\n")
    )
    assert where(ok, open_sources=False) == []


def test_default_batch_size_above_destination_maximum(tmp_path: Path) -> None:
    project = load(tmp_path, {"backhaul.yml": "name: acme\ndefaults:\n  batch_size: 1000\n"})
    assert where(project, open_sources=False) == [
        (
            "backhaul.yml",
            3,
            "defaults.batch_size",
            "batch_size 1000 is above the largest batch the `test` destination accepts (100); "
            "set it to 100 or less (the default applies to sync `users_to_crm`)",
        )
    ]


def test_match_fields_must_be_mapped(tmp_path: Path) -> None:
    project = load(
        tmp_path,
        sync_with("  - column: id", "    field: id", extra="match:\n  fields: [id, emial]\n"),
    )
    assert where(project, open_sources=False) == [
        (SYNC, 4, "match.fields.1", "match field `emial` is not a mapped field (mapped: id)")
    ]


def test_source_that_cannot_open(tmp_path: Path) -> None:
    project = load(tmp_path, {"sources/warehouse.yml": "type: duckdb\npath: missing.duckdb\n"})
    [(file, line, key, reason)] = where(project)
    assert (file, line, key) == ("sources/warehouse.yml", 2, "path")
    assert reason.startswith("DuckDB file")
    assert "missing.duckdb does not exist; fix `path`" in reason


def test_without_open_sources_the_sql_is_not_compiled(tmp_path: Path) -> None:
    project = load(tmp_path, {"models/users.sql": "SELEKT 1\n"})
    assert where(project, open_sources=False) == []
    assert len(where(project)) == 1


def test_sources_are_closed_after_checking(tmp_path: Path) -> None:
    project = load_project(good_project(tmp_path), registry=registry())
    project.registry.sources["duckdb"] = f"{TrackedDuckDBSource.__module__}:TrackedDuckDBSource"
    TrackedDuckDBSource.opened.clear()
    assert where(project) == []
    assert len(TrackedDuckDBSource.opened) == 1
    assert TrackedDuckDBSource.opened[0].closed


@pytest.mark.parametrize("path", ["warehouse.duckdb", "./sub/../warehouse.duckdb"])
def test_a_duckdb_destination_on_the_warehouse_file_is_refused(tmp_path: Path, path: str) -> None:
    (tmp_path / "a" / "sub").mkdir(parents=True)
    dest = f"type: duckdb\npath: {path}\ntable: copies\ncreate_table: true\n"
    duckdb = registry(duckdb="backhaul.destinations.duckdb_table:DuckDBDestination")
    project = load_project(
        good_project(tmp_path / "a", {"destinations/crm.yml": dest}), registry=duckdb
    )
    assert where(project, open_sources=False) == [
        (
            "destinations/crm.yml",
            2,
            "path",
            "the DuckDB file of source `warehouse`, which model `users` reads: a run holds it "
            "open to plan and cannot write to it; write to another DuckDB file",
        )
    ]
    moved = {"destinations/crm.yml": dest.replace(path, "copies.duckdb")}
    other = load_project(good_project(tmp_path / "b", moved), registry=duckdb)
    assert not [e for e in where(other, open_sources=False) if e[0] == "destinations/crm.yml"]
