"""Reading a real dbt manifest: relations, tags, columns, key hints, selection."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from backhaul.dbt.manifest import load_manifest
from backhaul.dbt.manifest import parse_ref
from backhaul.dbt.run_results import load_run_results
from backhaul.errors import ConfigError
from conftest import within

from .conftest import DbtProject


def test_nodes_carry_relation_tags_columns_and_key_hints(built_dbt: DbtProject) -> None:
    manifest = load_manifest(built_dbt.root)

    assert manifest.project_name == "shop"
    customers = manifest.resolve("customers")
    assert customers.unique_id == "model.shop.customers"
    assert customers.relation == '"main"."customers"'
    assert customers.tags == ("crm",)
    assert customers.columns == ("id", "email", "plan")
    assert customers.description == "One row per customer."
    # id has unique + not_null; email only not_null.
    assert customers.key_columns == ("id",)

    orders = manifest.resolve("orders")
    assert orders.relation == '"main_marts"."order_facts"'
    assert set(orders.tags) == {"finance", "crm"}
    assert orders.key_columns == ()  # unique without not_null is no key hint

    seed = manifest.resolve("plans", "shop")
    assert seed.resource_type == "seed"


def test_relation_names_a_table_dbt_really_built(built_dbt: DbtProject) -> None:
    import duckdb

    manifest = load_manifest(built_dbt.target / "manifest.json")
    con = duckdb.connect(str(built_dbt.warehouse), read_only=True)
    try:
        rows = con.execute(
            f"SELECT order_id, amount FROM {manifest.resolve('orders').relation} ORDER BY 1"
        ).fetchall()
    finally:
        con.close()
    assert rows == [(10, 100), (20, 200), (30, 300)]


def test_select_by_name_and_tag(built_dbt: DbtProject) -> None:
    manifest = load_manifest(built_dbt.root)
    assert [n.name for n in manifest.select(["tag:finance"])] == ["orders"]
    assert [n.name for n in manifest.select(["tag:crm"])] == ["customers", "orders"]
    assert [n.name for n in manifest.select(["customers"])] == ["customers"]
    assert [n.name for n in manifest.select([])] == ["customers", "orders"]  # models only
    with pytest.raises(ConfigError, match="matches no dbt model"):
        manifest.select(["tag:nope"])
    with pytest.raises(ConfigError, match="did you mean `customers`"):
        manifest.select(["custmers"])


def test_parse_ref_forms() -> None:
    assert parse_ref("customers") == (None, "customers")
    assert parse_ref("ref('customers')") == (None, "customers")
    assert parse_ref('ref("shop", "customers")') == ("shop", "customers")
    with pytest.raises(ConfigError, match="not a dbt model reference"):
        parse_ref("source('raw', 'x')")


def test_missing_and_broken_manifests_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="run `dbt parse`"):
        load_manifest(tmp_path)
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "manifest.json").write_text(json.dumps({"x": 1}))
    with pytest.raises(ConfigError, match="not a dbt manifest"):
        load_manifest(tmp_path)


def test_target_path_from_dbt_project_yml(built_dbt: DbtProject, tmp_path: Path) -> None:
    (tmp_path / "dbt_project.yml").write_text("name: x\ntarget-path: build\n")
    (tmp_path / "build").mkdir()
    src = built_dbt.target / "manifest.json"
    (tmp_path / "build" / "manifest.json").write_text(src.read_text())
    assert load_manifest(tmp_path).resolve("customers").name == "customers"


@pytest.mark.parametrize("name", ["manifest.json", "run_results.json"])
def test_an_artifact_that_is_a_pipe_is_refused_never_waited_on(tmp_path: Path, name: str) -> None:
    (tmp_path / "target").mkdir()
    os.mkfifo(tmp_path / "target" / name)  # reading it would wait for a writer forever
    load = load_manifest if name == "manifest.json" else load_run_results

    refused = within(30, lambda: load(tmp_path))

    assert isinstance(refused, ConfigError)
    assert str(tmp_path / "target" / name) in refused.message
    assert refused.message.endswith("it is a named pipe (FIFO), not a file")
