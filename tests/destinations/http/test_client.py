"""The HTTP client against a real receiver on loopback, one fault at a time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from collections.abc import Iterator
from collections.abc import Sequence
from typing import Any

import pytest
from tests.conftest import free_port

from backhaul.calls import MemoryRecorder
from backhaul.destinations.http import HttpClient
from backhaul.destinations.http import RateLimiter
from backhaul.destinations.http import Refused
from backhaul.destinations.http import RetryPolicy
from backhaul.destinations.http import RollingWindowLimiter
from backhaul.destinations.http import split_batch
from backhaul.errors import DestinationError
from backhaul.errors import FailureType
from backhaul.observe.redact import Redactor
from backhaul.testing.receiver import WebhookReceiver

pytestmark = pytest.mark.integration

FAST = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05)


class FakeClock:
    """Time for the rate limiter that only moves when it sleeps (nothing really waits)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class Sleeps:
    """Backoff sleeps of the client, recorded and kept short."""

    def __init__(self) -> None:
        self.seen: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.seen.append(seconds)
        await asyncio.sleep(0)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(key_field="id") as hook:
        yield hook


@pytest.fixture
def recorder() -> MemoryRecorder:
    return MemoryRecorder()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
async def client(
    recorder: MemoryRecorder, clock: FakeClock, sleeps: Sleeps
) -> AsyncIterator[HttpClient]:
    http = HttpClient(
        label="webhook",
        recorder=recorder,
        limiter=RateLimiter(None, clock=clock, sleep=clock.sleep),
        retry=FAST,
        timeout=5,
        sleep=sleeps,
        rand=lambda: 0.5,
    )
    yield http
    await http.aclose()


async def test_success_is_recorded_once(
    client: HttpClient, receiver: WebhookReceiver, recorder: MemoryRecorder
) -> None:
    result = await client.request("POST", receiver.url, json={"id": 1, "name": "Ada"})
    assert result.ok and result.status == 200
    assert result.json == {"results": [{"index": 0, "ok": True}]}
    assert receiver.records == {"1": {"id": 1, "name": "Ada"}}
    assert receiver.calls[0].headers["content-type"] == "application/json"
    [call] = recorder.calls
    assert (call.method, call.status, call.attempt, call.error) == ("POST", 200, 1, None)
    assert call.url == receiver.url
    assert call.request_body == '{"id":1,"name":"Ada"}'
    assert call.response_body is not None and '"ok":true' in call.response_body
    assert result.call_id == call.call_id
    assert call.latency_ms >= 0


async def test_429_retry_after_pauses_the_shared_limiter(
    client: HttpClient,
    receiver: WebhookReceiver,
    recorder: MemoryRecorder,
    clock: FakeClock,
    sleeps: Sleeps,
) -> None:
    receiver.faults.rate_limit_next(1, retry_after=1)
    result = await client.request("POST", receiver.url, json={"id": 1})
    assert result.ok and result.attempts == 2
    assert [c.status for c in recorder.calls] == [429, 200]
    assert [c.attempt for c in recorder.calls] == [1, 2]
    # The wait came from the limiter (every task waits), not from a private backoff.
    assert clock.sleeps == [pytest.approx(1.0)]
    assert client.limiter.paused_until == pytest.approx(1.0)
    assert sleeps.seen == []


async def test_500_then_success(
    client: HttpClient, receiver: WebhookReceiver, recorder: MemoryRecorder, sleeps: Sleeps
) -> None:
    receiver.faults.fail_next(1, status=500)
    result = await client.request("POST", receiver.url, json={"id": 2})
    assert result.ok
    assert [c.status for c in recorder.calls] == [500, 200]
    assert sleeps.seen == [pytest.approx(0.005)]  # base_delay * jitter draw of 0.5
    assert receiver.records == {"2": {"id": 2}}
    assert result.call_id == recorder.calls[-1].call_id
    assert len({c.call_id for c in recorder.calls}) == 2


async def test_timeout_then_success(
    recorder: MemoryRecorder, receiver: WebhookReceiver, sleeps: Sleeps
) -> None:
    receiver.faults.timeout_next(1, 10)
    async with HttpClient(
        label="webhook", recorder=recorder, retry=FAST, timeout=0.2, sleep=sleeps
    ) as client:
        result = await client.request("POST", receiver.url, json={"id": 3})
    assert result.ok and result.attempts == 2
    first, second = recorder.calls
    assert first.status is None and first.error == "did not answer within 0.2s"
    assert second.status == 200 and second.error is None
    assert receiver.records == {"3": {"id": 3}}


