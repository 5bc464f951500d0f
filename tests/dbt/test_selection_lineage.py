"""`model:M+` follows dbt's lineage: syncs whose models read dbt models built from M."""

from __future__ import annotations

from tests.conftest import Builder

from backhaul.selection import select

from .conftest import DbtProject
from .test_after_dbt import _project


def test_model_selectors_follow_the_dbt_graph(bh: Builder, dbt_project: DbtProject) -> None:
    _project(bh)
    project = bh.load()

    assert select(project, ["model:customers"]) == ["customers_to_db"]
    assert select(project, ["model:orders"]) == ["orders_to_db"]
    # orders is built from customers, which is built from the seed plans.
    assert select(project, ["model:customers+"]) == ["customers_to_db", "orders_to_db"]
    assert select(project, ["model:plans+"]) == ["customers_to_db", "orders_to_db"]
    assert select(project, ["model:plans"]) == []
    assert select(project, ["model:plans+"], ["model:orders"]) == ["customers_to_db"]


def test_run_with_a_lineage_selector_runs_only_those(bh: Builder, dbt_project: DbtProject) -> None:
    _project(bh)
    done = bh.cli("run", "--select", "model:customers+", "--exclude", "customers_to_db")
    assert done.returncode == 0, done.stderr
    from backhaul import api

    with api.open_store(bh.load()) as store:
        ran = {name for name in bh.load().syncs if store.runs(name, limit=5)}
    assert ran == {"orders_to_db"}
