"""Waits become run events and records: rate-limit pauses, retries, throttling."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from datetime import UTC
from datetime import datetime

import pytest
from rich.console import Console

from backhaul.calls import MemoryRecorder
from backhaul.cli.render import WAIT_LINES
from backhaul.cli.render import RunReporter
from backhaul.destinations.http import HttpClient
from backhaul.destinations.http import RateLimiter
from backhaul.destinations.http import RetryPolicy
from backhaul.observe.events import RunEvent
from backhaul.observe.events import RunFinished
from backhaul.observe.events import RunStarted
from backhaul.observe.events import Waiting
from backhaul.observe.events import WaitKind
from backhaul.observe.waits import WaitTracker
from backhaul.observe.waits import seconds_text
from backhaul.summary import RunStatus
from backhaul.summary import RunSummary
from backhaul.testing.receiver import WebhookReceiver
from conftest import Builder

pytestmark = pytest.mark.integration

FAST = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05, jitter=False)


class ManualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeClock(ManualClock):
    """Moves only when something sleeps on it."""

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(key_field="id") as hook:
        yield hook


def waits_of(events: list[RunEvent]) -> list[Waiting]:
    return [e for e in events if isinstance(e, Waiting)]


async def test_overlapping_waits_count_once() -> None:
    clock = ManualClock()
    tracker = WaitTracker("r", "s", clock=clock)
    gate = asyncio.Event()

    async def wait_for_gate() -> None:
        await gate.wait()

    tasks = [
        asyncio.create_task(tracker.held(WaitKind.RATE_LIMIT, wait_for_gate())) for _ in range(4)
    ]
    await asyncio.sleep(0)
    clock.now = 10.0
    gate.set()
    await asyncio.gather(*tasks)
    clock.now = 12.0
    await tracker.held(WaitKind.RETRY, _advance(clock, 1.5))

    assert tracker.total_s == pytest.approx(11.5)  # 10 s shared by four tasks, then 1.5 s
    assert tracker.seconds(WaitKind.RATE_LIMIT) == pytest.approx(10.0)
    assert tracker.seconds(WaitKind.RETRY) == pytest.approx(1.5)


async def _advance(clock: ManualClock, seconds: float) -> None:
    clock.now += seconds
    await asyncio.sleep(0)


async def test_a_429_is_announced_once_and_recorded_on_the_retry(
    receiver: WebhookReceiver,
) -> None:
    events: list[RunEvent] = []
    tracker = WaitTracker("r", "s", events.append)
    recorder = MemoryRecorder()
    receiver.faults.rate_limit_next(1, retry_after=0.2)
    async with HttpClient(label="webhook", recorder=recorder, retry=FAST, waits=tracker) as client:
        result = await client.request("POST", receiver.url, json={"id": 1})

    assert result.ok
    [wait] = waits_of(events)
    assert wait.kind is WaitKind.RATE_LIMIT
    assert wait.reason == "webhook rate limit (429, Retry-After 0.2)"
    assert 0 < wait.seconds <= 0.2
    first, second = recorder.calls
    assert first.response_headers["retry-after"] == "0.2"
    assert (first.wait_ms, first.wait_reason) == (0.0, None)
    assert second.wait_ms > 0 and second.wait_reason == wait.reason
    assert tracker.total_s > 0 and tracker.count(WaitKind.RATE_LIMIT) == 1


async def test_a_5xx_retry_is_announced_with_its_attempt(receiver: WebhookReceiver) -> None:
    events: list[RunEvent] = []
    recorder = MemoryRecorder()
    receiver.faults.fail_next(1, status=503)
    async with HttpClient(
        label="webhook", recorder=recorder, retry=FAST, waits=WaitTracker("r", "s", events.append)
    ) as client:
        await client.request("POST", receiver.url, json={"id": 1})

    [wait] = waits_of(events)
    host = receiver.url.split("/")[2]
    assert wait.kind is WaitKind.RETRY and wait.seconds == pytest.approx(0.01)
    assert wait.reason == f"webhook at {host} answered 503 Service Unavailable; retry 2 of 4"
    assert recorder.calls[1].wait_reason == wait.reason


async def test_response_headers_are_redacted_like_request_headers() -> None:
    secret = "hook-secret-91a2b3"
    recorder = MemoryRecorder()
    with WebhookReceiver(token=secret) as hook:
        async with HttpClient(
            label="webhook",
            recorder=recorder,
            headers={"Authorization": f"Bearer {secret}"},
        ) as client:
            client.redactor.add(secret)
            await client.request("POST", hook.url, json={"id": 1})
    [call] = recorder.calls
    assert call.response_headers["content-type"] == "application/json"
    assert secret not in repr(call)


async def test_client_side_throttling_is_summarised_not_announced(
    receiver: WebhookReceiver,
) -> None:
    clock = FakeClock()
    events: list[RunEvent] = []
    tracker = WaitTracker("r", "s", events.append, summary_every=1.0, clock=clock)
    limiter = RateLimiter(2, per=1.0, clock=clock, sleep=clock.sleep)
    async with HttpClient(
        label="webhook", recorder=MemoryRecorder(), limiter=limiter, waits=tracker
    ) as client:
        for i in range(8):
            await client.request("POST", receiver.url, json={"id": i})

    waits = waits_of(events)
    assert waits and all(w.kind is WaitKind.THROTTLE for w in waits)
    assert len(waits) < 6  # a summary now and then, not one per held request
    assert waits[0].reason.startswith("the client-side rate limit held calls back for")
    assert tracker.seconds(WaitKind.THROTTLE) == pytest.approx(3.0)  # 6 of 8 waited 0.5 s
    assert tracker.count(WaitKind.THROTTLE) == 6


def test_engine_batch_retries_are_announced(project: Builder, receiver: WebhookReceiver) -> None:
    project.users(3)
    project.webhook_destination(receiver, retry={"max_attempts": 1})
    project.sync("s", destination="hook")
    receiver.faults.fail_next(1, status=503)
    events: list[RunEvent] = []

    run = project.run("s", events=events.append)

    assert run.status is RunStatus.SUCCEEDED, run.error
    [wait] = waits_of(events)
    assert wait.kind is WaitKind.RETRY and wait.seconds == 1.0
    assert wait.reason.startswith("batch 0 failed (webhook at ")
    assert wait.reason.endswith("; batch retry 1 of 2")
    assert run.wait_s > 0


def _reporter_output(events: list[RunEvent]) -> list[str]:
    out = io.StringIO()
    reporter = RunReporter(Console(file=out, width=200, force_terminal=False))
    for event in events:
        reporter(event)
    return [line.strip() for line in out.getvalue().splitlines()]


def test_the_cli_holds_back_repeated_wait_lines() -> None:
    many = [
        Waiting("r", "s", WaitKind.RATE_LIMIT, 1.0, f"HubSpot rate limit (429) #{i}")
        for i in range(20)
    ]
    summary = RunSummary(
        "r",
        "s",
        RunStatus.SUCCEEDED,
        started_at=datetime.now(UTC),
        finished_at=datetime.now(UTC),
        wait_s=20.0,
    )

    lines = _reporter_output([RunStarted("r", "s"), *many, RunFinished(summary)])

    shown = [line for line in lines if line.startswith("waiting ")]
    assert shown == [f"waiting 1 s: HubSpot rate limit (429) #{i}" for i in range(WAIT_LINES)]
    held = 20 - WAIT_LINES
    assert any(
        line.startswith("waited 20 s for the destination") and f"{held} waits not shown" in line
        for line in lines
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.25, "250 ms"), (1.0, "1 s"), (2.5, "2.5 s"), (10.2, "10 s"), (150, "2 min 30 s")],
)
def test_durations_read_naturally(seconds: float, text: str) -> None:
    assert seconds_text(seconds) == text
