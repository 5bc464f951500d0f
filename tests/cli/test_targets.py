"""`--target NAME` (or BACKHAUL_TARGET, or `default_target`) lays one environment of
`targets:` in backhaul.yml over the source, destination and state files, like dbt's
targets."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from tests.conftest import Builder
from tests.conftest import run_cli
from tests.conftest import sqlite_rows

from backhaul import api

pytestmark = pytest.mark.integration


def _project(project: Builder, **extra: object) -> Builder:
    project.users(4)
    duckdb.connect(str(project.root / "prod.duckdb")).execute(
        "CREATE TABLE users AS SELECT i AS id, 'p' || i || '@prod.example' AS email, "
        "'prod ' || i AS name, 1 AS score FROM range(1, 7) t(i)"
    ).close()
    project.destination("db", type="sqlite", path="dev.sqlite", table="contacts", create_table=True)
    project.sync("s", destination="db")
    config = project.load().config.model_dump(exclude_defaults=True)
    project.write(
        "backhaul.yml",
        {
            **config,
            "targets": {
                "dev": {},
                "prod": {
                    "sources": {"wh": {"path": "prod.duckdb"}},
                    "destinations": {"db": {"path": "prod.sqlite"}},
                    "state": {"path": ".backhaul-prod"},
                },
            },
            **extra,
        },
    )
    return project


def test_a_target_replaces_the_values_it_names(project: Builder) -> None:
    _project(project)

    dev = project.cli("run", "s")
    prod = project.cli("--target", "prod", "run", "s")

    assert dev.returncode == 0 and prod.returncode == 0, dev.stderr + prod.stderr
    assert len(sqlite_rows(project.root / "dev.sqlite")) == 4
    assert len(sqlite_rows(project.root / "prod.sqlite")) == 6
    assert sqlite_rows(project.root / "prod.sqlite")[0][1] == "p1@prod.example"
    # Each target keeps its own snapshots and run history.
    assert (project.root / ".backhaul-prod").is_dir()
    loaded = api.load_project(project.root, target="prod")
    assert loaded.state_dir == project.root / ".backhaul-prod"
    with api.open_store(loaded) as store:
        assert [r.counts.added for r in store.runs("s")] == [6]


def test_the_variable_and_the_default_choose_too(project: Builder, tmp_path: Path) -> None:
    _project(project, default_target="prod")

    assert project.cli("run", "s").returncode == 0  # default_target: prod
    assert len(sqlite_rows(project.root / "prod.sqlite")) == 6
    assert not (project.root / "dev.sqlite").exists()
    by_env = project.cli("run", "s", env={"BACKHAUL_TARGET": "dev"})
    assert by_env.returncode == 0, by_env.stderr
    assert len(sqlite_rows(project.root / "dev.sqlite")) == 4


def test_an_unknown_target_is_one_line(project: Builder) -> None:
    _project(project)

    result = run_cli("--target", "staging", "run", "s", "-C", str(project.root))

    assert result.returncode == 2
    assert (
        result.stderr.strip() == "error: backhaul.yml: unknown target `staging` (known: dev, prod)"
    )


def test_a_target_for_a_destination_no_file_defines_is_an_error(project: Builder) -> None:
    _project(project)
    config = project.load().config.model_dump(exclude_defaults=True, exclude={"targets"})
    project.write(
        "backhaul.yml",
        {**config, "targets": {"prod": {"destinations": {"crm": {"path": "x"}}}}},
    )

    result = project.cli("--target", "prod", "validate", "--offline")

    assert result.returncode == 2
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: backhaul.yml:"), lines
    assert "targets.prod.destinations.crm: the target sets destination `crm`" in lines[0]
