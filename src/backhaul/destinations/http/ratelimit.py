"""Rate limiters shared by every task that talks to one destination account.

One limiter per account, not per task: when the destination says "slow down" (a 429 with
``Retry-After``, or a vendor's own rate-limit header), :meth:`RateLimiter.penalize` stops
every task that shares the limiter, not only the one that got the answer.

:class:`RateLimiter` is a token bucket; :class:`RollingWindowLimiter` keeps to a vendor's
rolling window of calls. The HTTP client takes a :class:`Permit` before each attempt and
hands it back through :meth:`RateLimiter.answered` once the attempt is over. Every wait in
:meth:`RateLimiter.acquire` is reported to the run's wait observer when one is given: a
pause the destination asked for as ``rate_limit``, keeping to the configured rate as
``throttle``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field
from pydantic import field_validator

from backhaul.observe.events import WaitKind
from backhaul.observe.waits import NoWaits
from backhaul.observe.waits import WaitObserver

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
_EPSILON = 1e-9


class RateLimit(BaseModel):
    """``rate_limit:`` in a destination file: at most ``requests`` every ``per_seconds``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    requests: int = Field(gt=0, description="Requests allowed in each window.")
    per_seconds: float = Field(1.0, gt=0, description="Length of the window in seconds.")
    per_day: int | None = Field(
        None,
        gt=0,
        description="The account's daily quota of calls, where the vendor has one (HubSpot: "
        "250,000 for a Starter private app). Counted in the shared budget when the project "
        "has one (a Postgres metadata store, or `state.budget_url`); `plan` warns when a "
        "run needs more than remain, and `run` stops sending when it is used up.",
    )
    day_zone: str = Field(
        "UTC",
        description="Time zone whose midnight starts a new quota day (HubSpot: the "
        "account's time zone).",
    )

    @field_validator("day_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo
        from zoneinfo import ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone `{value}`: use an IANA name such as UTC or America/New_York"
            ) from None
        return value


@dataclass(slots=True)
class Permit:
    """Leave to send ``count`` calls, taken at clock time ``sent``.

    ``answered`` is the clock time the calls' answers came back (``None`` until then).
    ``paused_s`` and ``throttled_s`` say how long taking it waited: for a pause the
    destination asked for, and to keep to the configured rate.
    """

    sent: float
    count: int = 1
    answered: float | None = None
    paused_s: float = 0.0
    throttled_s: float = 0.0
    grant: str | None = None  # its slot in a shared budget, handed back when answered


# Calls in flight by default (see docs/rate-limits.md, "How many calls at once"): enough
# to use the whole rate limit when each call takes CALL_SECONDS; with no limit of our own,
# UNLIMITED_CONCURRENCY. Bounded so a generous limit does not open a hundred connections.
CALL_SECONDS = 1.0
MIN_CONCURRENCY = 4
MAX_CONCURRENCY = 32
UNLIMITED_CONCURRENCY = 16


def default_concurrency(limit: RateLimit | None) -> int:
    """Calls in flight when a destination file does not set ``concurrency``.

    Little's law: calls in flight = rate x time per call. At ``requests / per_seconds``
    calls a second and up to :data:`CALL_SECONDS` per call, that many calls in flight
    reach the limit; the limiter holds any more. Clamped to
    [:data:`MIN_CONCURRENCY`, :data:`MAX_CONCURRENCY`]; no ``rate_limit`` gives
    :data:`UNLIMITED_CONCURRENCY`.
    """
    if limit is None:
        return UNLIMITED_CONCURRENCY
    wanted = math.ceil(limit.requests / limit.per_seconds * CALL_SECONDS)
    return max(MIN_CONCURRENCY, min(MAX_CONCURRENCY, wanted))


class _Waited:
    """How long one :meth:`RateLimiter.acquire` waited, by reason."""

    __slots__ = ("paused", "throttled")

    def __init__(self) -> None:
        self.paused = 0.0
        self.throttled = 0.0

    def permit(self, now: float, n: int) -> Permit:
        return Permit(now, n, paused_s=self.paused, throttled_s=self.throttled)


