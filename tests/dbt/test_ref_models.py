"""Models that read dbt relations: `dbt: name` and {{ ref('name') }} in model SQL."""

from __future__ import annotations

import pytest
from tests.conftest import Builder
from tests.conftest import sqlite_rows

from backhaul.config.checks import check_project
from backhaul.errors import ConfigErrors

from .conftest import DbtProject


def test_dbt_model_syncs_the_rows_dbt_built(bh: Builder) -> None:
    bh.write("models/customers.yml", {"source": "wh", "primary_key": "id", "dbt": "customers"})
    db = bh.sqlite_destination()
    bh.sync("customers_to_db", model="customers")

    assert bh.load().models["customers"].sql == 'SELECT * FROM "main"."customers"'
    assert check_project(bh.load()) == []
    summary = bh.run("customers_to_db")

    assert summary.counts.succeeded == 3
    assert sqlite_rows(db) == [
        (1, "ada@example.com"),
        (2, "grace@example.com"),
        (3, "alan@example.com"),
    ]


def test_ref_in_sql_is_replaced_by_the_relation(bh: Builder) -> None:
    sql = (
        "SELECT o.order_id AS id, c.email, o.amount\n"
        "FROM {{ ref('orders') }} AS o\n"
        "JOIN {{ref(\"shop\", 'customers')}} AS c ON c.id = o.customer_id"
    )
    bh.model("orders", sql)
    db = bh.sqlite_destination()
    bh.sync("orders_to_db", model="orders")

    model = bh.load().models["orders"]
    assert '"main_marts"."order_facts" AS o' in model.sql
    assert 'JOIN "main"."customers" AS c' in model.sql
    assert "{{" not in model.sql
    assert bh.run("orders_to_db").counts.succeeded == 3
    assert sqlite_rows(db) == [
        (10, "ada@example.com"),
        (20, "grace@example.com"),
        (30, "alan@example.com"),
    ]


def test_ref_in_inline_sql(bh: Builder) -> None:
    bh.write(
        "models/pro.yml",
        {
            "source": "wh",
            "primary_key": "id",
            "sql": "SELECT * FROM {{ ref('customers') }} WHERE plan = 'pro'",
        },
    )
    assert bh.load().models["pro"].sql == ('SELECT * FROM "main"."customers" WHERE plan = \'pro\'')


def _errors(bh: Builder) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        bh.load()
    return [e.message for e in info.value.errors]


def test_unknown_dbt_model_names_file_line_and_suggests(bh: Builder) -> None:
    bh.write("models/c.yml", "source: wh\nprimary_key: id\ndbt: ref('custmers')\n")
    bh.model("o", "SELECT *\nFROM {{ ref('ordrs') }}")
    assert _errors(bh) == [
        "models/c.yml:3: dbt: unknown dbt model `custmers` in "
        f"{bh.root.parent / 'shop' / 'target' / 'manifest.json'} (did you mean `customers`? "
        "known: customers, orders, plans); run `dbt parse` if it was added recently",
        "models/o.sql:2: unknown dbt model `ordrs` in "
        f"{bh.root.parent / 'shop' / 'target' / 'manifest.json'} (did you mean `orders`? "
        "known: customers, orders, plans); run `dbt parse` if it was added recently",
    ]


def test_missing_manifest_is_reported_at_the_model(bh: Builder, dbt_project: DbtProject) -> None:
    (dbt_project.target / "manifest.json").unlink()
    bh.write("models/c.yml", "source: wh\nprimary_key: id\ndbt: customers\n")
    [message] = _errors(bh)
    assert message.startswith("models/c.yml:3: dbt: no dbt manifest at ")
    assert "run `dbt parse` (or `dbt build`)" in message


def test_dbt_model_without_dbt_project(bh: Builder) -> None:
    bh.write("backhaul.yml", {"name": "t"})
    bh.write("models/c.yml", "source: wh\nprimary_key: id\ndbt: customers\n")
    [message] = _errors(bh)
    assert message.startswith("models/c.yml:3: dbt: this model refers to a dbt model but ")
    assert "`dbt_project`" in message


def test_dbt_and_sql_together_are_refused(bh: Builder) -> None:
    bh.write("models/c.yml", "source: wh\nprimary_key: id\nsql: SELECT 1\ndbt: customers\n")
    assert _errors(bh) == ["models/c.yml:3: sql: give either `sql` or `dbt`, not both"]


def test_sql_without_refs_needs_no_manifest(bh: Builder, dbt_project: DbtProject) -> None:
    (dbt_project.target / "manifest.json").unlink()
    bh.model("plain", "SELECT 1 AS id, 'reference' AS email")
    assert bh.load().models["plain"].sql.strip() == "SELECT 1 AS id, 'reference' AS email"
