"""A client of ``backhaul serve``'s REST API: trigger a sync's run, then poll it to the end.

It uses two endpoints (see docs/web.md): ``POST /api/v1/syncs/{name}/runs`` (202 with the
run id; 409 when the sync is already running) and ``GET /api/v1/runs/{run_id}`` (the run
with its status and counts). Requests carry ``Authorization: Bearer <api token>``; the
token's user needs the operator role. Both a blocking and an asyncio flavour are here, the
latter for Airflow's triggerer.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httpx

from backhaul.errors import RemoteError
from backhaul.integrations.common import SyncRunResult

DEFAULT_POLL_S = 5.0
DEFAULT_TIMEOUT_S = 30.0  # per request


@dataclass(frozen=True)
class Connection:
    """Where ``backhaul serve`` is and how to sign in.

    Attributes:
        url: Its base URL, e.g. ``https://backhaul.internal``.
        token: An API token (``backhaul users token create``) of an operator or admin.
        timeout_s: Per-request timeout.
    """

    url: str
    token: str
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def base(self) -> str:
        return self.url.rstrip("/")

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}


def _trigger_request(sync: str, full_resync: bool) -> tuple[str, dict[str, Any]]:
    return f"/api/v1/syncs/{sync}/runs", {"full_resync": full_resync}


def _check(response: httpx.Response, what: str) -> Any:
    if response.status_code in (200, 202):
        return response.json()
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text[:200]
    hint = {
        401: "; check the API token",
        403: "; the token's user needs the operator role",
        404: "; check the sync's name",
        409: "; wait for the run in progress, or cancel it",
    }.get(response.status_code, "")
    raise RemoteError(f"{what}: backhaul serve answered {response.status_code}: {message}{hint}")


class RemoteClient:
    """Blocking client: :meth:`trigger`, :meth:`get`, :meth:`wait`."""

    def __init__(self, connection: Connection, *, client: httpx.Client | None = None) -> None:
        self.connection = connection
        self._client = client or httpx.Client(
            base_url=connection.base, headers=connection.headers(), timeout=connection.timeout_s
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> RemoteClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def trigger(self, sync: str, *, full_resync: bool = False) -> str:
        """Start a run of ``sync``; its run id."""
        path, body = _trigger_request(sync, full_resync)
        try:
            response = self._client.post(path, json=body)
        except httpx.HTTPError as exc:
            raise RemoteError(f"cannot reach {self.connection.base}: {exc}") from None
        return str(_check(response, f"triggering sync `{sync}`")["run_id"])

    def get(self, run_id: str) -> SyncRunResult:
        """The run as it is now."""
        try:
            response = self._client.get(f"/api/v1/runs/{run_id}")
        except httpx.HTTPError as exc:
            raise RemoteError(f"cannot reach {self.connection.base}: {exc}") from None
        body = _check(response, f"reading run {run_id}")
        return SyncRunResult.from_api(body, web_url=self.connection.base)

    def wait(
        self, run_id: str, *, poll_s: float = DEFAULT_POLL_S, timeout_s: float | None = None
    ) -> SyncRunResult:
        """Poll until the run has finished (RemoteError after ``timeout_s`` seconds)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            result = self.get(run_id)
            if result.finished:
                return result
            if deadline is not None and time.monotonic() >= deadline:
                raise RemoteError(f"run {run_id} still running after {timeout_s:.0f} s")
            time.sleep(poll_s)


class AsyncRemoteClient:
    """The asyncio flavour of :class:`RemoteClient` (for Airflow's triggerer)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def _client(self) -> httpx.AsyncClient:
        c = self.connection
        return httpx.AsyncClient(base_url=c.base, headers=c.headers(), timeout=c.timeout_s)

    async def get(self, run_id: str) -> SyncRunResult:
        async with self._client() as client:
            try:
                response = await client.get(f"/api/v1/runs/{run_id}")
            except httpx.HTTPError as exc:
                raise RemoteError(f"cannot reach {self.connection.base}: {exc}") from None
        body = _check(response, f"reading run {run_id}")
        return SyncRunResult.from_api(body, web_url=self.connection.base)

    async def wait(
        self, run_id: str, *, poll_s: float = DEFAULT_POLL_S, timeout_s: float | None = None
    ) -> SyncRunResult:
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        while True:
            result = await self.get(run_id)
            if result.finished:
                return result
            if deadline is not None and loop.time() >= deadline:
                raise RemoteError(f"run {run_id} still running after {timeout_s:.0f} s")
            await asyncio.sleep(poll_s)


__all__ = [
    "DEFAULT_POLL_S",
    "AsyncRemoteClient",
    "Connection",
    "RemoteClient",
]
