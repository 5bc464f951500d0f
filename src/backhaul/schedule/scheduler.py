"""The scheduler: finds the syncs that are due and hands each slot to a launcher once.

One :meth:`Scheduler.tick` looks at every enabled, unpaused sync:

- interval and cron: due when the expected slot (see :mod:`backhaul.schedule.timetable`)
  has come;
- ``after``: due when every parent delivered (succeeded or partial) after this sync's
  latest run started;
- ``after_dbt``: due when the dbt invocation in ``run_results.json`` is newer than the last
  one acted on and rebuilt a model the sync reads.

Each slot is claimed in the store first (a compare-and-set), so several schedulers sharing
a store start it once. The launcher either runs the sync in this process or queues it for
the workers; when it cannot start the run (the sync is running already) the slot is given
back and tried again on a later tick. The same tick judges the clock alerts (stale, and
runs past their SLA).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Protocol

from backhaul.clock import Clock
from backhaul.clock import utc_now
from backhaul.config.project import Project
from backhaul.config.project import SyncDef
from backhaul.errors import BackhaulError
from backhaul.schedule.state import ScheduleState
from backhaul.schedule.state import ScheduleStore
from backhaul.schedule.timetable import Timetable
from backhaul.schedule.timetable import expected_slot
from backhaul.schedule.timetable import latest_deliveries
from backhaul.schedule.timetable import latest_starts
from backhaul.state.store import RunStore

if TYPE_CHECKING:
    from backhaul.alerts.sink import AlertSink

log = logging.getLogger("backhaul.schedule")
PRUNE_EVERY = timedelta(minutes=10)


class Launcher(Protocol):
    """Starts a run of a sync: in this process, or by queueing it for a worker."""

    def launch(self, sync: str, *, reason: str, refused: Callable[[], None]) -> bool:
        """Start (or queue) a run of ``sync``; False when it cannot start now.

        ``refused`` is called if the run turns out not to start after all (another process
        holds the sync), so the slot is tried again.
        """
        ...


@dataclass(frozen=True, slots=True)
class Launch:
    """A slot the scheduler started."""

    sync: str
    slot: datetime
    reason: str


class Scheduler:
    """Starts due syncs through ``launcher``.

    Args:
        project: The loaded project.
        store: Its run store (scheduler state lives there too).
        launcher: Runs the syncs (:class:`backhaul.schedule.local.LocalLauncher`) or queues
            them (:class:`backhaul.schedule.queue.QueueLauncher`).
        alerts: Judged on every tick for the stale and SLA rules.
        clock: "Now", injectable for tests.
    """

    def __init__(
        self,
        project: Project,
        store: RunStore,
        launcher: Launcher,
        *,
        alerts: AlertSink | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.project = project
        self.store = store
        self.launcher = launcher
        self.alerts = alerts
        self.clock = clock
        self.states = ScheduleStore(store)
        self.timetable = Timetable(project, store)
        self._dbt: tuple[Path, float, object] | None = None
        self._pruned: datetime | None = None

    # -- one tick --------------------------------------------------------------------------

    def tick(self, now: datetime | None = None) -> list[Launch]:
        """Start every sync that is due at ``now``; judge the clock alerts."""
        at = now or self.clock()
        scheduled = [
            n
            for n, s in self.project.syncs.items()
            if s.config.enabled and s.config.schedule.kind != "manual"
        ]
        self.states.ensure(sorted(scheduled), at)
        states = self.states.all()
        starts = latest_starts(self.store)
        deliveries: dict[str, datetime] | None = None
        launched: list[Launch] = []
        for name in sorted(scheduled):
            sync = self.project.syncs[name]
            state = states.get(name)
            if state is None or state.paused:
                continue
            kind = sync.config.schedule.kind
            slot: datetime | None = None
            reason = sync.config.schedule.describe()
            if kind in ("interval", "cron"):
                schedule = sync.config.schedule
                offset = self.timetable.first_offset(name, schedule)
                slot = expected_slot(schedule, state, starts.get(name), offset)
                if slot is not None and slot > at:
                    slot = None
            elif kind == "after":
                if deliveries is None:
                    deliveries = latest_deliveries(self.store)
                slot = _sequence_slot(sync, state, starts.get(name), deliveries)
            elif kind == "dbt":
                slot, why = self._dbt_slot(sync, state)
                reason = f"after dbt: {why}"
            if slot is not None and self._start(name, slot, reason, state, at):
                launched.append(Launch(name, slot, reason))
        self.timetable.refresh()
        if self.alerts is not None:
            self.alerts.tick(at)
        self._prune_row_logs(at)
        return launched

    def _prune_row_logs(self, at: datetime) -> None:
        """Row-log retention, at most every PRUNE_EVERY (runs also prune when they end)."""
        if self._pruned is not None and at - self._pruned < PRUNE_EVERY:
            return
        self._pruned = at
        try:
            self.store.prune_row_logs(at)
        except Exception as exc:  # retention is tidying: the schedule must go on
            log.warning("scheduler: row-log retention failed: %s", exc)

    def _start(
        self, sync: str, slot: datetime, reason: str, state: ScheduleState, now: datetime
    ) -> bool:
        if not self.states.claim(sync, slot, now):
            return False  # another scheduler took this slot, or it was taken already
        previous = state.fired_slot

        def refused() -> None:
            self.states.release(sync, slot, previous)
            self.timetable.refresh()

        try:
            started = self.launcher.launch(sync, reason=reason, refused=refused)
        except Exception:
            log.exception("scheduler: could not start %s", sync)
            started = False
        if not started:
            refused()
            return False
        log.info("scheduler: started %s (%s)", sync, reason)
        return True

    def _dbt_slot(self, sync: SyncDef, state: ScheduleState) -> tuple[datetime | None, str]:
        from backhaul.dbt.run_results import choose_syncs
        from backhaul.dbt.run_results import default_path
        from backhaul.dbt.run_results import load_run_results

        try:
            path = default_path(self.project)
            if not path.is_file():
                return None, "no run_results.json yet"
            mtime = path.stat().st_mtime
            if self._dbt is None or self._dbt[:2] != (path, mtime):
                self._dbt = (path, mtime, load_run_results(path))
            results = self._dbt[2]
        except BackhaulError as exc:
            log.warning("scheduler: %s", exc.message)
            return None, exc.message
        generated = _generated_at(getattr(results, "generated_at", ""), mtime)
        if generated <= state.since or (state.fired_slot and generated <= state.fired_slot):
            return None, "no new dbt invocation"
        choices = choose_syncs(self.project, results, [sync])  # type: ignore[arg-type]
        if not choices or not choices[0].run:
            return None, choices[0].reason if choices else "not chosen"
        return generated, choices[0].reason

    # -- the loop --------------------------------------------------------------------------

    def run_forever(self, stop: threading.Event, every: float | None = None) -> None:
        """Tick every ``every`` seconds (``scheduler.tick_seconds``) until ``stop`` is set."""
        interval = every if every is not None else self.project.config.scheduler.tick_seconds
        log.info("scheduler: started (a tick every %.1f s)", interval)
        while not stop.is_set():
            try:
                self.tick()
            except Exception:  # a failed tick (the store unreachable) must not end the loop
                log.exception("scheduler: tick failed; trying again in %.1f s", interval)
            stop.wait(interval)
        log.info("scheduler: stopped")


def _sequence_slot(
    sync: SyncDef,
    state: ScheduleState,
    last_start: datetime | None,
    deliveries: dict[str, datetime],
) -> datetime | None:
    """The latest parent delivery, when every parent delivered since this sync last started."""
    base = max(last_start, state.since) if last_start is not None else state.since
    finished: list[datetime] = []
    for parent in sync.config.schedule.after or []:
        done = deliveries.get(parent)
        if done is None or done <= base:
            return None
        finished.append(done)
    return max(finished) if finished else None


def _generated_at(text: str, mtime: float) -> datetime:
    try:
        found = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return datetime.fromtimestamp(mtime, UTC)
    return found.replace(tzinfo=UTC) if found.tzinfo is None else found.astimezone(UTC)


__all__ = ["Launch", "Launcher", "Scheduler"]
