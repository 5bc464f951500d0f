"""A rate limiter whose budget is shared by every process writing to one account.

:class:`SharedLimiter` wraps the limiter a connector built for itself (its token bucket or
rolling window, which keeps working as before: ``lower()``, pauses after a 429) and, after
that limiter lets a call go, takes the call from the account's shared budget too
(:mod:`backhaul.destinations.http.budget`). A pause one process is asked for is written to
the budget, so every other process waits as well. The HTTP client sees an ordinary
:class:`~backhaul.destinations.http.ratelimit.RateLimiter`; connectors need no change.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from backhaul.destinations.http.budget import AccountBudget
from backhaul.destinations.http.budget import Granted
from backhaul.destinations.http.budget import Quota
from backhaul.destinations.http.budget import Spent
from backhaul.destinations.http.budget import Wait
from backhaul.destinations.http.budget import Window
from backhaul.destinations.http.budget import resets_text as _resets_text
from backhaul.destinations.http.ratelimit import Clock
from backhaul.destinations.http.ratelimit import Permit
from backhaul.destinations.http.ratelimit import RateLimit
from backhaul.destinations.http.ratelimit import RateLimiter
from backhaul.destinations.http.ratelimit import RollingWindowLimiter
from backhaul.destinations.http.ratelimit import Sleep
from backhaul.errors import DestinationError
from backhaul.errors import FailureType
from backhaul.errors import QuotaSpentError
from backhaul.observe.events import WaitKind
from backhaul.observe.waits import NoWaits
from backhaul.observe.waits import WaitObserver

log = logging.getLogger(__name__)


class SharedLimiter(RateLimiter):
    """``local``'s limits, then the account's shared window, pause and daily quota.

    Args:
        local: The limiter of this process (kept in front, so one process's tasks still
            queue in order and the connector's own adjustments keep working).
        budget: The account's budget in the shared store.
        rate: The destination file's ``rate_limit``: the shared window and daily quota.
        stale_after: Seconds after which a call never handed back counts as answered.
        clock: Monotonic clock in seconds (for the local pause).
        sleep: Waits the given seconds.
    """

    def __init__(
        self,
        local: RateLimiter,
        budget: AccountBudget,
        rate: RateLimit,
        *,
        stale_after: float = 90.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        super().__init__(None, clock=clock, sleep=sleep)
        self.local = local
        self.budget = budget
        self._rate = rate
        self._stale_after = stale_after
        self.quota = Quota(rate.per_day, rate.day_zone) if rate.per_day is not None else None

    def window(self) -> Window:
        """The shared window now: a rolling window the connector lowered counts as lowered."""
        limit = self._rate.requests
        if isinstance(self.local, RollingWindowLimiter):
            limit = min(limit, self.local.limit)
        return Window(limit, self._rate.per_seconds, self._stale_after)

    # -- pauses: this process's at once, everyone's through the budget ------------------

    @property
    def paused_until(self) -> float:
        return self.local.paused_until

    def pause_until(self, deadline: float) -> None:
        self.local.pause_until(deadline)
        left = deadline - self._clock()
        if left > 0:
            self._in_background(self.budget.store.pause, self.budget.account, left)

    def penalize(self, seconds: float) -> None:
        if seconds > 0:
            self.pause_until(self._clock() + seconds)

    def pause_left(self) -> float:
        return self.local.pause_left()

    # -- taking and handing back ---------------------------------------------------------

    async def acquire(self, n: int = 1, *, observer: WaitObserver | None = None) -> Permit:
        """Wait for this process's limiter, then for room in the account's budget."""
        permit = await self.local.acquire(n, observer=observer)
        try:
            while True:
                window = self.window()
                decision = await asyncio.to_thread(self._take, n, window)
                if isinstance(decision, Granted):
                    permit.grant = decision.grant
                    return permit
                if isinstance(decision, Spent):
                    raise self._spent(decision)
                await self._wait(decision, permit, observer)
        except BaseException:
            self.local.answered(permit)  # never sent: free its local slot
            raise

    def _take(self, n: int, window: Window) -> Granted | Wait | Spent:
        try:
            return self.budget.store.take(self.budget.account, n, window, self.quota)
        except Exception as exc:
            raise DestinationError(
                f"{self.budget.label}: the shared rate-limit budget in "
                f"{self.budget.store.describe()} could not be used ({type(exc).__name__}): "
                "check that the store is reachable; the run can be started again",
                failure=FailureType.TRANSIENT,
                detail=str(exc).split("\n")[0],
            ) from None

    async def _wait(self, wait: Wait, permit: Permit, observer: WaitObserver | None) -> None:
        kind = WaitKind.RATE_LIMIT if wait.paused else WaitKind.THROTTLE
        if wait.paused:
            # Another process was asked to wait: this one's tasks wait with it.
            self.local.pause_until(self._clock() + wait.seconds)
        start = self._clock()
        await (observer or NoWaits()).held(kind, self._sleep(wait.seconds))
        spent = max(0.0, self._clock() - start)
        if wait.paused:
            permit.paused_s += spent
        else:
            permit.throttled_s += spent

    def _spent(self, spent: Spent) -> QuotaSpentError:
        return QuotaSpentError(
            f"{self.budget.label}: today's quota of {spent.per_day:,} calls for account "
            f"`{self.budget.account}` is used up ({spent.used:,} counted); nothing more is "
            f"sent until it resets at {_resets_text(spent.resets_at)}, and the rows not sent "
            "stay pending for a later run",
            resets_at=spent.resets_at,
        )

    def answered(self, permit: Permit) -> None:
        self.local.answered(permit)
        if permit.grant is not None:
            grant, permit.grant = permit.grant, None
            window = self.window()
            self._in_background(self.budget.store.release, self.budget.account, grant, window)

    def _in_background(self, fn: Callable[..., None], *args: object) -> None:
        """Run a store update off the event loop (``asyncio.run`` waits for it at the end)."""

        def safely() -> None:
            try:
                fn(*args)
            except Exception as exc:  # the slot frees when it goes stale
                log.warning(
                    "%s: could not update the shared rate-limit budget in %s: %s",
                    self.budget.label,
                    self.budget.store.describe(),
                    type(exc).__name__,
                )

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            safely()
            return
        loop.run_in_executor(None, safely)
