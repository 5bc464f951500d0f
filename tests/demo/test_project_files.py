"""The demo project's files validate against the config models and run on the warehouse."""

from __future__ import annotations

import importlib.util
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from backhaul.config.models import ColumnMapping
from backhaul.config.models import DuckDBSourceConfig
from backhaul.config.models import ModelConfig
from backhaul.config.models import ProjectConfig
from backhaul.config.models import StaticMapping
from backhaul.config.models import SyncConfig
from backhaul.config.models import TemplateMapping
from backhaul.config.secrets import references
from backhaul.demo.project import SIGNING_SECRET_ENV
from backhaul.demo.project import WAREHOUSE_FILE
from backhaul.demo.project import write_demo_project
from backhaul.demo.warehouse import apply_changes
from backhaul.demo.warehouse import build_warehouse
from backhaul.plugins import BUILTIN_DESTINATIONS
from backhaul.plugins import Registry
from backhaul.sources.duckdb import DuckDBSource

HOOK = "http://127.0.0.1:8765/hooks/pql?team=growth&x=a#b"


def _yaml(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text(encoding="utf-8"))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write_demo_project(tmp_path, webhook_url=HOOK)
    return tmp_path


def test_writes_the_expected_files(tmp_path: Path) -> None:
    written = write_demo_project(tmp_path / "demo", webhook_url=HOOK)
    relative = {p.relative_to(tmp_path / "demo").as_posix() for p in written}
    assert {
        "backhaul.yml",
        "sources/warehouse.yml",
        "models/pql_users.yml",
        "models/pql_users.sql",
        "destinations/crm.yml",
        "destinations/events_hook.yml",
        "destinations/exports.yml",
        "syncs/pql_to_crm.yml",
        "syncs/pqls_to_webhook.yml",
        "syncs/pql_export.yml",
    } <= relative
    assert all(p.is_file() and p.stat().st_size > 0 for p in written)
    # writing again replaces the files rather than failing
    assert write_demo_project(tmp_path / "demo", webhook_url=HOOK) == written


def test_project_source_and_models_validate(project: Path) -> None:
    config = ProjectConfig.model_validate(_yaml(project / "backhaul.yml"))
    assert config.name == "northwind_demo"
    source = DuckDBSourceConfig.model_validate(_yaml(project / "sources/warehouse.yml"))
    assert source.path == WAREHOUSE_FILE
    model = ModelConfig.model_validate(_yaml(project / "models/pql_users.yml"))
    assert (model.source, model.primary_key) == ("warehouse", ["user_id"])
    health = ModelConfig.model_validate(_yaml(project / "models/accounts_health.yml"))
    assert health.primary_key == ["account_id"]


def _sync(project: Path, name: str) -> SyncConfig:
    return SyncConfig.model_validate(_yaml(project / "syncs" / f"{name}.yml"))


def test_crm_sync_is_flat_with_a_template_a_static_and_a_cast(project: Path) -> None:
    sync = _sync(project, "pql_to_crm")
    assert (sync.model, sync.destination, sync.object) == ("pql_users", "crm", "contacts")
    assert sync.mode.value == "mirror"
    assert sync.match.fields == ["user_id"]
    by_field = {m.field: m for m in sync.mappings}
    assert all("." not in f for f in by_field)  # a SQLite table has no nested fields
    for column in ("user_id", "email", "first_name", "last_name", "lifecycle_stage", "plan"):
        mapping = by_field[column]
        assert isinstance(mapping, ColumnMapping) and mapping.column == column
    score = by_field["lead_score"]
    assert isinstance(score, ColumnMapping) and score.cast is not None
    assert score.cast.value == "int"
    full_name = by_field["full_name"]
    assert isinstance(full_name, TemplateMapping)
    assert full_name.template == "{{ first_name }} {{ last_name }}"
    source = by_field["lead_source"]
    assert isinstance(source, StaticMapping) and source.value == "warehouse"


def test_webhook_sync_nests_the_account(project: Path) -> None:
    sync = _sync(project, "pqls_to_webhook")
    assert (sync.destination, sync.mode.value) == ("events_hook", "upsert")
    columns = {m.field: m.column for m in sync.mappings if isinstance(m, ColumnMapping)}
    assert columns["account.name"] == "account_name"
    assert {"email", "lead_score", "pql"} <= columns.keys()


def test_export_sync_targets_the_file(project: Path) -> None:
    sync = _sync(project, "pql_export")
    assert (sync.model, sync.destination) == ("pql_users", "exports")
    assert len(sync.mappings) >= 5


