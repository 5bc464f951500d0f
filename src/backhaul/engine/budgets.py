"""Which shared rate-limit budget a run's destination uses, and what its daily quota allows.

A destination's account is named by its file (``destinations/NAME.yml``) unless the file
says ``account:``; destinations of one type naming the same account share one budget. The
budgets live in Redis when ``state.budget_url`` is set, else in the metadata store when it
is Postgres; with the default SQLite store each run keeps its own in-process limiter.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from backhaul.config.models import OnRemove
from backhaul.config.project import DestinationDef
from backhaul.config.project import Project
from backhaul.destinations.http.budget import AccountBudget
from backhaul.destinations.http.budget import BudgetStore
from backhaul.destinations.http.budget import Quota
from backhaul.destinations.http.budget import resets_text
from backhaul.summary import Counts


def account_key(dest: DestinationDef) -> str:
    """The budget key of ``dest``: its type and ``account:``, or its type and file name."""
    account = getattr(dest.config, "account", None)
    kind = dest.config.type
    return f"{kind}:{account}" if account else f"{kind}:file:{dest.name}"


def quota_of(dest: DestinationDef) -> Quota | None:
    """The daily quota the destination file declares (``rate_limit.per_day``), if any."""
    rate = getattr(dest.config, "rate_limit", None)
    per_day = getattr(rate, "per_day", None)
    if rate is None or per_day is None:
        return None
    return Quota(int(per_day), str(getattr(rate, "day_zone", "UTC")))


def budget_store(project: Project, engine: Any | None) -> BudgetStore | None:
    """The project's shared budget store: Redis when configured, else a Postgres run store.

    ``engine`` is the run store's SQLAlchemy engine (``None`` when none is open).
    """
    url = project.config.state.budget_url
    if url:
        from backhaul.state.budgets import RedisBudgets

        return RedisBudgets.from_url(url)
    if engine is not None and engine.dialect.name == "postgresql":
        from backhaul.state.budgets import PostgresBudgets

        return PostgresBudgets(engine)
    return None


def budget_for(dest: DestinationDef, store: BudgetStore | None) -> AccountBudget | None:
    """The budget of the account ``dest`` writes to (``None`` without a shared store)."""
    if store is None:
        return None
    label = f"destination `{dest.name}`"
    return AccountBudget(store, account_key(dest), label, quota_of(dest))


def estimated_calls(counts: Counts, batch_size: int, removal: OnRemove) -> int:
    """Calls a run of ``counts`` needs at least: one per batch, plus one to check."""
    upserts = counts.added + counts.changed + counts.retried
    removals = counts.removed if removal is not OnRemove.NOTHING else 0
    batches = math.ceil(upserts / batch_size) + math.ceil(removals / batch_size)
    return batches + 1 if batches else 0


def quota_warning(dest: DestinationDef, calls: int, store: BudgetStore | None) -> str | None:
    """A warning line when ``calls`` is more than the account's quota leaves today."""
    quota = quota_of(dest)
    if quota is None or calls == 0:
        return None
    account = account_key(dest)
    if store is None:
        if calls <= quota.per_day:
            return None
        return (
            f"this run needs about {calls:,} calls, more than the daily quota of "
            f"{quota.per_day:,} of destination `{dest.name}`: it will stop when the quota is "
            "used up and the rest stays pending for the next day's runs"
        )
    used = store.used_today(account, quota)
    left = max(0, quota.per_day - used)
    if calls <= left:
        return None
    resets = resets_text(quota.resets_at(time.time()))
    return (
        f"this run needs about {calls:,} calls but only {left:,} of today's quota of "
        f"{quota.per_day:,} remain for account `{account}` (resets {resets}): it will stop "
        "sending when the quota is used up and the rest stays pending for a later run"
    )


@contextmanager
def opened(project: Project, engine: Any | None) -> Iterator[BudgetStore | None]:
    """:func:`budget_store`, closed (a Redis connection) when the block ends."""
    store = budget_store(project, engine)
    try:
        yield store
    finally:
        close = getattr(store, "close", None)
        if close is not None:
            close()
