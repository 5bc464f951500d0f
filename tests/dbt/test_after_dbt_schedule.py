"""`schedule: {after_dbt: true}`: the scheduler runs a sync when a new dbt invocation rebuilt
a model it reads, with the same choice as `backhaul run --after-dbt`, once per invocation."""

from __future__ import annotations

from datetime import UTC
from datetime import datetime

from tests.conftest import Builder

from backhaul import api
from backhaul.schedule.local import LocalLauncher
from backhaul.schedule.scheduler import Scheduler

from .conftest import DbtProject


def test_the_scheduler_runs_the_syncs_dbt_made_stale(bh: Builder, dbt_project: DbtProject) -> None:
    bh.write("models/customers.yml", {"source": "wh", "primary_key": "id", "dbt": "customers"})
    bh.model("orders", "SELECT order_id AS id, amount FROM {{ ref('orders') }}")
    bh.destination("db", type="sqlite", path="dest.sqlite", create_table=True)
    after_dbt = {"after_dbt": True}
    bh.sync("customers_to_db", model="customers", object="customers", schedule=after_dbt)
    bh.sync(
        "orders_to_db",
        model="orders",
        object="orders",
        mappings=[{"column": "id", "field": "id"}, {"column": "amount", "field": "amount"}],
        schedule=after_dbt,
    )
    loaded = bh.load()
    with api.open_store(loaded) as store:
        launcher = LocalLauncher(loaded, store)
        scheduler = Scheduler(loaded, store, launcher)
        try:
            # The dbt run that built the project came before the schedule was known.
            assert scheduler.tick(datetime.now(UTC)) == []
            dbt_project.dbt("run", "--select", "orders")
            started = scheduler.tick(datetime.now(UTC))
            assert [s.sync for s in started] == ["orders_to_db"]
            assert "dbt rebuilt `orders`" in started[0].reason
            assert launcher.wait(120)
            assert scheduler.tick(datetime.now(UTC)) == []  # once per dbt invocation
            assert [r.trigger for r in store.runs("orders_to_db")] == ["schedule"]
            assert store.runs("customers_to_db") == []
        finally:
            launcher.close()
