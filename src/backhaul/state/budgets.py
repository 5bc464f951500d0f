"""Shared rate-limit budgets in the Postgres metadata store, or in Redis.

Both stores change one account's :class:`~backhaul.destinations.http.budget.BudgetState`
atomically and decide with the store's own clock. Postgres: the account's row in
``rate_budgets`` is locked (``SELECT ... FOR UPDATE``) for the few statements of one
decision, so two processes can never both take the last slot. Redis: the account's hash is
watched and rewritten in ``MULTI``/``EXEC``, retried when another process changed it first.
"""

from __future__ import annotations

from abc import ABC
from abc import abstractmethod
from collections.abc import Callable
from datetime import UTC
from datetime import datetime
from typing import TYPE_CHECKING
from typing import Any
from typing import TypeVar

from sqlalchemy import Engine
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from backhaul.destinations.http import budget as rules
from backhaul.destinations.http.budget import BudgetState
from backhaul.destinations.http.budget import Decision
from backhaul.destinations.http.budget import Quota
from backhaul.destinations.http.budget import Window
from backhaul.state.tables import rate_budgets

if TYPE_CHECKING:
    import redis

T = TypeVar("T")
REDIS_PREFIX = "backhaul:budget:"
REDIS_TTL_S = 3 * 86_400  # an account unused for three days starts afresh


class _AtomicBudgets(ABC):
    """The budget operations, each one atomic change of an account's state.

    A store only says how it changes one account's state atomically (:meth:`_change`); the
    rules of :mod:`backhaul.destinations.http.budget` decide what each operation does.
    """

    @abstractmethod
    def _change(self, account: str, decide: Callable[[BudgetState, float], T]) -> T:
        """Apply ``decide`` (state, the store's clock in seconds) atomically; its result."""

    def take(self, account: str, n: int, window: Window, quota: Quota | None) -> Decision:
        return self._change(account, lambda s, now: rules.take(s, now, n, window, quota))

    def release(self, account: str, grant: str, window: Window) -> None:
        self._change(account, lambda s, now: rules.release(s, now, grant, window))

    def pause(self, account: str, seconds: float) -> None:
        self._change(account, lambda s, now: rules.pause(s, now, seconds))


class PostgresBudgets(_AtomicBudgets):
    """Budgets as rows of ``rate_budgets`` in the run store's Postgres database."""

    def __init__(self, engine: Engine) -> None:
        if engine.dialect.name != "postgresql":
            raise ValueError("shared budgets need the Postgres metadata store")
        self.engine = engine

    def describe(self) -> str:
        url = self.engine.url
        return f"the Postgres metadata store ({url.host}:{url.port or 5432}/{url.database})"

    def _change(self, account: str, decide: Callable[[BudgetState, float], T]) -> T:
        t = rate_budgets.c
        with self.engine.begin() as conn:
            # A budget is short-lived bookkeeping: a crash that loses its last changes only
            # forgets a few calls, so its commits need not wait for the disk.
            conn.execute(text("SET LOCAL synchronous_commit = off"))
            query = (
                select(
                    t.paused_until,
                    t.day,
                    t.day_used,
                    t.calls,
                    func.extract("epoch", func.clock_timestamp()),
                )
                .where(t.account == account)
                .with_for_update()
            )
            row = conn.execute(query).first()
            if row is None:
                # First use of the account: create its row (another process may race us).
                conn.execute(
                    pg_insert(rate_budgets)
                    .values(
                        account=account,
                        paused_until=0.0,
                        day="",
                        day_used=0,
                        calls="{}",
                        updated_at=datetime.now(UTC),
                    )
                    .on_conflict_do_nothing()
                )
                row = conn.execute(query).one()
            state = BudgetState.of(float(row[0]), row[1], int(row[2]), row[3])
            result = decide(state, float(row[4]))
            conn.execute(
                update(rate_budgets)
                .where(t.account == account)
                .values(
                    paused_until=state.paused_until,
                    day=state.day,
                    day_used=state.day_used,
                    calls=state.dumps(),
                    updated_at=datetime.now(UTC),
                )
            )
            return result

    def used_today(self, account: str, quota: Quota) -> int:
        t = rate_budgets.c
        with self.engine.connect() as conn:
            row = conn.execute(
                select(t.day, t.day_used, func.extract("epoch", func.clock_timestamp())).where(
                    t.account == account
                )
            ).first()
        if row is None:
            return 0
        return int(row[1]) if row[0] == quota.day(float(row[2])) else 0


class RedisBudgets(_AtomicBudgets):
    """Budgets as Redis hashes ``{prefix}{account}``, changed in ``MULTI``/``EXEC``.

    Args:
        client: A ``redis.Redis`` client (``decode_responses`` off or on).
        prefix: Prefix of every key (tests give each run its own).
    """

    def __init__(self, client: redis.Redis, prefix: str = REDIS_PREFIX) -> None:
        self.client = client
        self.prefix = prefix

    @classmethod
    def from_url(cls, url: str, prefix: str = REDIS_PREFIX) -> RedisBudgets:
        import redis

        return cls(redis.Redis.from_url(url, socket_timeout=10), prefix)

    def describe(self) -> str:
        kw = self.client.connection_pool.connection_kwargs
        return f"Redis ({kw.get('host', '?')}:{kw.get('port', 6379)}/{kw.get('db', 0)})"

    def close(self) -> None:
        self.client.close()

    def _change(self, account: str, decide: Callable[[BudgetState, float], T]) -> T:
        key = self.prefix + account
        results: list[T] = []

        def attempt(pipe: Any) -> None:
            results.clear()
            state = _state(pipe.hgetall(key))
            seconds, micros = pipe.time()
            results.append(decide(state, seconds + micros / 1e6))
            pipe.multi()
            pipe.hset(
                key,
                mapping={
                    "paused_until": repr(state.paused_until),
                    "day": state.day,
                    "day_used": state.day_used,
                    "calls": state.dumps(),
                },
            )
            pipe.expire(key, REDIS_TTL_S)

        self.client.transaction(attempt, key)  # runs again while another client races
        return results[0]

    def used_today(self, account: str, quota: Quota) -> int:
        state = _state(self.client.hgetall(self.prefix + account))
        seconds, micros = self.client.time()
        return rules.used_today(state, seconds + micros / 1e6, quota)


def _state(raw: dict[Any, Any]) -> BudgetState:
    fields = {(k.decode() if isinstance(k, bytes) else k): v for k, v in raw.items()}

    def text(name: str, default: str) -> str:
        value = fields.get(name)
        if value is None:
            return default
        return value.decode() if isinstance(value, bytes) else str(value)

    return BudgetState.of(
        float(text("paused_until", "0")),
        text("day", ""),
        int(text("day_used", "0")),
        text("calls", "{}"),
    )
