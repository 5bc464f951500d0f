"""`backhaul init --from-dbt`: models from dbt models, keys from tests, source from profile."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from tests.conftest import run_cli
from tests.conftest import sqlite_rows
from tests.conftest import within

from backhaul import api
from backhaul.config.loader import read_yaml
from backhaul.dbt.scaffold import init_from_dbt
from backhaul.errors import ConfigError

from .conftest import DbtProject


def test_init_from_dbt_by_tag_then_validate_and_run(
    dbt_project: DbtProject, tmp_path: Path
) -> None:
    root = tmp_path / "bh"
    done = run_cli("init", str(root), "--from-dbt", str(dbt_project.root), "--select", "tag:crm")
    assert done.returncode == 0, done.stderr
    assert "set `primary_key` in models orders" in done.stdout

    project_yml, _ = read_yaml(root / "backhaul.yml", root)
    assert project_yml["dbt_project"] == "../shop"
    source, _ = read_yaml(root / "sources/warehouse.yml", root)
    assert source == {"type": "duckdb", "path": "../shop/shop.duckdb"}
    customers, _ = read_yaml(root / "models/customers.yml", root)
    assert customers == {
        "source": "warehouse",
        "dbt": "customers",
        "primary_key": "id",
        "description": "One row per customer.",
        "tags": ["crm"],
    }
    orders, _ = read_yaml(root / "models/orders.yml", root)
    assert orders["primary_key"] == "TODO" and orders["dbt"] == "orders"
    assert not (root / "models/plans.yml").exists()  # a seed, and not selected

    # validate flags the TODO key and names the columns to choose from.
    check = run_cli("validate", "-C", str(root))
    assert check.returncode == 2
    assert "models/orders.yml:4: primary_key: primary key column `TODO` is not in" in (check.stderr)
    assert "order_id, customer_id, amount" in check.stderr

    text = (root / "models/orders.yml").read_text()
    (root / "models/orders.yml").write_text(
        text.replace("primary_key: TODO", "primary_key: order_id")
    )
    (root / "destinations/db.yml").parent.mkdir()
    (root / "destinations/db.yml").write_text(
        "type: sqlite\npath: dest.sqlite\ntable: customers\ncreate_table: true\n"
    )
    (root / "syncs/customers_to_db.yml").parent.mkdir()
    (root / "syncs/customers_to_db.yml").write_text(
        "model: customers\ndestination: db\nmappings:\n"
        "  - {column: id, field: id}\n  - {column: plan, field: plan}\n"
    )
    assert run_cli("validate", "-C", str(root)).returncode == 0
    summary = api.run(api.load_project(root), "customers_to_db")
    assert summary.counts.succeeded == 3
    assert sqlite_rows(root / "dest.sqlite", "customers") == [(1, "pro"), (2, "free"), (3, "pro")]


def test_init_from_dbt_by_name_into_an_existing_project(
    dbt_project: DbtProject, tmp_path: Path
) -> None:
    root = tmp_path / "bh"
    first = init_from_dbt(root, dbt_project.root, ["customers"])
    assert {p.relative_to(root).as_posix() for p in first} >= {
        "backhaul.yml",
        "sources/warehouse.yml",
        "models/customers.yml",
        ".gitignore",
    }
    second = init_from_dbt(root, dbt_project.root, ["orders"])
    rel = {p.relative_to(root).as_posix() for p in second}
    assert "models/orders.yml" in rel and "backhaul.yml" not in rel
    assert set(api.load_project(root).models) == {"customers", "orders"}


def test_existing_project_must_point_at_the_dbt_project(
    dbt_project: DbtProject, tmp_path: Path
) -> None:
    root = tmp_path / "bh"
    root.mkdir()
    (root / "backhaul.yml").write_text("name: x\n")
    with pytest.raises(ConfigError, match=re.escape("set `dbt_project: ../shop` in it first")):
        init_from_dbt(root, dbt_project.root, [])


def test_unknown_selection_and_missing_manifest(dbt_project: DbtProject, tmp_path: Path) -> None:
    done = run_cli(
        "init", str(tmp_path / "bh"), "--from-dbt", str(dbt_project.root), "--select", "tag:x"
    )
    assert done.returncode == 2 and "`--select tag:x` matches no dbt model" in done.stderr
    (dbt_project.target / "manifest.json").unlink()
    done = run_cli("init", str(tmp_path / "bh"), "--from-dbt", str(dbt_project.root))
    assert done.returncode == 2 and "run `dbt parse`" in done.stderr
    assert not (tmp_path / "bh" / "backhaul.yml").exists()


def test_source_from_a_postgres_profile(dbt_project: DbtProject, tmp_path: Path) -> None:
    (dbt_project.root / "profiles.yml").write_text(
        "shop:\n  target: prod\n  outputs:\n    prod:\n      type: postgres\n"
        "      host: db.internal\n      port: 5433\n      user: analytics\n"
        "      password: hunter2\n      dbname: warehouse\n      schema: public\n"
    )
    root = tmp_path / "bh"
    init_from_dbt(root, dbt_project.root, ["customers"])
    text = (root / "sources/warehouse.yml").read_text()
    assert "hunter2" not in text  # the profile's password is never copied
    source, _ = read_yaml(root / "sources/warehouse.yml", root)
    assert source == {
        "type": "postgres",
        "host": "db.internal",
        "port": 5433,
        "user": "analytics",
        "password": "${env:WAREHOUSE_PASSWORD}",
        "database": "warehouse",
    }


def test_source_is_a_todo_when_the_profile_cannot_tell(
    dbt_project: DbtProject, tmp_path: Path
) -> None:
    (dbt_project.root / "profiles.yml").write_text(
        "shop:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n"
        "      path: \"{{ env_var('SHOP_DB') }}\"\n"
    )
    root = tmp_path / "bh"
    init_from_dbt(root, dbt_project.root, ["customers"])
    text = (root / "sources/warehouse.yml").read_text()
    assert "TODO: could not tell the warehouse" in text
    check = run_cli("validate", "-C", str(root))
    assert check.returncode == 2
    assert check.stderr.startswith("error: sources/warehouse.yml:5: path: DuckDB file ")
    assert "TODO.duckdb does not exist" in check.stderr


def test_a_dbt_project_file_that_is_a_pipe_is_not_waited_on(
    dbt_project: DbtProject, tmp_path: Path
) -> None:
    config = dbt_project.root / "dbt_project.yml"
    config.unlink()
    os.mkfifo(config)
    done = within(30, lambda: init_from_dbt(tmp_path / "bh", dbt_project.root, ["customers"]))
    assert isinstance(done, ConfigError), done
    assert f"{config} is a named pipe (FIFO), not a file: it should be dbt's" in str(done)
    assert not (tmp_path / "bh").exists()
