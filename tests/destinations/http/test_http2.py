"""HTTP/2 to https destinations: negotiated over real TLS, bounded by `concurrency`.

A Hypercorn server on loopback speaks TLS with a certificate from a test CA (trustme) that
the client trusts through ``SSL_CERT_FILE``, the way an operator trusts a private CA. The
clients are those a Zendesk and a webhook destination build from their files; the server's
ASGI scope tells which protocol each call came in.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

import pytest
import trustme
from hypercorn.asyncio import serve
from hypercorn.config import Config

from backhaul.calls import MemoryRecorder
from backhaul.destinations.base import DestinationContext
from backhaul.destinations.http.client import HttpClient
from backhaul.destinations.webhook import WebhookConfig
from backhaul.destinations.webhook import WebhookDestination
from backhaul.destinations.zendesk import ZendeskConfig
from backhaul.destinations.zendesk import ZendeskDestination

pytestmark = pytest.mark.integration

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

H2_AND_H11 = ["h2", "http/1.1"]
H11_ONLY = ["http/1.1"]
ANSWER_DELAY = 0.2  # seconds each call is held by the server, so calls overlap


@dataclass
class Probe:
    """An ASGI app that answers every call with `{}` after a short delay and notes how it
    came: protocol version, client connection, how many calls were in flight at once."""

    versions: list[str] = field(default_factory=list)
    connections: set[tuple[str, int]] = field(default_factory=set)
    in_flight: int = 0
    most_in_flight: int = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        self.versions.append(scope["http_version"])
        self.connections.add(tuple(scope["client"]))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            while (await receive()).get("more_body"):
                pass
            await asyncio.sleep(ANSWER_DELAY)
            headers = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b"{}"})
        finally:
            self.in_flight -= 1

    @staticmethod
    async def _lifespan(receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


@dataclass(frozen=True)
class TlsServer:
    url: str
    probe: Probe


@pytest.fixture
def ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> trustme.CA:
    """A test CA the HTTP clients trust (and no proxy between them and the server)."""
    authority = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    return authority


@asynccontextmanager
async def tls_server(ca: trustme.CA, tmp_path: Path, alpn: list[str]) -> AsyncIterator[TlsServer]:
    """Hypercorn serving a :class:`Probe` over TLS on a free loopback port, offering ``alpn``."""
    cert = ca.issue_cert("localhost")
    cert_file, key_file = tmp_path / "server.pem", tmp_path / "server.key"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = Config()
    config.bind = [f"fd://{listener.detach()}"]  # the server owns the socket from here
    config.certfile, config.keyfile = str(cert_file), str(key_file)
    config.alpn_protocols = alpn
    config.accesslog = config.errorlog = None
    probe = Probe()
    stop = asyncio.Event()
    server = asyncio.create_task(serve(probe, config, shutdown_trigger=stop.wait))
    try:
        await _until_listening(port)
        yield TlsServer(f"https://localhost:{port}", probe)
    finally:
        stop.set()
        await server


async def _until_listening(port: int) -> None:
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.01)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise AssertionError(f"the TLS server did not listen on port {port}")


def zendesk(tmp_path: Path, url: str, **settings: Any) -> ZendeskDestination:
    config = ZendeskConfig.model_validate(
        {"type": "zendesk", "oauth_token": "zd-test", "base_url": url, **settings}
    )
    return ZendeskDestination(config, DestinationContext(tmp_path, MemoryRecorder()))


def webhook(tmp_path: Path, url: str, **settings: Any) -> WebhookDestination:
    config = WebhookConfig.model_validate({"type": "webhook", "url": f"{url}/hook", **settings})
    return WebhookDestination(config, DestinationContext(tmp_path, MemoryRecorder()))


async def call_at_once(client: HttpClient, url: str, calls: int) -> None:
    """``calls`` requests through ``client`` at the same time; each must succeed."""
    try:
        results = await asyncio.gather(
            *(client.request("POST", f"{url}/calls", json={"n": n}) for n in range(calls))
        )
    finally:
        await client.aclose()
    assert all(result.ok for result in results)


@pytest.mark.parametrize(
    ("build", "concurrency", "calls"),
    [(zendesk, 3, 12), (webhook, 5, 20)],
    ids=["zendesk", "webhook"],
)
async def test_https_destinations_speak_http2_over_one_connection_within_their_concurrency(
    ca: trustme.CA, tmp_path: Path, build: Callable[..., Any], concurrency: int, calls: int
) -> None:
    async with tls_server(ca, tmp_path, H2_AND_H11) as server:
        destination = build(tmp_path, server.url, concurrency=concurrency)
        await call_at_once(destination.client, server.url, calls)

    assert server.probe.versions == ["2"] * calls
    assert len(server.probe.connections) == 1  # one connection carries every stream
    # HTTP/2 would take every call at once; the destination's concurrency holds it back.
    assert server.probe.most_in_flight == concurrency


@pytest.mark.parametrize("build", [zendesk, webhook], ids=["zendesk", "webhook"])
async def test_http2_false_in_the_destination_file_keeps_to_http11(
    ca: trustme.CA, tmp_path: Path, build: Callable[..., Any]
) -> None:
    async with tls_server(ca, tmp_path, H2_AND_H11) as server:
        destination = build(tmp_path, server.url, concurrency=2, http2=False)
        await call_at_once(destination.client, server.url, 6)

    assert server.probe.versions == ["1.1"] * 6
    assert len(server.probe.connections) == 2  # keep-alive: one connection per call in flight
    assert server.probe.most_in_flight == 2


async def test_a_server_without_http2_is_spoken_to_in_http11(
    ca: trustme.CA, tmp_path: Path
) -> None:
    async with tls_server(ca, tmp_path, H11_ONLY) as server:
        destination = webhook(tmp_path, server.url, concurrency=2)
        assert destination.config.http2
        await call_at_once(destination.client, server.url, 6)

    assert server.probe.versions == ["1.1"] * 6
    assert server.probe.most_in_flight == 2