async def test_dropped_connection_then_success(
    client: HttpClient, receiver: WebhookReceiver, recorder: MemoryRecorder
) -> None:
    receiver.faults.drop_next(1)
    result = await client.request("POST", receiver.url, json={"id": 4})
    assert result.ok
    first, second = recorder.calls
    assert first.status is None
    assert first.error == "closed the connection without a complete answer"
    assert second.status == 200
    assert len(receiver.calls) == 2


async def test_401_fails_fast_with_one_attempt(recorder: MemoryRecorder) -> None:
    with WebhookReceiver(token="right-token") as hook:
        async with HttpClient(label="webhook", recorder=recorder, retry=FAST) as client:
            with pytest.raises(DestinationError) as raised:
                await client.request(
                    "POST", hook.url, json={"id": 1}, headers={"Authorization": "Bearer wrong"}
                )
        assert len(hook.calls) == 1
    err = raised.value
    assert err.failure is FailureType.CONFIG
    assert err.status == 401
    assert str(err) == (
        f"webhook at 127.0.0.1:{hook.port} answered 401 Unauthorized: "
        "check the credentials in the destination file"
    )
    assert len(recorder.calls) == 1
    assert recorder.calls[0].status == 401


async def test_retries_exhausted_is_transient(
    client: HttpClient, receiver: WebhookReceiver, recorder: MemoryRecorder, sleeps: Sleeps
) -> None:
    receiver.faults.fail_next(10, status=503)
    with pytest.raises(DestinationError) as raised:
        await client.request("POST", receiver.url, json={"id": 5})
    assert raised.value.failure is FailureType.TRANSIENT
    assert raised.value.status == 503
    assert "answered 503 Service Unavailable 4 times" in str(raised.value)
    assert [c.attempt for c in recorder.calls] == [1, 2, 3, 4]
    assert len(receiver.calls) == 4
    # exponential backoff with the fixed jitter draw: 0.01, 0.02, 0.04 halved
    assert sleeps.seen == pytest.approx([0.005, 0.01, 0.02])
    assert receiver.records == {}


async def test_unreachable_host_is_transient_after_retries(
    client: HttpClient, recorder: MemoryRecorder
) -> None:
    port = free_port()
    with pytest.raises(DestinationError) as raised:
        await client.request("POST", f"http://127.0.0.1:{port}/hook", json={})
    assert raised.value.failure is FailureType.TRANSIENT
    assert str(raised.value).startswith(
        f"webhook at 127.0.0.1:{port} refused the connection or could not be reached (4 attempts)"
    )
    assert [c.status for c in recorder.calls] == [None] * 4
    assert all(c.error for c in recorder.calls)


async def test_retry_after_too_long_fails_the_call_at_once(
    recorder: MemoryRecorder, receiver: WebhookReceiver
) -> None:
    receiver.faults.rate_limit_next(1, retry_after=600)
    policy = RetryPolicy(base_delay=0.01, max_delay=0.05, max_retry_after=60)
    async with HttpClient(label="webhook", recorder=recorder, retry=policy) as client:
        with pytest.raises(DestinationError) as raised:
            await client.request("POST", receiver.url, json={"id": 1})
    assert raised.value.failure is FailureType.TRANSIENT
    assert raised.value.retry_after == 600
    assert len(recorder.calls) == 1


async def test_rejected_4xx_is_returned_not_raised(
    client: HttpClient, receiver: WebhookReceiver, recorder: MemoryRecorder
) -> None:
    receiver.faults.fail_next(1, status=422)
    result = await client.request("POST", receiver.url, json={"id": 1})
    assert not result.ok
    assert result.status == 422
    assert result.error == "422 Unprocessable Entity: injected failure 422"
    assert len(recorder.calls) == 1


async def test_rate_limit_spaces_requests(
    recorder: MemoryRecorder, receiver: WebhookReceiver, clock: FakeClock
) -> None:
    limiter = RateLimiter(2, per=1.0, clock=clock, sleep=clock.sleep)
    async with HttpClient(label="webhook", recorder=recorder, limiter=limiter) as client:
        for i in range(4):
            await client.request("POST", receiver.url, json={"id": i})
    assert len(receiver.records) == 4
    assert clock.now == pytest.approx(1.0)  # two at once, then one every half second


async def test_each_attempt_hands_its_permit_back_to_the_limiter(
    recorder: MemoryRecorder, receiver: WebhookReceiver, clock: FakeClock
) -> None:
    window = RollingWindowLimiter(1, 10.0, clock=clock, sleep=clock.sleep)
    async with HttpClient(label="webhook", recorder=recorder, limiter=window) as client:
        await client.request("POST", receiver.url, json={"id": 1})
        await client.request("POST", receiver.url, json={"id": 2})
    # One window after the first answer; a permit never handed back would wait until stale.
    assert clock.sleeps == [pytest.approx(10.0)]
    assert len(receiver.records) == 2


