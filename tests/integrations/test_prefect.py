"""Prefect: the connection block and the flow that triggers a sync and waits for it, run
against a `backhaul serve` on loopback with Prefect's test harness (a temporary API)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prefect.testing.utilities import prefect_test_harness

from backhaul import api
from backhaul.errors import SyncRunFailed
from backhaul.integrations.prefect import BackhaulConnection
from backhaul.integrations.prefect import run_backhaul_sync

from .conftest import Served
from .conftest import SyncProject


@pytest.fixture(scope="module")
def harness() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=300):
        yield


def test_flow_triggers_waits_and_returns_the_run(
    harness: None, syncs: SyncProject, served_syncs: Served
) -> None:
    BackhaulConnection(url=served_syncs.url, token=served_syncs.token).save(
        "backhaul-test", overwrite=True
    )
    connection = BackhaulConnection.load("backhaul-test")
    assert connection.token.get_secret_value() == served_syncs.token

    result = run_backhaul_sync(connection, "customers_to_db", poll_interval=0.2)

    assert result["status"] == "succeeded"
    assert (result["counts"]["added"], result["counts"]["rejected"]) == (3, 0)
    with api.open_store(syncs.bh.load()) as store:
        (run,) = store.runs(limit=5)
    assert run.run_id == result["run_id"]
    assert len(syncs.table("contacts")) == 3


def test_flow_fails_on_a_partial_run_when_asked(
    harness: None, syncs: SyncProject, served_syncs: Served
) -> None:
    connection = BackhaulConnection(url=served_syncs.url, token=served_syncs.token)
    assert run_backhaul_sync(connection, "plans_update", poll_interval=0.2)["status"] == "partial"
    with pytest.raises(SyncRunFailed, match="was partial"):
        run_backhaul_sync(connection, "plans_update", fail_on_partial=True, poll_interval=0.2)
