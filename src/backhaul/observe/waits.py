"""Time a run spends waiting on its destination: rate-limit pauses, retries, throttling.

The engine builds one :class:`WaitTracker` per run and hands it to the destination through
:class:`~backhaul.destinations.base.DestinationContext`; the shared HTTP toolkit (client,
rate limiters) and the engine's whole-batch retries report every wait to it. A wait the
user should hear about (a rate-limit pause, a retry) is *announced* and becomes a
:class:`~backhaul.observe.events.Waiting` event; the client-side limiter's proactive waits
are only summarised, at most once per ``summary_every`` seconds.

The total is wall-clock time during which at least one call was held back, so four tasks
sitting out the same 10 s pause count 10 s, not 40 s.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable
from collections.abc import Callable
from typing import Protocol

from backhaul.observe.events import EventSink
from backhaul.observe.events import Waiting
from backhaul.observe.events import WaitKind
from backhaul.observe.events import ignore


class WaitObserver(Protocol):
    """What the HTTP toolkit and the engine report waits to."""

    def announce(self, kind: WaitKind, seconds: float, reason: str) -> None:
        """Say that a wait of about ``seconds`` starts now, and why (one line for the user)."""

    async def held(self, kind: WaitKind, waiting: Awaitable[None]) -> None:
        """Await ``waiting`` (a sleep) and count its duration as waiting of ``kind``."""


class NoWaits:
    """A :class:`WaitObserver` that only waits: outside a run (``check``, tests)."""

    def announce(self, kind: WaitKind, seconds: float, reason: str) -> None:
        return None

    async def held(self, kind: WaitKind, waiting: Awaitable[None]) -> None:
        await waiting


class _Span:
    """Union of intervals during which at least one waiter of a kind was waiting."""

    __slots__ = ("active", "since", "total")

    def __init__(self) -> None:
        self.active = 0
        self.since = 0.0
        self.total = 0.0

    def begin(self, now: float) -> None:
        if self.active == 0:
            self.since = now
        self.active += 1

    def end(self, now: float) -> None:
        self.active -= 1
        if self.active == 0:
            self.total += max(0.0, now - self.since)

    def value(self, now: float) -> float:
        return self.total + (max(0.0, now - self.since) if self.active else 0.0)


class WaitTracker:
    """Counts one run's waiting time and turns waits into run events.

    Args:
        run_id: The run the waits belong to.
        sync: Its sync's name.
        events: Where :class:`~backhaul.observe.events.Waiting` events go.
        summary_every: Seconds between two summaries of client-side throttling.
        clock: Monotonic clock in seconds.
    """

    def __init__(
        self,
        run_id: str,
        sync: str,
        events: EventSink = ignore,
        *,
        summary_every: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.run_id = run_id
        self.sync = sync
        self.events = events
        self.summary_every = summary_every
        self._clock = clock
        self._lock = threading.Lock()
        self._any = _Span()
        self._kinds = {kind: _Span() for kind in WaitKind}
        self._counts = dict.fromkeys(WaitKind, 0)
        self._throttle_mark = clock()  # start of the current throttle-summary interval
        self._throttle_base = 0.0  # throttled seconds already summarised

    @property
    def total_s(self) -> float:
        """Seconds during which at least one call of the run was waiting, so far."""
        with self._lock:
            return self._any.value(self._clock())

    def seconds(self, kind: WaitKind) -> float:
        """Seconds spent waiting for reasons of ``kind`` so far."""
        with self._lock:
            return self._kinds[kind].value(self._clock())

    def count(self, kind: WaitKind) -> int:
        """How many waits of ``kind`` were announced (throttling: how many were held)."""
        with self._lock:
            return self._counts[kind]

    def announce(self, kind: WaitKind, seconds: float, reason: str) -> None:
        with self._lock:
            self._counts[kind] += 1
            total = self._any.value(self._clock())
        self.events(Waiting(self.run_id, self.sync, kind, max(0.0, seconds), reason, total))

    async def held(self, kind: WaitKind, waiting: Awaitable[None]) -> None:
        self._begin(kind)
        try:
            await waiting
        finally:
            self._end(kind)

    def _begin(self, kind: WaitKind) -> None:
        with self._lock:
            now = self._clock()
            self._any.begin(now)
            self._kinds[kind].begin(now)

    def _end(self, kind: WaitKind) -> None:
        summary: Waiting | None = None
        with self._lock:
            now = self._clock()
            self._any.end(now)
            self._kinds[kind].end(now)
            if kind is WaitKind.THROTTLE:
                self._counts[kind] += 1
                summary = self._throttle_summary(now)
        if summary is not None:
            self.events(summary)

    def _throttle_summary(self, now: float) -> Waiting | None:
        """A summary of throttling once ``summary_every`` seconds have passed (lock held)."""
        interval = now - self._throttle_mark
        if interval < self.summary_every:
            return None
        throttled = self._kinds[WaitKind.THROTTLE].value(now)
        fresh = throttled - self._throttle_base
        self._throttle_mark, self._throttle_base = now, throttled
        if fresh <= 0:
            return None
        reason = (
            f"the client-side rate limit held calls back for {seconds_text(fresh)} "
            f"in the last {seconds_text(interval)}"
        )
        return Waiting(
            self.run_id, self.sync, WaitKind.THROTTLE, fresh, reason, self._any.value(now)
        )


def wait_line(event: Waiting) -> str:
    """A wait as one line: ``waiting 10 s: HubSpot rate limit (429, Retry-After 10)``."""
    if event.kind is WaitKind.THROTTLE:
        return event.reason
    return f"waiting {seconds_text(event.seconds)}: {event.reason}"


def seconds_text(seconds: float) -> str:
    """``10 s``, ``0.4 s``, ``2 min 5 s``: a duration for one line of output."""
    if seconds >= 120:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    if seconds >= 10:
        return f"{seconds:.0f} s"
    if seconds >= 1:
        return f"{seconds:.1f}".removesuffix(".0") + " s"
    return f"{seconds * 1000:.0f} ms"


__all__ = ["NoWaits", "WaitKind", "WaitObserver", "WaitTracker", "seconds_text", "wait_line"]