async def test_pause_hint_reads_vendor_headers(
    recorder: MemoryRecorder, receiver: WebhookReceiver, clock: FakeClock
) -> None:
    def hint(response: Any) -> float | None:
        return 3.0 if response.headers.get("server") == "uvicorn" else None

    limiter = RateLimiter(None, clock=clock, sleep=clock.sleep)
    async with HttpClient(
        label="webhook", recorder=recorder, limiter=limiter, pause_hint=hint
    ) as client:
        await client.request("POST", receiver.url, json={"id": 1})
        assert limiter.paused_until == pytest.approx(3.0)
        await client.request("POST", receiver.url, json={"id": 2})
    assert clock.sleeps == [pytest.approx(3.0)]


async def test_secrets_are_redacted_in_recorded_calls(recorder: MemoryRecorder) -> None:
    token = "tok-9f8e7d6c5b4a"
    url_secret = "qs-secret-31337"
    body_secret = "body-secret-424242"
    redactor = Redactor([token, url_secret, body_secret])
    with WebhookReceiver(token=token) as hook:
        async with HttpClient(
            label="webhook",
            recorder=recorder,
            redactor=redactor,
            headers={"Authorization": f"Bearer {token}", "X-Trace": token},
        ) as client:
            url = f"{hook.url}?code={url_secret}&api_key=plainvalue&page=2"
            result = await client.request(
                "POST", url, json={"id": 1, "note": f"pw is {body_secret}"}
            )
        received = hook.calls[0]
    assert result.ok
    # The receiver got the real values; only the record is masked.
    assert received.headers["authorization"] == f"Bearer {token}"
    assert received.query == f"code={url_secret}&api_key=plainvalue&page=2"
    [call] = recorder.calls
    everything = repr(call)
    for secret in (token, url_secret, body_secret, "plainvalue"):
        assert secret not in everything
    assert call.request_headers["authorization"] == "***"
    assert call.request_headers["x-trace"] == "***"
    assert call.url == f"{hook.url}?code=***&api_key=***&page=2"
    assert call.request_body == '{"id":1,"note":"pw is ***"}'


async def test_error_messages_do_not_leak_secrets(recorder: MemoryRecorder) -> None:
    secret = "sekrit-in-path-777"
    port = free_port()
    async with HttpClient(
        label="webhook",
        recorder=recorder,
        redactor=Redactor([secret]),
        retry=RetryPolicy(max_attempts=1),
    ) as client:
        with pytest.raises(DestinationError) as raised:
            await client.request("POST", f"http://127.0.0.1:{port}/{secret}", json={})
    assert secret not in str(raised.value)
    assert secret not in (raised.value.detail or "")
    assert secret not in recorder.calls[0].url


async def test_split_batch_isolates_bad_items() -> None:
    bad = {3, 7}
    sent: list[list[int]] = []

    async def send(items: Sequence[int]) -> list[int] | Refused:
        sent.append(list(items))
        if bad & set(items):
            return Refused("400 Bad Request: bad item")
        return list(items)

    segments = await split_batch(list(range(10)), send)
    assert [i for s in segments for i in s.indexes] == list(range(10))
    refused = [list(s.items) for s in segments if isinstance(s.outcome, Refused)]
    assert refused == [[3], [7]]
    accepted = sorted(i for s in segments if not isinstance(s.outcome, Refused) for i in s.items)
    assert accepted == [0, 1, 2, 4, 5, 6, 8, 9]
    assert sent[0] == list(range(10))
    assert await split_batch([], send) == []


async def test_split_batch_against_a_413_limit(recorder: MemoryRecorder) -> None:
    records = [{"id": i} for i in range(10)]
    with WebhookReceiver(max_records=3) as hook:
        async with HttpClient(label="webhook", recorder=recorder) as client:

            async def send(items: Sequence[dict[str, Any]]) -> str | Refused:
                result = await client.request(
                    "POST", hook.url, json={"operation": "upsert", "records": list(items)}
                )
                if result.status == 413:
                    return Refused(result.error or "", result.call_id)
                return result.call_id

            segments = await split_batch(records, send)
        state = hook.records
    assert not any(isinstance(s.outcome, Refused) for s in segments)
    assert all(len(s.items) <= 3 for s in segments)
    assert sorted(state) == sorted(str(i) for i in range(10))
    assert [c.status for c in recorder.calls].count(413) == 3  # 10 -> 5+5 -> 2+3+2+3
