"""When each sync is expected to run next, from its schedule, its runs and the scheduler state.

The expected run of a timed schedule (interval or cron) is the first slot after the sync's
latest run started (or after the schedule became known, or was resumed). A run moves it on;
a slot that no run took stays in the past, which is what the ``stale`` alert looks for.
Nothing here depends on a scheduler process: the web app and ``backhaul schedules`` read the
same answer the scheduler acts on.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from datetime import timedelta

from sqlalchemy import false
from sqlalchemy import func
from sqlalchemy import select

from backhaul.config.project import Project
from backhaul.config.schedule import ScheduleConfig
from backhaul.schedule.state import ScheduleState
from backhaul.schedule.state import ScheduleStore
from backhaul.state.store import RunStore
from backhaul.state.tables import runs
from backhaul.summary import RunStatus

DELIVERED = (RunStatus.SUCCEEDED.value, RunStatus.PARTIAL.value)
MEMO_S = 1.0  # answers are reused this long: the stale check asks once per sync


def next_slot(schedule: ScheduleConfig, after: datetime) -> datetime | None:
    """The first slot of a timed schedule strictly after ``after`` (UTC), else None."""
    interval = schedule.interval
    if interval is not None:
        return after + interval
    if schedule.cron is not None:
        from croniter import croniter

        local = after.astimezone(schedule.zone)
        found: datetime = croniter(schedule.cron, local).get_next(datetime)
        return found.astimezone(UTC)
    return None


def first_run_offset(sync: str, schedule: ScheduleConfig, spread_seconds: float) -> timedelta:
    """How long after it becomes known (or is resumed) an interval schedule first runs.

    A fraction of ``min(interval, spread_seconds)`` fixed by the sync's name: the same in
    every process and every restart, different from sync to sync, so two hundred syncs
    deployed together start over a few minutes instead of all at once.
    """
    if schedule.interval is None or spread_seconds <= 0:
        return timedelta(0)
    span = min(schedule.interval.total_seconds(), spread_seconds)
    digest = hashlib.sha256(sync.encode("utf-8")).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    return timedelta(seconds=round(fraction * span, 3))


def expected_slot(
    schedule: ScheduleConfig,
    state: ScheduleState | None,
    last_start: datetime | None,
    first_offset: timedelta = timedelta(0),
) -> datetime | None:
    """When a timed, unpaused schedule expects its next run; None for the others.

    ``first_offset`` (see :func:`first_run_offset`) delays the first run of a new interval
    schedule.
    """
    if not schedule.timed or state is None or state.paused:
        return None
    if schedule.interval is not None:
        if last_start is None:
            return state.since + first_offset
        found = next_slot(schedule, last_start)
        return max(found, state.since) if found is not None else None
    base = max(last_start, state.since) if last_start is not None else state.since
    return next_slot(schedule, base)


@dataclass(frozen=True, slots=True)
class NextRun:
    """A sync's schedule in words and when it runs next."""

    sync: str
    schedule: str  # "every 15m", "cron 0 6 * * * (UTC)", "after a, b", "after dbt", "manual"
    kind: str
    paused: bool
    at: datetime | None  # the expected run of a timed schedule

    def label(self, now: datetime | None = None) -> str:
        """``in 4 min``, ``overdue since 10:00 UTC``, ``after a, b``, ``paused``, ``manual``."""
        if self.paused:
            return "paused"
        if self.at is None:
            return self.schedule
        delta = (self.at - (now or datetime.now(UTC))).total_seconds()
        if delta <= 0:
            return f"due since {self.at:%Y-%m-%d %H:%M:%S} UTC"
        return f"in {_span(delta)} ({self.at:%Y-%m-%d %H:%M:%S} UTC)"


def _span(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


class Timetable:
    """Reads schedules, scheduler state and run starts; answers when each sync runs next.

    Args:
        project: The loaded project.
        store: Its run store.
    """

    def __init__(self, project: Project, store: RunStore) -> None:
        self.project = project
        self.store = store
        self.states = ScheduleStore(store)
        self._lock = threading.Lock()
        self._memo: tuple[float, dict[str, ScheduleState], dict[str, datetime]] | None = None

    def refresh(self) -> None:
        """Forget memoised answers (after this process started or paused something)."""
        with self._lock:
            self._memo = None

    def _read(self) -> tuple[dict[str, ScheduleState], dict[str, datetime]]:
        with self._lock:
            if self._memo is not None and time.monotonic() - self._memo[0] < MEMO_S:
                return self._memo[1], self._memo[2]
        timed = [n for n, s in self.project.syncs.items() if s.config.schedule.timed]
        states = self.states.all()
        if any(n not in states for n in timed):
            self.states.ensure(timed)
            states = self.states.all()
        starts = latest_starts(self.store)
        with self._lock:
            self._memo = (time.monotonic(), states, starts)
        return states, starts

    def expected(self, sync: str) -> datetime | None:
        """The expected next run of ``sync`` (None: not timed, paused or disabled).

        The :data:`backhaul.alerts.rules.NextRun` the stale alert is judged by.
        """
        definition = self.project.syncs.get(sync)
        if definition is None or not definition.config.enabled:
            return None
        states, starts = self._read()
        schedule = definition.config.schedule
        return expected_slot(
            schedule, states.get(sync), starts.get(sync), self.first_offset(sync, schedule)
        )

    def first_offset(self, sync: str, schedule: ScheduleConfig) -> timedelta:
        """The first-run offset of ``sync`` under the project's ``scheduler`` settings."""
        spread = self.project.config.scheduler.spread_first_runs_seconds
        return first_run_offset(sync, schedule, spread)

    def next_runs(self) -> dict[str, NextRun]:
        """Every sync's schedule and next run, by name."""
        states, starts = self._read()
        out: dict[str, NextRun] = {}
        for name, definition in sorted(self.project.syncs.items()):
            schedule = definition.config.schedule
            state = states.get(name)
            at = None
            if definition.config.enabled:
                at = expected_slot(
                    schedule, state, starts.get(name), self.first_offset(name, schedule)
                )
            out[name] = NextRun(
                name,
                schedule.describe() if definition.config.enabled else "disabled",
                schedule.kind,
                bool(state and state.paused),
                at,
            )
        return out


def latest_starts(store: RunStore) -> dict[str, datetime]:
    """When each sync's latest real (not dry) run started."""
    query = (
        select(runs.c.sync, func.max(runs.c.started_at).label("at"))
        .where(runs.c.dry_run == false())
        .group_by(runs.c.sync)
    )
    with store.engine.connect() as conn:
        return {row.sync: _aware(row.at) for row in conn.execute(query)}


def latest_deliveries(store: RunStore) -> dict[str, datetime]:
    """When each sync's latest run that delivered (succeeded or partial) finished."""
    query = (
        select(runs.c.sync, func.max(runs.c.finished_at).label("at"))
        .where(runs.c.dry_run == false(), runs.c.status.in_(DELIVERED))
        .group_by(runs.c.sync)
    )
    with store.engine.connect() as conn:
        return {row.sync: _aware(row.at) for row in conn.execute(query) if row.at is not None}


def _aware(value: datetime | str) -> datetime:
    # An aggregate loses the column type on SQLite: parse what comes back, as UTC.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


__all__ = [
    "NextRun",
    "Timetable",
    "expected_slot",
    "first_run_offset",
    "latest_deliveries",
    "next_slot",
]
