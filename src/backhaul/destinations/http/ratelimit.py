"""A token-bucket rate limiter shared by every task that talks to one destination account.

One limiter per account, not per task: when the destination says "slow down" (a 429 with
``Retry-After``, or a vendor's own rate-limit header), :meth:`RateLimiter.penalize` stops
every task that shares the limiter, not only the one that got the answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from pydantic import BaseModel, ConfigDict, Field

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
_EPSILON = 1e-9


class RateLimit(BaseModel):
    """``rate_limit:`` in a destination file: at most ``requests`` every ``per_seconds``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    requests: int = Field(gt=0, description="Requests allowed in each window.")
    per_seconds: float = Field(1.0, gt=0, description="Length of the window in seconds.")


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
        """Build a limiter from a destination file's ``rate_limit`` (``None``: unlimited)."""
        if limit is None:
            return cls(None, clock=clock, sleep=sleep)
        return cls(limit.requests, limit.per_seconds, clock=clock, sleep=sleep)

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

    async def acquire(self, n: int = 1) -> None:
        """Wait until ``n`` requests may be sent, then take them from the bucket."""
        if n < 1:
            raise ValueError("n must be at least 1")
        if self._per_second is not None and n > self._capacity:
            raise ValueError(f"cannot take {n} tokens from a bucket of {int(self._capacity)}")
        async with self._lock:
            while True:
                now = self._clock()
                if now < self._paused_until:
                    await self._sleep(self._paused_until - now)
                    continue
                if self._per_second is None:
                    return
                self._refill(now)
                if self._tokens >= n - _EPSILON:  # float refills land a hair short
                    self._tokens = max(0.0, self._tokens - n)
                    return
                await self._sleep((n - self._tokens) / self._per_second)

    def _refill(self, now: float) -> None:
        assert self._per_second is not None
        if now <= self._updated:  # a pause set the refill start in the future
            return
        elapsed = now - self._updated
        self._tokens = min(self._capacity, self._tokens + elapsed * self._per_second)
        self._updated = now
