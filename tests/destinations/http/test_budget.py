"""The shared budget: its rules on a stored state, and limiters in several threads sharing it.

The threads each run their own event loop, HTTP client and rolling-window limiter, as
separate worker processes would, and write through the HubSpot emulator, which refuses
(429) every call over its rolling window. With one budget in Postgres or Redis the
emulator refuses none; with a limiter per thread it refuses some.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator

import pytest
import redis
from sqlalchemy import create_engine
from sqlalchemy import delete

from backhaul.calls import MemoryRecorder
from backhaul.destinations.http import HttpClient
from backhaul.destinations.http import RateLimit
from backhaul.destinations.http import RateLimiter
from backhaul.destinations.http import RollingWindowLimiter
from backhaul.destinations.http.budget import AccountBudget
from backhaul.destinations.http.budget import BudgetState
from backhaul.destinations.http.budget import BudgetStore
from backhaul.destinations.http.budget import Granted
from backhaul.destinations.http.budget import Quota
from backhaul.destinations.http.budget import Spent
from backhaul.destinations.http.budget import Wait
from backhaul.destinations.http.budget import Window
from backhaul.destinations.http.budget import pause
from backhaul.destinations.http.budget import release
from backhaul.destinations.http.budget import take
from backhaul.destinations.http.budget import used_today
from backhaul.destinations.http.shared import SharedLimiter
from backhaul.errors import QuotaSpentError
from backhaul.state.budgets import PostgresBudgets
from backhaul.state.budgets import RedisBudgets
from backhaul.state.store import RunStore
from backhaul.state.tables import rate_budgets
from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.hubspot import DEFAULT_TOKEN
from backhaul.testing.emulators.hubspot import HubSpotEmulator

pytestmark = pytest.mark.integration

REDIS_URL = "redis://127.0.0.1:6379/0"
LIMIT = 5  # calls per WINDOW seconds, at the emulator and in each limiter
WINDOW = 0.5
THREADS = 4
CALLS = 12  # per thread: each thread alone needs two windows and more


# -- the rules, on a state held in memory ---------------------------------------------------


def test_a_window_admits_its_limit_then_waits_for_the_first_answer() -> None:
    state, window = BudgetState(), Window(2, 10.0)
    first, second = take(state, 100.0, 1, window, None), take(state, 100.0, 1, window, None)
    assert isinstance(first, Granted) and isinstance(second, Granted)
    blocked = take(state, 100.5, 1, window, None)
    assert isinstance(blocked, Wait) and not blocked.paused
    assert blocked.seconds < 1  # nothing answered yet: look again soon
    assert first.grant is not None
    release(state, 101.0, first.grant, window)
    waiting = take(state, 102.0, 1, window, None)
    assert isinstance(waiting, Wait) and waiting.seconds == pytest.approx(9.0)
    assert isinstance(take(state, 111.0, 1, window, None), Granted)


def test_a_call_never_answered_frees_its_slot_once_stale() -> None:
    state, window = BudgetState(), Window(1, 1.0, stale_after=5.0)
    assert isinstance(take(state, 0.0, 1, window, None), Granted)
    assert isinstance(take(state, 5.5, 1, window, None), Wait)
    assert isinstance(take(state, 6.0, 1, window, None), Granted)


def test_a_pause_holds_every_taker_and_is_never_shortened() -> None:
    state, window = BudgetState(), Window(None, 1.0)
    pause(state, 10.0, 30.0)
    pause(state, 11.0, 5.0)
    held = take(state, 20.0, 1, window, None)
    assert isinstance(held, Wait) and held.paused and held.seconds == pytest.approx(20.0)
    assert isinstance(take(state, 40.0, 1, window, None), Granted)


def test_the_daily_quota_is_spent_then_a_new_day_starts_afresh() -> None:
    state, window, quota = BudgetState(), Window(None, 1.0), Quota(3, "UTC")
    noon = 1_764_936_000.0  # 2025-12-05 12:00 UTC
    for _ in range(3):
        assert isinstance(take(state, noon, 1, window, quota), Granted)
    spent = take(state, noon + 60, 1, window, quota)
    assert isinstance(spent, Spent) and spent.used == 3 and spent.per_day == 3
    assert spent.resets_at.isoformat() == "2025-12-06T00:00:00+00:00"
    assert used_today(state, noon, quota) == 3
    tomorrow = noon + 12 * 3600
    assert used_today(state, tomorrow, quota) == 0
    assert isinstance(take(state, tomorrow, 1, window, quota), Granted)


def test_the_quota_day_follows_its_time_zone() -> None:
    quota = Quota(10, "America/New_York")
    late_evening = 1_764_991_800.0  # 2025-12-06 03:30 UTC = 2025-12-05 22:30 in New York
    assert quota.day(late_evening) == "2025-12-05"
    assert quota.resets_at(late_evening).isoformat() == "2025-12-06T00:00:00-05:00"


def test_an_unknown_day_zone_is_refused_with_an_example() -> None:
    with pytest.raises(ValueError, match="America/New_York"):
        RateLimit(requests=1, per_day=10, day_zone="Mars/Olympus")


# -- limiters in threads sharing a real store ---------------------------------------------


@pytest.fixture
def hub() -> Iterator[tuple[HubSpotEmulator, str]]:
    emulator = HubSpotEmulator(burst_limit=LIMIT, burst_seconds=WINDOW, daily_limit=None)
    with EmulatorServer(emulator) as server:
        yield emulator, server.url


@pytest.fixture
def pg_budgets(pg_db: str) -> Iterator[PostgresBudgets]:
    RunStore.open(pg_db).close()  # migrated: rate_budgets exists
    engine = create_engine(pg_db.replace("postgresql://", "postgresql+psycopg://"))
    try:
        yield PostgresBudgets(engine)
    finally:
        engine.dispose()


@pytest.fixture
def redis_budgets() -> Iterator[RedisBudgets]:
    prefix = f"backhaul-test:{uuid.uuid4().hex[:12]}:"
    client = redis.Redis.from_url(REDIS_URL)
    try:
        yield RedisBudgets(client, prefix)
    finally:
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)
        client.close()


def hammer(
    url: str, store: BudgetStore | None, account: str, quota: int | None = None
) -> list[BaseException]:
    """THREADS threads, each with its own loop, client and limiter, send CALLS calls each."""
    failures: list[BaseException] = []
    rate = RateLimit(requests=LIMIT, per_seconds=WINDOW, per_day=quota)

    def limiter() -> RateLimiter:
        local = RollingWindowLimiter(LIMIT, WINDOW)
        if store is None:
            return local
        return SharedLimiter(local, AccountBudget(store, account, "HubSpot"), rate)

    async def worker() -> None:
        client = HttpClient(
            label="HubSpot",
            recorder=MemoryRecorder(),
            limiter=limiter(),
            headers={"Authorization": f"Bearer {DEFAULT_TOKEN}"},
        )
        async with client:
            await asyncio.gather(
                *(client.request("GET", f"{url}/crm/v3/properties/contacts") for _ in range(CALLS))
            )

    def thread() -> None:
        try:
            asyncio.run(worker())
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=thread) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return failures


def test_limiters_of_their_own_overrun_the_vendor_window(hub: tuple[HubSpotEmulator, str]) -> None:
    emulator, url = hub
    hammer(url, None, "unused")
    assert emulator.window.refused > 0  # what the shared budget is for


def test_limiters_sharing_a_postgres_budget_keep_to_the_window(
    hub: tuple[HubSpotEmulator, str], pg_budgets: PostgresBudgets
) -> None:
    emulator, url = hub
    assert hammer(url, pg_budgets, "hubspot:acme") == []
    assert emulator.window.refused == 0
    with pg_budgets.engine.begin() as conn:
        rows = conn.execute(rate_budgets.select()).all()
        assert [r.account for r in rows] == ["hubspot:acme"]
        conn.execute(delete(rate_budgets))


def test_limiters_sharing_a_redis_budget_keep_to_the_window(
    hub: tuple[HubSpotEmulator, str], redis_budgets: RedisBudgets
) -> None:
    emulator, url = hub
    assert hammer(url, redis_budgets, "hubspot:acme") == []
    assert emulator.window.refused == 0
    assert redis_budgets.client.exists(f"{redis_budgets.prefix}hubspot:acme")


def test_a_pause_one_limiter_is_asked_for_holds_the_others(
    redis_budgets: RedisBudgets,
) -> None:
    rate = RateLimit(requests=100, per_seconds=1.0)
    first = SharedLimiter(RateLimiter(None), AccountBudget(redis_budgets, "a", "A"), rate)
    other = SharedLimiter(RateLimiter(None), AccountBudget(redis_budgets, "a", "B"), rate)

    async def scenario() -> float:
        first.penalize(0.3)  # a 429 with Retry-After seen by one process
        key = f"{redis_budgets.prefix}a"
        for _ in range(500):  # its store update runs off the loop: wait until it landed
            if float(redis_budgets.client.hget(key, "paused_until") or 0) > 0:
                break
            await asyncio.sleep(0.01)
        permit = await other.acquire()
        other.answered(permit)
        return permit.paused_s

    assert asyncio.run(scenario()) > 0


def test_taking_past_the_daily_quota_raises_and_sends_nothing(
    hub: tuple[HubSpotEmulator, str], pg_budgets: PostgresBudgets
) -> None:
    emulator, url = hub
    failures = hammer(url, pg_budgets, "hubspot:quota", quota=10)
    assert failures and all(isinstance(f, QuotaSpentError) for f in failures)
    assert "today's quota of 10 calls" in str(failures[0])
    assert 0 < len(emulator.calls) <= 10  # granted calls a failing run cancels go unsent
    assert pg_budgets.used_today("hubspot:quota", Quota(10)) == 10
