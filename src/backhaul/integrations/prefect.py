"""Prefect: a block for the connection to ``backhaul serve`` and a flow that runs a sync.

Example::

    from backhaul.integrations.prefect import BackhaulConnection, run_backhaul_sync

    BackhaulConnection(url="https://backhaul.internal", token="...").save("prod")

    @flow
    def nightly() -> None:
        run_backhaul_sync(BackhaulConnection.load("prod"), "pql_to_crm")

``run_backhaul_sync`` triggers the run (``POST /api/v1/syncs/{name}/runs``), waits for it
by polling ``GET /api/v1/runs/{id}``, and returns the run as
:meth:`~backhaul.integrations.common.SyncRunResult.as_dict`. The flow run fails when the
Backhaul run failed, was guarded or cancelled, and on a partial run with
``fail_on_partial`` or more rejected rows than ``max_rejected``.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect import get_run_logger
from prefect import task
from prefect.blocks.core import Block
from pydantic import Field
from pydantic import SecretStr

from backhaul.integrations.common import SyncRunResult
from backhaul.integrations.common import check
from backhaul.integrations.remote import DEFAULT_POLL_S
from backhaul.integrations.remote import Connection
from backhaul.integrations.remote import RemoteClient


class BackhaulConnection(Block):
    """Where ``backhaul serve`` is, and an operator's API token for its REST API."""

    _block_type_name = "Backhaul Connection"
    _description = "The address of a `backhaul serve` and an API token to run syncs with."

    url: str = Field(description="The server's base URL, e.g. https://backhaul.internal")
    token: SecretStr = Field(description="An API token of an operator or admin.")
    timeout_s: float = Field(30.0, gt=0, description="Per-request timeout in seconds.")

    def connection(self) -> Connection:
        return Connection(self.url, self.token.get_secret_value(), self.timeout_s)

    def client(self) -> RemoteClient:
        return RemoteClient(self.connection())


@task(name="trigger-backhaul-sync", retries=0)
def trigger_sync(connection: BackhaulConnection, sync: str, full_resync: bool = False) -> str:
    """Start a run of ``sync``; its run id."""
    with connection.client() as client:
        run_id = client.trigger(sync, full_resync=full_resync)
    get_run_logger().info("started run %s of sync %s", run_id, sync)
    return run_id


@task(name="wait-for-backhaul-run")
def wait_for_run(
    connection: BackhaulConnection,
    run_id: str,
    poll_interval: float = DEFAULT_POLL_S,
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """Poll the run until it has finished; the run as a dict."""
    with connection.client() as client:
        result = client.wait(run_id, poll_s=poll_interval, timeout_s=timeout_s)
    get_run_logger().info(
        "run %s of sync %s %s: %s", run_id, result.sync, result.status.value, result.counts
    )
    return result.as_dict()


@flow(name="backhaul-sync")
def run_backhaul_sync(
    connection: BackhaulConnection,
    sync: str,
    full_resync: bool = False,
    fail_on_partial: bool = False,
    max_rejected: int | None = None,
    poll_interval: float = DEFAULT_POLL_S,
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """Trigger a sync's run on ``backhaul serve``, wait for it, and judge it."""
    run_id = trigger_sync(connection, sync, full_resync)
    result = wait_for_run(connection, run_id, poll_interval, timeout_s)
    check(
        SyncRunResult.from_dict(result), fail_on_partial=fail_on_partial, max_rejected=max_rejected
    )
    return result


__all__ = ["BackhaulConnection", "run_backhaul_sync", "trigger_sync", "wait_for_run"]
