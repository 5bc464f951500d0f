"""The HTTP client holds its calls in flight to `concurrency` by itself, not through its
connection pool (an HTTP/2 connection would carry many more calls at once)."""

from __future__ import annotations

import asyncio

import httpx

from backhaul.calls import MemoryRecorder
from backhaul.destinations.http import HttpClient
from backhaul.destinations.slack import SlackConfig
from backhaul.destinations.webhook import WebhookConfig
from backhaul.destinations.zendesk import ZendeskConfig


class Counting:
    """A transport handler that answers after a short wait and counts calls in flight."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.most_in_flight = 0
        self.calls = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.01)
        finally:
            self.in_flight -= 1
        return httpx.Response(200, json={})


def counted(concurrency: int) -> tuple[HttpClient, Counting]:
    """A client of ``concurrency`` calls whose transport counts what reaches it."""
    handler = Counting()
    client = HttpClient(
        label="probe",
        recorder=MemoryRecorder(),
        concurrency=concurrency,
        transport=httpx.MockTransport(handler),
    )
    return client, handler


async def test_calls_in_flight_stay_within_concurrency_whatever_the_transport() -> None:
    client, handler = counted(3)
    async with client:
        results = await asyncio.gather(
            *(client.request("GET", "https://api.example.com/ping") for _ in range(10))
        )

    assert all(result.ok for result in results)
    assert handler.calls == 10
    assert handler.most_in_flight == 3


async def test_a_client_used_in_a_second_event_loop_still_bounds_its_calls() -> None:
    client, handler = counted(2)

    async def burst() -> None:
        await asyncio.gather(
            *(client.request("GET", "https://api.example.com/ping") for _ in range(6))
        )

    await asyncio.to_thread(asyncio.run, burst())  # another loop, as a connection check has
    await burst()
    await client.aclose()

    assert handler.calls == 12
    assert handler.most_in_flight == 2


def test_http2_is_offered_unless_the_destination_file_turns_it_off() -> None:
    webhook = {"type": "webhook", "url": "https://hooks.example.com/in"}
    zendesk = {"type": "zendesk", "subdomain": "acme", "oauth_token": "zd-token"}
    slack = {"type": "slack", "token": "xoxb-1", "channel": "#ops"}
    for model, file in ((WebhookConfig, webhook), (ZendeskConfig, zendesk), (SlackConfig, slack)):
        assert model.model_validate(file).http2 is True
        assert model.model_validate({**file, "http2": False}).http2 is False
