"""Alert state in the metadata store: one row per (sync, rule), the history, deliveries, mutes.

A change of state is a compare-and-set on the state row, so when several processes judge
the same run (a CLI run, a web server, later several workers) exactly one of them sees the
change and sends its notification.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from typing import Any

from sqlalchemy import Row
from sqlalchemy import delete
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from backhaul.state.store import RunStore
from backhaul.state.tables import alert_deliveries
from backhaul.state.tables import alert_events
from backhaul.state.tables import alert_mutes
from backhaul.state.tables import alert_states

OK = "ok"
FIRING = "firing"
ALL_RULES = "*"  # a mute of every rule of a sync
REQUEST_LIMIT = 16 * 1024


@dataclass(frozen=True, slots=True)
class AlertState:
    """Where one rule of one sync stands."""

    sync: str
    rule: str
    state: str  # "ok" | "firing"
    since: datetime
    message: str | None
    run_id: str | None
    notified: bool
    updated_at: datetime

    @property
    def firing(self) -> bool:
        return self.state == FIRING


@dataclass(frozen=True, slots=True)
class Transition:
    """A rule entered or left its alert state (one history entry)."""

    event_id: int
    sync: str
    rule: str
    raised: bool  # False: resolved
    message: str
    run_id: str | None
    at: datetime
    muted: bool


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """One message to one channel, as recorded."""

    id: int
    event_id: int | None
    run_id: str | None
    what: str
    channel: str
    ok: bool
    status: int | None
    error: str | None
    request: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One entry of the alert history, with what was delivered for it."""

    id: int
    at: datetime
    sync: str
    rule: str
    kind: str  # "raised" | "resolved" | "test"
    message: str
    run_id: str | None
    muted: bool
    deliveries: list[DeliveryRecord] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Mute:
    sync: str
    rule: str  # a rule name, or "*" for all
    muted_by: str | None
    muted_at: datetime


