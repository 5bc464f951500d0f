"""The token bucket and the rolling window, driven by a fake clock so no test waits or reads wall-clock time."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from backhaul.destinations.http import RateLimit
from backhaul.destinations.http import RateLimiter
from backhaul.destinations.http import RollingWindowLimiter


class FakeClock:
    """A monotonic clock that only moves when the limiter sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)  # let other tasks run, as a real sleep would


def limiter(
    clock: FakeClock, rate: float | None, per: float = 1.0, burst: int | None = None
) -> RateLimiter:
    return RateLimiter(rate, per, burst, clock=clock, sleep=clock.sleep)


async def test_burst_goes_at_once_then_requests_are_spaced() -> None:
    clock = FakeClock()
    bucket = limiter(clock, 2, per=1.0)
    stamps = []
    for _ in range(4):
        await bucket.acquire()
        stamps.append(clock.now)
    assert stamps == pytest.approx([0.0, 0.0, 0.5, 1.0])


async def test_rate_over_a_longer_window() -> None:
    clock = FakeClock()
    bucket = limiter(clock, 6, per=60.0, burst=1)
    for _ in range(3):
        await bucket.acquire()
    assert clock.now == pytest.approx(20.0)  # one every 10 s


async def test_tokens_refill_while_idle_up_to_the_burst() -> None:
    clock = FakeClock()
    bucket = limiter(clock, 10, burst=3)
    for _ in range(3):
        await bucket.acquire()
    clock.now += 100  # a long quiet spell refills at most `burst` tokens
    for _ in range(3):
        await bucket.acquire()
    assert clock.sleeps == []
    await bucket.acquire()
    assert clock.sleeps == [pytest.approx(0.1)]


async def test_acquire_several_tokens() -> None:
    clock = FakeClock()
    bucket = limiter(clock, 4, burst=4)
    await bucket.acquire(4)
    await bucket.acquire(2)
    assert clock.now == pytest.approx(0.5)
    with pytest.raises(ValueError, match="bucket of 4"):
        await bucket.acquire(5)


async def test_penalize_stops_every_task_sharing_the_limiter() -> None:
    clock = FakeClock()
    bucket = limiter(clock, None)
    bucket.penalize(3.0)
    acquired: list[tuple[str, float]] = []

    async def task(name: str) -> None:
        await bucket.acquire()
        acquired.append((name, clock.now))

    await asyncio.gather(task("a"), task("b"), task("c"))
    assert [name for name, _ in acquired] == ["a", "b", "c"]
    assert all(at >= 3.0 for _, at in acquired)
    assert sum(clock.sleeps) == pytest.approx(3.0)


async def test_pause_is_never_shortened_and_ends_without_a_burst() -> None:
    clock = FakeClock()
    bucket = limiter(clock, 10, burst=10)
    bucket.pause_until(5.0)
    bucket.pause_until(2.0)
    assert bucket.paused_until == 5.0
    stamps = []
    for _ in range(3):
        await bucket.acquire()
        stamps.append(clock.now)
    assert stamps == pytest.approx([5.0, 5.1, 5.2])


async def test_waiters_are_served_in_arrival_order() -> None:
    clock = FakeClock()
    bucket = limiter(clock, 1, burst=1)
    order: list[int] = []

    async def task(i: int) -> None:
        await bucket.acquire()
        order.append(i)

    await asyncio.gather(*(task(i) for i in range(5)))
    assert order == [0, 1, 2, 3, 4]
    assert clock.now == pytest.approx(4.0)


def test_invalid_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="rate"):
        RateLimiter(0)
    with pytest.raises(ValueError, match="per"):
        RateLimiter(1, per=0)
    with pytest.raises(ValueError, match="burst"):
        RateLimiter(1, burst=0)


def test_rate_limit_config_model() -> None:
    limit = RateLimit.model_validate({"requests": 100, "per_seconds": 10})
    assert (limit.requests, limit.per_seconds) == (100, 10.0)
    with pytest.raises(ValidationError, match="greater than 0"):
        RateLimit.model_validate({"requests": 0, "per_seconds": 1})
    with pytest.raises(ValidationError, match="greater than 0"):
        RateLimit.model_validate({"requests": 1, "per_seconds": -1})
    with pytest.raises(ValidationError, match="Extra inputs"):
        RateLimit.model_validate({"requests": 1, "per_seconds": 1, "burst": 3})


async def test_limiter_from_config_keeps_a_rolling_window() -> None:
    clock = FakeClock()
    window = RateLimiter.from_config(
        RateLimit(requests=2, per_seconds=10), clock=clock, sleep=clock.sleep
    )
    assert isinstance(window, RollingWindowLimiter)
    sent = []
    for _ in range(5):
        permit = await window.acquire()
        sent.append(clock.now)
        window.answered(permit)
    # Never more than 2 in any 10 s, even right after a quiet start (a token bucket of the
    # same rate would let the third call through at 5 s).
    assert sent == pytest.approx([0.0, 0.0, 10.0, 10.0, 20.0])
    unlimited = RateLimiter.from_config(None, clock=clock, sleep=clock.sleep)
    for _ in range(100):
        await unlimited.acquire()
    assert clock.now == pytest.approx(20.0)


async def test_rolling_window_counts_calls_from_their_answers() -> None:
    clock = FakeClock()
    window = RollingWindowLimiter(2, 10.0, clock=clock, sleep=clock.sleep)
    first = await window.acquire()
    clock.now = 0.5
    window.answered(first)  # the vendor counted the call by 0.5 at the latest
    second = await window.acquire()
    window.answered(second)

    await window.acquire()  # the third call waits until the first leaves the window

    assert clock.now == pytest.approx(10.5)
    assert clock.sleeps == [pytest.approx(10.0)]
    window.lower(1)
    assert window.limit == 1
    window.lower(5)
    assert window.limit == 1  # never raised above the configured limit


async def test_rolling_window_blocks_a_slot_until_its_call_is_answered() -> None:
    clock = FakeClock()
    window = RollingWindowLimiter(1, 1.0, stale_after=5.0, clock=clock, sleep=clock.sleep)
    await window.acquire()  # never answered: the slot frees only once stale

    await window.acquire()

    assert clock.now == pytest.approx(6.0)  # stale after 5 s, then one window
