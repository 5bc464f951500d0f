"""`backhaul dbt exposures`: YAML that dbt itself accepts, linked to the synced models."""

from __future__ import annotations

import json

import pytest
from tests.conftest import Builder

from backhaul.dbt.exposures import build_exposures
from backhaul.dbt.exposures import parse_owner
from backhaul.errors import ConfigError

from .conftest import DbtProject


def _project(bh: Builder, owner: str | None = "Data Team <data@example.com>") -> None:
    extra = {"dbt_project": "../shop"} | ({"owner": owner} if owner else {})
    bh.write("backhaul.yml", {"name": "t", **extra})
    bh.write("models/customers.yml", {"source": "wh", "primary_key": "id", "dbt": "customers"})
    bh.model(
        "orders",
        "SELECT o.order_id AS id, c.email FROM {{ ref('orders') }} o "
        "JOIN {{ ref('shop', 'customers') }} c ON c.id = o.customer_id",
    )
    bh.model("fixed", "SELECT 1 AS id, 'x@example.com' AS email")
    bh.destination("db", type="sqlite", path="dest.sqlite", create_table=True)
    bh.sync("customers-to-db", model="customers", object="customers", mode="mirror")
    bh.sync("orders_to_db", model="orders", object="orders")
    bh.sync("fixed_to_db", model="fixed", object="fixed")
    bh.sync("old_to_db", model="customers", object="old", enabled=False)


def test_exposures_parse_in_dbt_and_link_the_models(bh: Builder, dbt_project: DbtProject) -> None:
    _project(bh)
    out = dbt_project.root / "models" / "backhaul_exposures.yml"
    done = bh.cli("dbt", "exposures", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "wrote 2 exposures" in done.stderr
    assert "skipped fixed_to_db: model `fixed` reads no dbt model" in done.stderr
    assert "skipped old_to_db: disabled" in done.stderr

    dbt_project.dbt("parse", "--no-partial-parse")
    manifest = json.loads((dbt_project.target / "manifest.json").read_text())
    exposures = {e["name"]: e for e in manifest["exposures"].values()}
    assert set(exposures) == {"backhaul_customers_to_db", "backhaul_orders_to_db"}
    customers = exposures["backhaul_customers_to_db"]
    assert customers["type"] == "application"
    assert customers["owner"] == {"name": "Data Team", "email": "data@example.com"}
    assert customers["depends_on"]["nodes"] == ["model.shop.customers"]
    assert customers["description"] == (
        "Backhaul sync `customers-to-db` sends model `customers` to destination `db` "
        "(sqlite), object `customers` in mirror mode."
    )
    assert sorted(exposures["backhaul_orders_to_db"]["depends_on"]["nodes"]) == [
        "model.shop.customers",
        "model.shop.orders",
    ]


def test_owner_flag_wins_and_missing_owner_is_an_error(bh: Builder) -> None:
    _project(bh, owner=None)
    done = bh.cli("dbt", "exposures")
    assert done.returncode == 2
    assert "set `owner: Name <email>` in backhaul.yml or pass --owner" in done.stderr
    done = bh.cli("dbt", "exposures", "--owner", "ops@example.com")
    assert done.returncode == 0, done.stderr
    assert "email: ops@example.com" in done.stdout and "version: 2" in done.stdout


def test_parse_owner_forms() -> None:
    assert parse_owner("Data Team <data@example.com>") == {
        "name": "Data Team",
        "email": "data@example.com",
    }
    assert parse_owner("<data@example.com>") == {"email": "data@example.com"}
    assert parse_owner("data@example.com") == {"email": "data@example.com"}
    assert parse_owner("Data Team") == {"name": "Data Team"}
    with pytest.raises(ConfigError):
        parse_owner("  ")


def test_exposures_in_python(bh: Builder) -> None:
    _project(bh)
    result = build_exposures(bh.load(), owner="Ops")
    [first, second] = result.data["exposures"]
    assert first["owner"] == {"name": "Ops"} and first["depends_on"] == ["ref('customers')"]
    assert second["depends_on"] == ["ref('orders')", "ref('shop', 'customers')"]
    assert second["meta"] == {
        "backhaul_project": "t",
        "backhaul_sync": "orders_to_db",
        "destination": "db",
        "mode": "upsert",
    }
