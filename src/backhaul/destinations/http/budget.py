"""One rate-limit budget per destination account, kept in a store every worker shares.

Each process has its own :class:`~backhaul.destinations.http.ratelimit.RateLimiter`, but a
vendor counts calls per account: five workers each keeping to 100 calls per 10 s send 500.
A shared budget keeps the account's rolling window, its pause after a 429 and its daily
quota in one place (a row in the Postgres metadata store, or a Redis key), changed
atomically by whichever process calls next.

The decisions are made here, on a :class:`BudgetState` read and written back under the
store's lock, so the Postgres and Redis stores hold the same state and behave alike. Time
is the store's clock, so workers on several machines agree on it.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

POLL_S = 0.05  # how often to look again while every call in the window is unanswered


@dataclass(frozen=True, slots=True)
class Window:
    """At most ``limit`` calls in any ``seconds``-long window (``limit`` ``None``: none)."""

    limit: int | None
    seconds: float
    stale_after: float = 90.0  # a call never handed back counts as answered after this


@dataclass(frozen=True, slots=True)
class Quota:
    """At most ``per_day`` calls a day; the day starts at midnight in ``zone``."""

    per_day: int
    zone: str = "UTC"

    def day(self, now: float) -> str:
        """The quota day (``YYYY-MM-DD``) that the epoch time ``now`` falls in."""
        return datetime.fromtimestamp(now, ZoneInfo(self.zone)).date().isoformat()

    def resets_at(self, now: float) -> datetime:
        """When the day of ``now`` ends, in the quota's zone."""
        local = datetime.fromtimestamp(now, ZoneInfo(self.zone))
        start = local.replace(hour=0, minute=0, second=0, microsecond=0)
        return (start + timedelta(days=1)).astimezone(ZoneInfo(self.zone))


@dataclass(slots=True)
class BudgetState:
    """One account's budget as stored: pause, today's count, calls in the window.

    ``calls`` maps a grant id to ``[frees_at, count, answered]``: when its calls leave the
    window (epoch seconds), how many calls it stands for, and whether they were answered
    (an unanswered call blocks its slot until answered, or until it is stale).
    """

    paused_until: float = 0.0
    day: str = ""
    day_used: int = 0
    calls: dict[str, list[float]] = field(default_factory=dict)

    def dumps(self) -> str:
        return json.dumps(self.calls, separators=(",", ":"))

    @classmethod
    def of(cls, paused_until: float, day: str, day_used: int, calls: str | None) -> BudgetState:
        return cls(paused_until, day, day_used, json.loads(calls) if calls else {})


@dataclass(frozen=True, slots=True)
class Granted:
    """Leave to send: ``grant`` is handed back through :meth:`BudgetStore.release`."""

    grant: str | None


@dataclass(frozen=True, slots=True)
class Wait:
    """Not yet: look again in ``seconds``; ``paused`` when the account is paused."""

    seconds: float
    paused: bool


@dataclass(frozen=True, slots=True)
class Spent:
    """Today's quota is used up: ``used`` of ``per_day``, until ``resets_at``."""

    used: int
    per_day: int
    resets_at: datetime


Decision = Granted | Wait | Spent


def take(state: BudgetState, now: float, n: int, window: Window, quota: Quota | None) -> Decision:
    """Decide whether ``n`` calls may go now, and count them in ``state`` when they may."""
    if now < state.paused_until:
        return Wait(state.paused_until - now, paused=True)
    state.calls = {g: c for g, c in state.calls.items() if c[0] > now}
    if quota is not None:
        today = quota.day(now)
        if state.day != today:
            state.day, state.day_used = today, 0
        if state.day_used + n > quota.per_day:
            return Spent(state.day_used, quota.per_day, quota.resets_at(now))
    grant: str | None = None
    if window.limit is not None:
        held = sum(int(c[1]) for c in state.calls.values())
        if held + n > window.limit:
            frees = [c[0] for c in state.calls.values() if c[2]]
            # Unanswered calls free nothing until answered: look again shortly.
            wait = min(frees) - now if frees else min(POLL_S, window.seconds / 10)
            return Wait(max(wait, 0.001), paused=False)
        grant = uuid.uuid4().hex[:16]
        state.calls[grant] = [now + window.stale_after + window.seconds, n, 0]
    state.day_used += n
    return Granted(grant)


def release(state: BudgetState, now: float, grant: str, window: Window) -> None:
    """The calls of ``grant`` were answered at ``now``: they leave the window one later."""
    found = state.calls.get(grant)
    if found is not None:
        state.calls[grant] = [now + window.seconds, found[1], 1]


def pause(state: BudgetState, now: float, seconds: float) -> None:
    """Pause the account for ``seconds`` from ``now``; never shortens a pause."""
    state.paused_until = max(state.paused_until, now + seconds)


def used_today(state: BudgetState, now: float, quota: Quota) -> int:
    """Calls counted against today's quota."""
    return state.day_used if state.day == quota.day(now) else 0


class BudgetStore(Protocol):
    """Where the budgets live; every method changes one account's state atomically."""

    def take(self, account: str, n: int, window: Window, quota: Quota | None) -> Decision:
        """:func:`take` on the stored state of ``account``."""
        ...

    def release(self, account: str, grant: str, window: Window) -> None:
        """:func:`release` on the stored state of ``account``."""
        ...

    def pause(self, account: str, seconds: float) -> None:
        """:func:`pause` on the stored state of ``account``."""
        ...

    def used_today(self, account: str, quota: Quota) -> int:
        """Calls of ``account`` counted against today's quota."""
        ...

    def describe(self) -> str:
        """Where the store is, for messages (no password)."""
        ...


@dataclass(frozen=True, slots=True)
class AccountBudget:
    """The budget of one destination account: its key in ``store`` and its name in messages."""

    store: BudgetStore
    account: str
    label: str
    quota: Quota | None = None


def resets_text(when: datetime) -> str:
    """``2026-12-06 00:00 CET, in 3 h 12 min``-style text for messages."""
    left = max(0, int((when - datetime.now(UTC)).total_seconds()))
    hours, minutes = divmod(left // 60, 60)
    return f"{when:%Y-%m-%d %H:%M} {when.tzname()}, in {hours} h {minutes} min"
