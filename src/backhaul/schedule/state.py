"""The scheduler's state per sync in the metadata store: paused, known since, last slot started.

Starting a slot is a compare-and-set (:meth:`ScheduleStore.claim`), so any number of
scheduler processes sharing one store start each slot exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from backhaul.clock import utc_now
from backhaul.state.store import RunStore
from backhaul.state.tables import schedule_states


@dataclass(frozen=True, slots=True)
class ScheduleState:
    """Where one sync's schedule stands."""

    sync: str
    since: datetime  # when the scheduler first knew the schedule (or it was resumed)
    paused: bool
    paused_by: str | None
    paused_at: datetime | None
    fired_slot: datetime | None  # the latest slot a run was started (or queued) for
    fired_at: datetime | None


class ScheduleStore:
    """Reads and writes ``schedule_states`` in the run store's database."""

    def __init__(self, store: RunStore) -> None:
        self.engine = store.engine

    def all(self) -> dict[str, ScheduleState]:
        with self.engine.connect() as conn:
            return {
                row.sync: ScheduleState(
                    row.sync,
                    row.since,
                    bool(row.paused),
                    row.paused_by,
                    row.paused_at,
                    row.fired_slot,
                    row.fired_at,
                )
                for row in conn.execute(select(schedule_states))
            }

    def get(self, sync: str, now: datetime | None = None) -> ScheduleState:
        """The state of ``sync``, created (known since ``now``) on first use."""
        found = self.all().get(sync)
        if found is not None:
            return found
        self.ensure([sync], now)
        return self.all()[sync]

    def ensure(self, syncs: list[str], now: datetime | None = None) -> None:
        """Create a row for each of ``syncs`` that has none (another process may race)."""
        at = now or utc_now()
        have = set(self.all())
        for sync in syncs:
            if sync in have:
                continue
            try:
                with self.engine.begin() as conn:
                    conn.execute(
                        insert(schedule_states).values(
                            sync=sync, since=at, paused=False, updated_at=at
                        )
                    )
            except IntegrityError:
                pass  # another scheduler created it first: theirs is as good

    def pause(self, sync: str, by: str | None, now: datetime | None = None) -> bool:
        """Pause ``sync``; False when it was paused already."""
        at = now or utc_now()
        return self._flip(sync, at, paused=True, paused_by=by, paused_at=at)

    def resume(self, sync: str, now: datetime | None = None) -> bool:
        """Resume ``sync``; its next run is counted from now. False when it was not paused."""
        at = now or utc_now()
        return self._flip(sync, at, paused=False, paused_by=None, paused_at=None, since=at)

    def _flip(
        self, sync: str, at: datetime, *, paused: bool, **values: datetime | str | None
    ) -> bool:
        """Set ``paused`` on ``sync`` with ``values`` in one conditional update.

        The update only matches a row whose flag is still the other way, so two people
        pausing at once are told apart: the one whose update changed nothing gets False.
        """
        self.ensure([sync], at)
        with self.engine.begin() as conn:
            result = conn.execute(
                update(schedule_states)
                .where(schedule_states.c.sync == sync, schedule_states.c.paused.is_(not paused))
                .values(paused=paused, updated_at=at, **values)
            )
        return bool(result.rowcount)

    def claim(self, sync: str, slot: datetime, now: datetime | None = None) -> bool:
        """Take ``slot`` of ``sync`` for this process: True for exactly one caller per slot."""
        at = now or utc_now()
        column = schedule_states.c.fired_slot
        with self.engine.begin() as conn:
            result = conn.execute(
                update(schedule_states)
                .where(
                    schedule_states.c.sync == sync,
                    schedule_states.c.paused.is_(False),
                    or_(column.is_(None), column < slot),
                )
                .values(fired_slot=slot, fired_at=at, updated_at=at)
            )
        return bool(result.rowcount)

    def release(self, sync: str, slot: datetime, previous: datetime | None) -> None:
        """Give ``slot`` back (its run could not start), so a later tick tries again."""
        with self.engine.begin() as conn:
            conn.execute(
                update(schedule_states)
                .where(schedule_states.c.sync == sync, schedule_states.c.fired_slot == slot)
                .values(fired_slot=previous, updated_at=utc_now())
            )


__all__ = ["ScheduleState", "ScheduleStore"]
