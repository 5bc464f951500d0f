"""The HTTP send loop's per-call costs: no import per request, one pooled connection, and
calls in flight sized to the rate limit."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Iterator
from collections.abc import Sequence
from types import ModuleType

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from backhaul.calls import MemoryRecorder
from backhaul.destinations.http.client import HttpClient
from backhaul.destinations.http.ratelimit import MAX_CONCURRENCY
from backhaul.destinations.http.ratelimit import MIN_CONCURRENCY
from backhaul.destinations.http.ratelimit import UNLIMITED_CONCURRENCY
from backhaul.destinations.http.ratelimit import RateLimit
from backhaul.destinations.http.ratelimit import default_concurrency
from backhaul.destinations.webhook import WebhookConfig
from backhaul.destinations.webhook import WebhookDestination
from backhaul.testing.server import LoopbackServer

pytestmark = pytest.mark.integration


class ImportWatch(importlib.abc.MetaPathFinder):
    """Notes every module Python goes looking for (an import not already loaded)."""

    def __init__(self) -> None:
        self.searched: list[str] = []

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        self.searched.append(fullname)
        return None


@pytest.fixture
def peers() -> Iterator[tuple[str, list[int]]]:
    """A server that answers every call with the client port it came from."""
    seen: list[int] = []

    async def hook(request: Request) -> JSONResponse:
        await request.body()
        assert request.client is not None
        seen.append(request.client.port)
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    with LoopbackServer(app) as server:
        yield f"{server.url}/hook", seen


async def test_requests_import_nothing_and_reuse_one_connection(
    peers: tuple[str, list[int]],
) -> None:
    url, seen = peers
    client = HttpClient(label="test", recorder=MemoryRecorder(), concurrency=1)
    watch = ImportWatch()
    try:
        await client.request("POST", url, json={"warm": True})  # first use may import
        sys.meta_path.insert(0, watch)
        try:
            for i in range(20):
                result = await client.request("POST", url, json={"i": i})
                assert result.ok
        finally:
            sys.meta_path.remove(watch)
    finally:
        await client.aclose()
    # httpcore asks which async library runs on every request; without sniffio installed
    # each ask is a failed import that searches sys.path.
    assert watch.searched == []
    assert len(seen) == 21 and len(set(seen)) == 1  # keep-alive: one connection


def test_default_concurrency_reaches_the_rate_limit() -> None:
    assert default_concurrency(None) == UNLIMITED_CONCURRENCY
    # HubSpot's 100 calls per 10 s at up to a second a call: 10 in flight reach it.
    assert default_concurrency(RateLimit(requests=100, per_seconds=10)) == 10
    assert default_concurrency(RateLimit(requests=1, per_seconds=1)) == MIN_CONCURRENCY
    assert default_concurrency(RateLimit(requests=5000, per_seconds=1)) == MAX_CONCURRENCY


def test_webhook_concurrency_follows_the_rule_unless_set() -> None:
    def concurrency(**extra: object) -> int:
        config = WebhookConfig.model_validate(
            {"type": "webhook", "url": "http://127.0.0.1:9/hook", **extra}
        )
        calls = WebhookDestination.calls_in_flight(config)
        assert WebhookDestination.fit_run(config).concurrency == calls  # batches follow calls
        return calls

    assert concurrency() == UNLIMITED_CONCURRENCY
    assert concurrency(rate_limit={"requests": 20, "per_seconds": 1}) == 20
    assert concurrency(rate_limit={"requests": 20, "per_seconds": 1}, concurrency=3) == 3