class RateLimiter:
    """An asyncio token bucket with a shared pause.

    Tokens refill continuously at ``rate / per`` a second up to ``burst`` (default: ``rate``,
    at least 1). Waiters are served first come, first served.

    Args:
        rate: Requests allowed every ``per`` seconds; ``None`` means no limit (the pause
            set by :meth:`penalize` still applies).
        per: Length of the window in seconds.
        burst: Bucket size: how many requests may go at once after a quiet spell.
        clock: Monotonic clock in seconds; injected so tests can drive time.
        sleep: Coroutine that waits the given seconds; injected with ``clock``.
    """

    def __init__(
        self,
        rate: float | None,
        per: float = 1.0,
        burst: int | None = None,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if rate is not None and rate <= 0:
            raise ValueError("rate must be positive (or None for no limit)")
        if per <= 0:
            raise ValueError("per must be positive")
        if burst is not None and burst < 1:
            raise ValueError("burst must be at least 1")
        self._per_second = None if rate is None else rate / per
        self._capacity = float(burst if burst is not None else max(1, int(rate or 1)))
        self._tokens = self._capacity
        self._clock = clock
        self._sleep = sleep
        self._updated = clock()
        self._paused_until = 0.0
        # Held while a task waits for its tokens, so waiters are served in arrival order.
        self._lock = asyncio.Lock()

    @classmethod
    def from_config(
        cls, limit: RateLimit | None, *, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep
    ) -> RateLimiter:
        """Build a limiter from a destination file's ``rate_limit`` (``None``: unlimited).

        A limit is kept as the vendors count it and as ``rate_limit`` promises: at most
        ``requests`` calls in any ``per_seconds`` seconds, a :class:`RollingWindowLimiter`.
        (A token bucket of the same rate would let nearly twice the limit through in one
        window after a quiet spell.)
        """
        if limit is None:
            return cls(None, clock=clock, sleep=sleep)
        return RollingWindowLimiter(limit.requests, limit.per_seconds, clock=clock, sleep=sleep)

    @property
    def paused_until(self) -> float:
        """Clock value until which every caller waits (0 when never paused)."""
        return self._paused_until

    def pause_until(self, deadline: float) -> None:
        """Make every caller wait until the clock reads ``deadline``; never shortens a pause.

        The bucket holds exactly one token at ``deadline`` and refills only from then, so the
        end of a pause lets one request through at once, not a burst that would be refused
        again, and not a further interval of waiting.
        """
        if deadline <= self._paused_until:
            return
        self._paused_until = deadline
        self._tokens = min(1.0, self._capacity)
        self._updated = max(self._updated, deadline)

    def penalize(self, seconds: float) -> None:
        """Pause every caller for ``seconds`` from now (for a ``Retry-After`` answer)."""
        if seconds > 0:
            self.pause_until(self._clock() + seconds)

    def pause_left(self) -> float:
        """Seconds until the current pause ends (0 when there is none)."""
        return max(0.0, self._paused_until - self._clock())

    async def acquire(self, n: int = 1, *, observer: WaitObserver | None = None) -> Permit:
        """Wait out any pause, then until ``n`` requests may be sent, and take them.

        Callers are served in arrival order; how ``n`` is taken is :meth:`_admit`'s.

        Args:
            n: Requests to take.
            observer: Told how long each wait lasted and why.
        """
        self._check(n)
        waited = _Waited()
        async with self._lock:
            while True:
                now = self._clock()
                if now < self._paused_until:
                    await self._hold(observer, waited, True, self._paused_until - now)
                    continue
                taken = self._admit(n, now, waited)
                if isinstance(taken, Permit):
                    return taken
                await self._hold(observer, waited, False, taken)

    def _check(self, n: int) -> None:
        """Refuse a request for ``n`` that could never be granted."""
        if n < 1:
            raise ValueError("n must be at least 1")
        if self._per_second is not None and n > self._capacity:
            raise ValueError(f"cannot take {n} tokens from a bucket of {int(self._capacity)}")

    def _admit(self, n: int, now: float, waited: _Waited) -> Permit | float:
        """Take ``n`` tokens from the bucket: the permit, or the seconds until they refill."""
        if self._per_second is None:
            return waited.permit(now, n)
        self._refill(now)
        if self._tokens >= n - _EPSILON:  # float refills land a hair short
            self._tokens = max(0.0, self._tokens - n)
            return waited.permit(now, n)
        return (n - self._tokens) / self._per_second

    async def _hold(
        self, observer: WaitObserver | None, waited: _Waited, paused: bool, seconds: float
    ) -> None:
        """Sleep ``seconds``, counted as a pause or as throttling."""
        kind = WaitKind.RATE_LIMIT if paused else WaitKind.THROTTLE
        start = self._clock()
        await (observer or NoWaits()).held(kind, self._sleep(seconds))
        spent = max(0.0, self._clock() - start)
        if paused:
            waited.paused += spent
        else:
            waited.throttled += spent

    def answered(self, permit: Permit) -> None:
        """Note that the attempt made with ``permit`` is over (answered, failed or cancelled).

        The HTTP client calls this after every attempt. A token bucket only notes the time;
        limiters that count a call from when the destination saw it override it.
        """
        if permit.answered is None:
            permit.answered = self._clock()

    def _refill(self, now: float) -> None:
        assert self._per_second is not None
        if now <= self._updated:  # a pause set the refill start in the future
            return
        elapsed = now - self._updated
        self._tokens = min(self._capacity, self._tokens + elapsed * self._per_second)
        self._updated = now


class RollingWindowLimiter(RateLimiter):
    """At most ``limit`` calls in any ``seconds``-long window, as a vendor counts them.

    A token bucket of the same rate lets up to twice the limit through in one window (a full
    bucket, then its refill); a rolling window of arrivals does not. A call arrives at the
    vendor some time between being sent and being answered, so a call counts from when it
    was :meth:`answered` and, while unanswered, blocks its slot. That keeps under the limit
    whatever the network delay, at the cost of one round trip per window.

    Args:
        limit: Calls allowed in each window.
        seconds: Length of the window.
        stale_after: Seconds after which a permit never handed back (a lost task) counts as
            answered then.
        clock: Monotonic clock in seconds.
        sleep: Waits the given seconds.
    """

    def __init__(
        self,
        limit: int,
        seconds: float,
        *,
        stale_after: float = 90.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if limit < 1 or seconds <= 0:
            raise ValueError("limit must be at least 1 and seconds positive")
        super().__init__(None, clock=clock, sleep=sleep)
        self.limit = limit
        self.seconds = seconds
        self.stale_after = stale_after
        self._held: deque[Permit] = deque()

    def lower(self, limit: int) -> None:
        """Allow fewer calls per window from now on (never more than configured)."""
        if 0 < limit < self.limit:
            self.limit = limit

    def _check(self, n: int) -> None:
        if not 1 <= n <= self.limit:
            raise ValueError(f"n must be between 1 and {self.limit}")

    def _admit(self, n: int, now: float, waited: _Waited) -> Permit | float:
        """Count ``n`` more calls when they fit in the window: the permit, or the seconds
        until a call leaves it."""
        frees = [self._frees(p, now) for p in self._held]
        self._held = deque(
            p for p, f in zip(self._held, frees, strict=True) if f is None or f > now
        )
        if sum(p.count for p in self._held) + n <= self.limit:
            permit = waited.permit(now, n)
            self._held.append(permit)
            return permit
        times = [f for f in frees if f is not None and f > now]
        # Unanswered calls free nothing until answered: look again shortly.
        return min(times) - now if times else min(0.02, self.seconds / 10)

    def _frees(self, permit: Permit, now: float) -> float | None:
        """When ``permit`` leaves the window (``None`` while its calls are unanswered)."""
        if permit.answered is not None:
            return permit.answered + self.seconds
        if now - permit.sent >= self.stale_after:
            return permit.sent + self.stale_after + self.seconds
        return None