class AlertStore:
    """Reads and writes the alert tables of a :class:`RunStore`'s database. Thread-safe."""

    def __init__(self, store: RunStore) -> None:
        self._engine = store.engine

    # -- state ------------------------------------------------------------------------

    def transition(
        self,
        sync: str,
        rule: str,
        *,
        firing: bool,
        message: str,
        run_id: str | None,
        muted: bool,
        at: datetime | None = None,
    ) -> Transition | None:
        """Record a rule's verdict; return the change of state it makes, if any.

        Returns ``None`` while the state holds (no notification is due). A rule seen for the
        first time starts in ``ok``: only entering ``firing`` from there is a change.
        """
        now = at or datetime.now(UTC)
        new, old = (FIRING, OK) if firing else (OK, FIRING)
        with self._engine.begin() as conn:
            # The write comes first, so SQLite takes its write lock at once (no upgrade race).
            values = {"state": new, "since": now, "message": message, "updated_at": now}
            if firing:
                values |= {"run_id": run_id, "notified": False}
            changed = conn.execute(
                update(alert_states)
                .where(
                    alert_states.c.sync == sync,
                    alert_states.c.rule == rule,
                    alert_states.c.state == old,
                )
                .values(values)
                .returning(alert_states.c.sync)
            ).first()
            if changed is not None:
                return self._event(conn, sync, rule, firing, message, run_id, now, muted)
        try:
            with self._engine.begin() as conn:
                # A rule's first verdict: its row starts with the state the update would write.
                first = {"sync": sync, "rule": rule, "run_id": run_id, "notified": False} | values
                conn.execute(insert(alert_states).values(first))
                if firing:
                    return self._event(conn, sync, rule, True, message, run_id, now, muted)
        except IntegrityError:
            pass  # the row exists (in this state already, or another process just wrote it)
        return None

    def _event(
        self,
        conn: Connection,
        sync: str,
        rule: str,
        raised: bool,
        message: str,
        run_id: str | None,
        at: datetime,
        muted: bool,
    ) -> Transition:
        event_id = _add_event(
            conn,
            at=at,
            sync=sync,
            rule=rule,
            kind="raised" if raised else "resolved",
            message=message,
            run_id=run_id,
            muted=muted,
        )
        return Transition(event_id, sync, rule, raised, message, run_id, at, muted)

    def mark_notified(self, sync: str, rule: str) -> None:
        """Note that the current raise of ``rule`` reached at least one channel."""
        with self._engine.begin() as conn:
            conn.execute(
                update(alert_states)
                .where(alert_states.c.sync == sync, alert_states.c.rule == rule)
                .values(notified=True)
            )

    def raise_delivered(self, sync: str, rule: str, before: int) -> bool:
        """Whether the raise that history entry ``before`` resolves reached a channel."""
        with self._engine.connect() as conn:
            raised = conn.execute(
                select(alert_events.c.id)
                .where(
                    alert_events.c.sync == sync,
                    alert_events.c.rule == rule,
                    alert_events.c.kind == "raised",
                    alert_events.c.id < before,
                )
                .order_by(alert_events.c.id.desc())
                .limit(1)
            ).scalar()
            if raised is None:
                return False
            sent = conn.execute(
                select(alert_deliveries.c.id)
                .where(alert_deliveries.c.event_id == raised, alert_deliveries.c.ok.is_(True))
                .limit(1)
            ).first()
        return sent is not None

    def states(self, sync: str | None = None) -> list[AlertState]:
        """Every known state (of one sync, or all), by sync and rule."""
        query = select(alert_states).order_by(alert_states.c.sync, alert_states.c.rule)
        if sync is not None:
            query = query.where(alert_states.c.sync == sync)
        with self._engine.connect() as conn:
            return [
                AlertState(
                    r.sync,
                    r.rule,
                    r.state,
                    r.since,
                    r.message,
                    r.run_id,
                    bool(r.notified),
                    r.updated_at,
                )
                for r in conn.execute(query)
            ]

    def test_event(self, channel: str, message: str) -> int:
        """A history entry for a test notification; returns its id."""
        with self._engine.begin() as conn:
            return _add_event(
                conn,
                at=datetime.now(UTC),
                sync="",
                rule=f"test:{channel}"[:32],
                kind="test",
                message=message,
                run_id=None,
                muted=False,
            )

    # -- deliveries and history ---------------------------------------------------------

    def add_delivery(
        self,
        *,
        channel: str,
        what: str,
        ok: bool,
        event_id: int | None = None,
        run_id: str | None = None,
        status: int | None = None,
        error: str | None = None,
        request: str | None = None,
    ) -> None:
        """Record one message sent (or not) to one channel; ``request`` must be redacted."""
        if request is not None and len(request) > REQUEST_LIMIT:
            request = request[:REQUEST_LIMIT] + f"... [{len(request) - REQUEST_LIMIT} more]"
        with self._engine.begin() as conn:
            conn.execute(
                insert(alert_deliveries).values(
                    event_id=event_id,
                    run_id=run_id,
                    what=what,
                    channel=channel,
                    ok=ok,
                    status=status,
                    error=error,
                    request=request,
                    at=datetime.now(UTC),
                )
            )

    def events(
        self, *, sync: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[AlertEvent]:
        """The alert history, newest first, each entry with its deliveries."""
        query = select(alert_events).order_by(alert_events.c.at.desc(), alert_events.c.id.desc())
        if sync is not None:
            query = query.where(alert_events.c.sync == sync)
        with self._engine.connect() as conn:
            rows = list(conn.execute(query.limit(limit).offset(offset)))
            ids = [r.id for r in rows]
            sent: dict[int, list[DeliveryRecord]] = {}
            if ids:
                found = conn.execute(
                    select(alert_deliveries)
                    .where(alert_deliveries.c.event_id.in_(ids))
                    .order_by(alert_deliveries.c.id)
                )
                for d in found:
                    sent.setdefault(int(d.event_id), []).append(_delivery(d))
        return [
            AlertEvent(
                r.id,
                r.at,
                r.sync,
                r.rule,
                r.kind,
                r.message,
                r.run_id,
                bool(r.muted),
                sent.get(r.id, []),
            )
            for r in rows
        ]

    def deliveries(self, *, run_id: str | None = None, limit: int = 100) -> list[DeliveryRecord]:
        """Recorded deliveries, oldest first (of one run's lifecycle messages, or all)."""
        query = select(alert_deliveries).order_by(alert_deliveries.c.id)
        if run_id is not None:
            query = query.where(alert_deliveries.c.run_id == run_id)
        with self._engine.connect() as conn:
            return [_delivery(d) for d in conn.execute(query.limit(limit))]

    # -- mutes ----------------------------------------------------------------------------

    def mute(self, sync: str, rule: str = ALL_RULES, *, by: str | None = None) -> bool:
        """Silence ``rule`` (default: every rule) of ``sync``; False if it already was."""
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    insert(alert_mutes).values(
                        sync=sync, rule=rule, muted_by=by, muted_at=datetime.now(UTC)
                    )
                )
        except IntegrityError:
            return False
        return True

    def unmute(self, sync: str, rule: str = ALL_RULES) -> bool:
        """Lift a mute; False if there was none."""
        with self._engine.begin() as conn:
            result = conn.execute(
                delete(alert_mutes).where(alert_mutes.c.sync == sync, alert_mutes.c.rule == rule)
            )
            return bool(result.rowcount)

    def mutes(self) -> list[Mute]:
        with self._engine.connect() as conn:
            query = select(alert_mutes).order_by(alert_mutes.c.sync, alert_mutes.c.rule)
            return [Mute(r.sync, r.rule, r.muted_by, r.muted_at) for r in conn.execute(query)]

    def is_muted(self, sync: str, rule: str) -> bool:
        """Whether ``rule`` of ``sync`` is muted, alone or with the whole sync."""
        with self._engine.connect() as conn:
            found = conn.execute(
                select(alert_mutes.c.rule).where(
                    alert_mutes.c.sync == sync, alert_mutes.c.rule.in_([rule, ALL_RULES])
                )
            ).first()
        return found is not None


def _add_event(conn: Connection, **values: Any) -> int:
    """Insert one history entry; returns its id."""
    result = conn.execute(insert(alert_events).values(values).returning(alert_events.c.id))
    return int(result.scalar_one())


def _delivery(d: Row[Any]) -> DeliveryRecord:
    return DeliveryRecord(
        int(d.id),
        d.event_id,
        d.run_id,
        d.what,
        d.channel,
        bool(d.ok),
        d.status,
        d.error,
        d.request,
        d.at,
    )


__all__ = [
    "ALL_RULES",
    "FIRING",
    "OK",
    "AlertEvent",
    "AlertState",
    "AlertStore",
    "DeliveryRecord",
    "Mute",
    "Transition",
]
