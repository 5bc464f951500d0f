"""Airflow: an operator that runs a sync, in the worker or through ``backhaul serve``.

Example (a DAG file)::

    from backhaul.integrations.airflow import BackhaulSyncOperator

    # In the worker's process, from a project folder the worker can read:
    BackhaulSyncOperator(task_id="crm", sync="pql_to_crm", project_dir="/opt/backhaul")

    # Through a `backhaul serve` (trigger, then poll; deferrable frees the worker slot):
    BackhaulSyncOperator(
        task_id="crm", sync="pql_to_crm", conn_id="backhaul_default", deferrable=True
    )

The Airflow connection's ``host`` is the server's URL and its ``password`` an API token of
an operator (``backhaul users token create``). The task returns (and pushes to XCom) the
run as :meth:`~backhaul.integrations.common.SyncRunResult.as_dict`; it fails when the run
failed, was guarded or cancelled, and on a partial run with ``fail_on_partial`` or more
rejected rows than ``max_rejected``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException
from airflow.triggers.base import BaseTrigger
from airflow.triggers.base import TriggerEvent

from backhaul.errors import BackhaulError
from backhaul.errors import RemoteError
from backhaul.integrations.common import SyncRunResult
from backhaul.integrations.common import failure
from backhaul.integrations.common import run_in_process
from backhaul.integrations.remote import DEFAULT_POLL_S
from backhaul.integrations.remote import AsyncRemoteClient
from backhaul.integrations.remote import Connection
from backhaul.integrations.remote import RemoteClient

TRIGGER_PATH = "backhaul.integrations.airflow.BackhaulRunTrigger"


class BackhaulRunTrigger(BaseTrigger):
    """Polls one run of ``backhaul serve`` from Airflow's triggerer until it has finished.

    Fires one event: ``{"status": "finished", "result": {...}}`` with the run, or
    ``{"status": "error", "message": ...}`` when the server could not be read (or the run
    outlived ``timeout_s``).
    """

    def __init__(
        self,
        url: str,
        token: str,
        run_id: str,
        poll_interval: float = DEFAULT_POLL_S,
        timeout_s: float | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.url = url
        self.token = token
        self.run_id = run_id
        self.poll_interval = poll_interval
        self.timeout_s = timeout_s

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return TRIGGER_PATH, {
            "url": self.url,
            "token": self.token,
            "run_id": self.run_id,
            "poll_interval": self.poll_interval,
            "timeout_s": self.timeout_s,
        }

    async def run(self) -> AsyncIterator[TriggerEvent]:
        client = AsyncRemoteClient(Connection(self.url, self.token))
        try:
            result = await client.wait(
                self.run_id, poll_s=self.poll_interval, timeout_s=self.timeout_s
            )
        except RemoteError as exc:
            error = {"status": "error", "message": exc.message, "run_id": self.run_id}
            yield TriggerEvent(error)  # type: ignore[no-untyped-call]
            return
        finished = {"status": "finished", "result": result.as_dict()}
        yield TriggerEvent(finished)  # type: ignore[no-untyped-call]


class BackhaulSyncOperator(BaseOperator):
    """Runs one sync and fails the task when the run did.

    Give ``project_dir`` to run in the worker's process, or ``conn_id`` (or ``url`` and
    ``token``) to run through ``backhaul serve``.

    Args:
        sync: The sync's name (templated).
        project_dir: The Backhaul project folder (templated).
        conn_id: An Airflow connection: host = the server's URL, password = API token.
        url: The server's URL, instead of a connection.
        token: Its API token, instead of a connection.
        full_resync: Send every row, not only the changes.
        fail_on_partial: Fail the task when some rows were rejected.
        max_rejected: Fail the task when more rows than this were rejected.
        deferrable: Remote only: wait in Airflow's triggerer instead of a worker slot.
        poll_interval: Seconds between polls of a remote run.
        run_timeout: Remote only: give up waiting after this many seconds (the run goes
            on; cancel it in the web app if needed).
    """

    template_fields: Sequence[str] = ("sync", "project_dir")
    ui_color = "#e8f1fb"

    def __init__(
        self,
        *,
        sync: str,
        project_dir: str | None = None,
        conn_id: str | None = None,
        url: str | None = None,
        token: str | None = None,
        full_resync: bool = False,
        fail_on_partial: bool = False,
        max_rejected: int | None = None,
        deferrable: bool = False,
        poll_interval: float = DEFAULT_POLL_S,
        run_timeout: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        remote = conn_id is not None or url is not None
        if remote == (project_dir is not None):
            raise ValueError(
                "BackhaulSyncOperator needs either project_dir (run in the worker) or "
                "conn_id / url and token (run through backhaul serve), not both"
            )
        if url is not None and token is None:
            raise ValueError("BackhaulSyncOperator: give `token` with `url`, or use conn_id")
        if deferrable and not remote:
            raise ValueError("deferrable=True needs a remote backhaul serve (conn_id or url)")
        self.sync = sync
        self.project_dir = project_dir
        self.conn_id = conn_id
        self.url = url
        self.token = token
        self.full_resync = full_resync
        self.fail_on_partial = fail_on_partial
        self.max_rejected = max_rejected
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.run_timeout = run_timeout

    def connection(self) -> Connection:
        """The server's address and token, from the arguments or the Airflow connection."""
        if self.url is not None and self.token is not None:
            return Connection(self.url, self.token)
        assert self.conn_id is not None
        conn = BaseHook.get_connection(self.conn_id)
        host = conn.host or ""
        if "://" not in host:
            scheme = conn.schema or "http"
            host = f"{scheme}://{host}" + (f":{conn.port}" if conn.port else "")
        if not conn.host or not conn.password:
            raise AirflowException(
                f"connection `{self.conn_id}` needs host (the backhaul serve URL) and "
                "password (an API token)"
            )
        return Connection(host, conn.password)

    def execute(self, context: Any) -> dict[str, Any]:
        if self.project_dir is not None:
            try:
                result = run_in_process(
                    self.project_dir, self.sync, full_resync=self.full_resync, trigger="airflow"
                )
            except BackhaulError as exc:  # the run could not start (config, connection)
                raise AirflowException(f"sync `{self.sync}` did not run: {exc}") from None
            return self._finish(result)
        connection = self.connection()
        with RemoteClient(connection) as client:
            try:
                run_id = client.trigger(self.sync, full_resync=self.full_resync)
                self.log.info("started run %s of sync %s", run_id, self.sync)
                if not self.deferrable:
                    result = client.wait(
                        run_id, poll_s=self.poll_interval, timeout_s=self.run_timeout
                    )
                    return self._finish(result)
            except RemoteError as exc:
                raise AirflowException(exc.message) from None
        self.defer(
            trigger=BackhaulRunTrigger(
                connection.url, connection.token, run_id, self.poll_interval, self.run_timeout
            ),
            method_name="execute_complete",
        )
        raise AssertionError("defer() raises TaskDeferred")  # pragma: no cover

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        """Resumes the task when the trigger fired."""
        if event.get("status") != "finished":
            raise AirflowException(str(event.get("message") or event))
        return self._finish(SyncRunResult.from_dict(event["result"]))

    def _finish(self, result: SyncRunResult) -> dict[str, Any]:
        counts = ", ".join(f"{k} {result.count(k)}" for k in ("added", "changed", "removed"))
        self.log.info(
            "sync %s run %s %s: %s, rejected %s",
            result.sync,
            result.run_id,
            result.status.value,
            counts,
            result.count("rejected"),
        )
        reason = failure(
            result, fail_on_partial=self.fail_on_partial, max_rejected=self.max_rejected
        )
        if reason is not None:
            raise AirflowException(reason)
        return result.as_dict()


__all__ = ["BackhaulRunTrigger", "BackhaulSyncOperator"]
