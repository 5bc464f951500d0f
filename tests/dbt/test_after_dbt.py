"""`backhaul run --after-dbt`: exactly the syncs whose dbt models dbt rebuilt run."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Builder
from tests.conftest import sqlite_rows

from backhaul import api
from backhaul.dbt.run_results import choose_syncs
from backhaul.dbt.run_results import load_run_results

from .conftest import DbtProject


def _project(bh: Builder) -> None:
    """Three syncs: one on customers, one on orders (joined to customers), one on no dbt."""
    bh.write("models/customers.yml", {"source": "wh", "primary_key": "id", "dbt": "customers"})
    bh.model(
        "orders",
        "SELECT order_id AS id, amount FROM {{ ref('orders') }}",
    )
    bh.model("fixed", "SELECT 1 AS id, 'x@example.com' AS email")
    bh.destination("db", type="sqlite", path="dest.sqlite", create_table=True)
    bh.sync("customers_to_db", model="customers", object="customers")
    bh.sync(
        "orders_to_db",
        model="orders",
        object="orders",
        mappings=[{"column": "id", "field": "id"}, {"column": "amount", "field": "amount"}],
    )
    bh.sync("fixed_to_db", model="fixed", object="fixed")


def _run_counts(bh: Builder) -> dict[str, int]:
    with api.open_store(bh.load()) as store:
        return {name: len(store.runs(name, limit=100)) for name in bh.load().syncs}


def test_after_dbt_runs_exactly_the_syncs_of_rebuilt_models(
    bh: Builder, dbt_project: DbtProject
) -> None:
    _project(bh)
    first = bh.cli("run", "--all")
    assert first.returncode == 0, first.stderr
    assert _run_counts(bh) == {"customers_to_db": 1, "orders_to_db": 1, "fixed_to_db": 1}

    # Change one dbt model and rebuild only it.
    orders_sql = (dbt_project.root / "models/orders.sql").read_text()
    dbt_project.write("models/orders.sql", orders_sql.replace("id * 100", "id * 1000"))
    dbt_project.dbt("run", "--select", "orders")

    done = bh.cli("run", "--after-dbt")
    assert done.returncode == 0, done.stderr
    assert "run  orders_to_db: dbt rebuilt `orders` (success)" in done.stdout
    assert "skip customers_to_db: nothing it reads was rebuilt: `customers` not in this" in (
        done.stdout
    )
    assert "skip fixed_to_db: its model reads no dbt model" in done.stdout
    assert _run_counts(bh) == {"customers_to_db": 1, "orders_to_db": 2, "fixed_to_db": 1}
    with api.open_store(bh.load()) as store:
        last = store.runs("orders_to_db", limit=1)[0]
    assert last.counts.changed == 3 and last.counts.succeeded == 3
    assert sqlite_rows(bh.root / "dest.sqlite", "orders") == [
        (10, 1000),
        (20, 2000),
        (30, 3000),
    ]


def test_a_rebuilt_upstream_model_runs_every_sync_that_reads_it(
    bh: Builder, dbt_project: DbtProject
) -> None:
    _project(bh)
    assert bh.cli("run", "--all").returncode == 0
    # customers is rebuilt, orders (downstream) too: `dbt build` of customers+.
    dbt_project.dbt("build", "--select", "customers+")

    done = bh.cli("run", "--after-dbt", "--run-results", str(dbt_project.target))
    assert done.returncode == 0, done.stderr
    assert _run_counts(bh) == {"customers_to_db": 2, "orders_to_db": 2, "fixed_to_db": 1}


def test_failed_and_skipped_nodes_run_nothing(bh: Builder, dbt_project: DbtProject) -> None:
    _project(bh)
    path = dbt_project.target / "run_results.json"
    data = json.loads(path.read_text())
    for result in data["results"]:
        if result["unique_id"] == "model.shop.customers":
            result["status"] = "error"
        elif result["unique_id"] == "model.shop.orders":
            result["status"] = "skipped"
    failed = Path(bh.root / "failed.json")
    failed.write_text(json.dumps(data))

    done = bh.cli("run", "--after-dbt", "--run-results", str(failed))
    assert done.returncode == 0, done.stderr
    assert "`customers` error" in done.stdout and "`orders` skipped" in done.stdout
    assert "nothing to run" in done.stdout
    assert _run_counts(bh) == {"customers_to_db": 0, "orders_to_db": 0, "fixed_to_db": 0}


def test_after_dbt_keeps_to_the_syncs_named(bh: Builder, dbt_project: DbtProject) -> None:
    _project(bh)
    results = load_run_results(dbt_project.root)  # the session's `dbt build`: all rebuilt
    assert results.command == "build"
    assert {"model.shop.customers", "model.shop.orders", "seed.shop.plans"} <= results.rebuilt()
    assert not any(uid.startswith("test.") for uid in results.rebuilt())
    project = bh.load()
    chosen = choose_syncs(project, results, [project.sync("orders_to_db")])
    assert [(c.sync, c.run) for c in chosen] == [("orders_to_db", True)]

    done = bh.cli("run", "customers_to_db", "--after-dbt")
    assert done.returncode == 0, done.stderr
    assert _run_counts(bh) == {"customers_to_db": 1, "orders_to_db": 0, "fixed_to_db": 0}


def test_missing_run_results_is_a_clear_error(bh: Builder, dbt_project: DbtProject) -> None:
    _project(bh)
    (dbt_project.target / "run_results.json").unlink()
    done = bh.cli("run", "--after-dbt")
    assert done.returncode == 2
    assert "no dbt run results at" in done.stderr and "run `dbt build`" in done.stderr