def test_mapped_columns_exist_in_the_model(project: Path) -> None:
    build_warehouse(project / WAREHOUSE_FILE, accounts=40)
    config = DuckDBSourceConfig.model_validate(_yaml(project / "sources/warehouse.yml"))
    source = DuckDBSource(config, project)
    try:
        sql = (project / "models/pql_users.sql").read_text(encoding="utf-8")
        columns = source.columns(sql)
        rows = sum(batch.num_rows for batch in source.stream(sql, batch_size=500))
    finally:
        source.close()
    assert columns["user_id"].upper() == "INTEGER"
    assert rows > 40
    assert {"lead_score", "pql", "lifecycle_stage", "email"} <= columns.keys()
    for name in ("pql_to_crm", "pqls_to_webhook", "pql_export"):
        sync = _sync(project, name)
        for mapping in sync.mappings:
            if isinstance(mapping, ColumnMapping):
                assert mapping.column in columns, (name, mapping.column)


def test_destination_files_hold_the_connector_keys(project: Path) -> None:
    crm = _yaml(project / "destinations/crm.yml")
    assert crm == {
        "type": "sqlite",
        "path": "crm.sqlite",
        "table": "contacts",
        "create_table": True,
    }
    hook = _yaml(project / "destinations/events_hook.yml")
    assert hook["url"] == HOOK  # survives YAML quoting exactly
    assert (hook["type"], hook["mode"], hook["batch_size"]) == ("webhook", "batch", 50)
    assert references(hook["signing_secret"]) == [SIGNING_SECRET_ENV]
    exports = _yaml(project / "destinations/exports.yml")
    assert exports == {
        "type": "file",
        "format": "csv",
        "path": "exports/pql_users.csv",
        "layout": "current",
    }


def _connector_missing(type_: str) -> bool:
    module = BUILTIN_DESTINATIONS[type_].partition(":")[0]
    return importlib.util.find_spec(module) is None


@pytest.mark.parametrize("name", ["crm", "events_hook", "exports"])
def test_destination_files_validate_with_their_connector(project: Path, name: str) -> None:
    data = _yaml(project / "destinations" / f"{name}.yml")
    if _connector_missing(data["type"]):
        pytest.skip(f"the {data['type']} destination connector is not installed")
    model = Registry().destination(data["type"]).config_model
    assert model.model_validate(data).type == data["type"]


def test_whole_project_loads(project: Path) -> None:
    if any(_connector_missing(t) for t in ("sqlite", "webhook", "file")):
        pytest.skip("a destination connector used by the demo is not installed")
    from backhaul.config.loader import load_project

    loaded = load_project(project)
    assert set(loaded.syncs) == {"pql_to_crm", "pqls_to_webhook", "pql_export"}
    assert set(loaded.destinations) == {"crm", "events_hook", "exports"}
    assert loaded.models["pql_users"].config.primary_key == ["user_id"]


def _contacts(project: Path) -> dict[int, tuple[str, str, int]]:
    con = sqlite3.connect(project / "crm.sqlite")
    try:
        rows = con.execute("SELECT user_id, email, plan, lead_score FROM contacts").fetchall()
    finally:
        con.close()
    return {int(r[0]): (r[1], r[2], r[3]) for r in rows}


def test_a_day_in_the_demo_reaches_the_crm(project: Path) -> None:
    if _connector_missing("sqlite") or _connector_missing("webhook") or _connector_missing("file"):
        pytest.skip("a destination connector used by the demo is not installed")
    from backhaul import api

    built = build_warehouse(project / WAREHOUSE_FILE, accounts=80)
    loaded = api.load_project(project)
    first = api.run(loaded, "pql_to_crm")
    assert first.status.value == "succeeded", first.error
    assert first.counts.added == built.users
    before = _contacts(project)
    assert len(before) == built.users

    day = apply_changes(project / WAREHOUSE_FILE)
    second = api.run(loaded, "pql_to_crm")
    assert second.status.value == "succeeded", second.error
    assert (second.counts.added, second.counts.removed) == (day.signed_up, day.deleted)
    # only mapped columns count, so some users whose model row changed stay unchanged here
    assert day.upgraded <= second.counts.changed <= day.changed
    after = _contacts(project)
    assert len(after) == built.users + day.signed_up - day.deleted
    assert len(before.keys() - after.keys()) == day.deleted
    assert len(after.keys() - before.keys()) == day.signed_up
    moved = {k for k in before.keys() & after.keys() if before[k][1] != after[k][1]}
    assert len(moved) == day.upgraded
