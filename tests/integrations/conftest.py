"""A Backhaul project downstream of a real dbt project, for the orchestrator integrations.

The dbt fixtures (``built_dbt``, ``dbt_project``, ``bh``) come from tests/dbt. The project
has three syncs into one SQLite file: ``customers_to_db`` (model ``dbt: customers``),
``orders_to_db`` (``{{ ref('orders') }}`` joined to ``{{ ref('customers') }}``) and
``plans_update`` (mode ``update`` into a table that lacks one customer, so each run rejects
exactly one row).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from tests.conftest import Builder
from tests.conftest import free_port
from tests.dbt.conftest import DbtProject
from tests.dbt.conftest import built_dbt
from tests.dbt.conftest import dbt_project

__all__ = ["built_dbt", "dbt_project"]

# Airflow reads and writes its configuration under $AIRFLOW_HOME (default ~/airflow) on
# import; keep it out of the home folder.
os.environ.setdefault("AIRFLOW_HOME", os.path.join(tempfile.gettempdir(), "backhaul-airflow-home"))

ORDERS_SQL = (
    "SELECT o.order_id AS id, c.email, o.amount\n"
    "FROM {{ ref('orders') }} AS o JOIN {{ ref('customers') }} AS c ON c.id = o.customer_id"
)


@dataclass
class SyncProject:
    bh: Builder
    dbt: DbtProject

    @property
    def root(self) -> Path:
        return self.bh.root

    @property
    def dest(self) -> Path:
        return self.bh.root / "dest.sqlite"

    def table(self, name: str) -> list[tuple[object, ...]]:
        con = sqlite3.connect(self.dest)
        try:
            return con.execute(f'SELECT * FROM "{name}" ORDER BY 1').fetchall()
        finally:
            con.close()


@pytest.fixture
def syncs(dbt_project: DbtProject, tmp_path: Path) -> SyncProject:
    bh = Builder(
        tmp_path / "bh",
        warehouse_file=str(dbt_project.warehouse),
        project_extra={"dbt_project": "../shop"},
    )
    bh.write("models/customers.yml", {"source": "wh", "primary_key": "id", "dbt": "customers"})
    bh.model("orders", ORDERS_SQL)
    for table in ("contacts", "orders"):
        bh.destination(table, type="sqlite", path="dest.sqlite", table=table, create_table=True)
    bh.destination("plans", type="sqlite", path="dest.sqlite", table="plans")
    bh.sync("customers_to_db", model="customers", destination="contacts", tags=["crm"])
    bh.sync("orders_to_db", model="orders", destination="orders")
    bh.sync(
        "plans_update",
        model="customers",
        destination="plans",
        mode="update",
        mappings=[{"column": "id", "field": "id"}, {"column": "plan", "field": "plan"}],
    )
    con = sqlite3.connect(bh.root / "dest.sqlite")
    con.execute("CREATE TABLE plans (id INTEGER PRIMARY KEY, plan TEXT)")
    con.executemany("INSERT INTO plans VALUES (?, 'none')", [(1,), (2,)])
    con.commit()
    con.close()
    return SyncProject(bh, dbt_project)


@dataclass
class Served:
    """A `backhaul serve` process for the project, and an operator's API token."""

    url: str
    token: str


SERVE = (sys.executable, "-m", "backhaul.cli.app", "serve")
START_TIMEOUT_S = 300.0  # a safety net for a loaded machine, not a measurement


@pytest.fixture
def served_syncs(syncs: SyncProject) -> Iterator[Served]:
    """`backhaul serve` for the project as a subprocess on loopback, and an API token."""
    from backhaul.state.store import RunStore
    from backhaul.web.auth import Role
    from backhaul.web.users import UserStore

    with RunStore.open(syncs.bh.load().metadata_url) as store:
        users = UserStore(store)
        users.add("ops", "ops-password-1", Role.OPERATOR)
        token, _ = users.create_token("ops", "orchestrator")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = syncs.root / "serve.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [*SERVE, "-C", str(syncs.root), "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"},
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                if httpx.get(f"{url}/login", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"backhaul serve did not start: {log_path.read_text()}")
            time.sleep(0.2)
        yield Served(url, token)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
