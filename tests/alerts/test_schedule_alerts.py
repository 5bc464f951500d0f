"""The clock rules with the real timetable: a scheduled sync whose slot nobody takes raises
`stale` once and recovers when it runs; a run hanging past its SLA raises `sla` while it
still runs, and a run within the SLA clears it."""

from __future__ import annotations

import threading
import time
from datetime import UTC
from datetime import datetime
from datetime import timedelta

from tests.alerts.conftest import Channels
from tests.alerts.conftest import alert_project
from tests.alerts.conftest import history
from tests.alerts.conftest import run
from tests.conftest import Builder

from backhaul import api
from backhaul.alerts import AlertSink
from backhaul.schedule.timetable import Timetable
from backhaul.summary import RunStatus
from backhaul.testing.receiver import WebhookReceiver


def test_a_blocked_schedule_raises_stale_once_and_recovers(
    project: Builder, channels: Channels, receiver: WebhookReceiver
) -> None:
    alert_project(
        project,
        channels,
        {"stale": {"grace_minutes": 1}},
        destination=receiver,
        sync_extra={"schedule": {"every": "5m"}},
    )
    loaded = project.load()
    now = datetime.now(UTC)
    # Nothing runs the schedule: no scheduler, no worker. Only the clock is judged.
    with api.open_store(loaded) as store:
        timetable = Timetable(loaded, store)
        with AlertSink.open(loaded, store, next_run=timetable.expected) as alerts:
            assert alerts.tick(now) == []  # due now, within the grace period
            late = alerts.tick(now + timedelta(minutes=2))
            assert [(c.rule, c.raised) for c in late] == [("stale", True)]
            assert alerts.tick(now + timedelta(minutes=3)) == []  # said once
            assert alerts.tick(now + timedelta(minutes=30)) == []
    assert run(project).status is RunStatus.SUCCEEDED  # it runs: the next slot is ahead
    # In the order they happened (the raise was judged at a simulated later time).
    events = sorted(history(project), key=lambda e: e.id)
    assert [(e.rule, e.kind) for e in events] == [("stale", "raised"), ("stale", "resolved")]
    assert "missed its schedule" in channels.slack_messages()[0]["text"]
    assert [a.status for a in channels.pagerduty.alerts] == ["resolved"]
    assert len(channels.smtp.mailbox.messages) == 2


def test_a_paused_or_manual_sync_is_never_stale(
    project: Builder, channels: Channels, receiver: WebhookReceiver
) -> None:
    alert_project(project, channels, destination=receiver, sync_extra={"schedule": {"every": "1m"}})
    loaded = project.load()
    with api.open_store(loaded) as store:
        assert api.pause(loaded, "users_hook", store=store, by="test")
        with AlertSink.open(loaded, store, next_run=Timetable(loaded, store).expected) as alerts:
            assert alerts.tick(datetime.now(UTC) + timedelta(days=3)) == []
    assert history(project) == []


def test_a_hung_run_raises_its_sla_while_running(
    project: Builder, channels: Channels, receiver: WebhookReceiver
) -> None:
    alert_project(project, channels, {"sla": {"minutes": 1}}, destination=receiver)
    receiver.faults.hold_next(1)
    worker = threading.Thread(target=run, args=(project,))
    worker.start()
    loaded = project.load()
    try:
        with api.open_store(loaded) as store:
            for _ in range(600):  # bounded: until the run is recorded as running
                latest = store.last_run("users_hook")
                if latest is not None and latest.status is RunStatus.RUNNING:
                    break
                time.sleep(0.05)
            assert latest is not None and latest.status is RunStatus.RUNNING
            with AlertSink.open(loaded, store) as alerts:
                assert alerts.tick(latest.started_at + timedelta(seconds=30)) == []
                hung = alerts.tick(latest.started_at + timedelta(minutes=3))
                assert [(c.rule, c.raised) for c in hung] == [("sla", True)]
                assert "has been running for 3.0 min (SLA 60.0 s)" in hung[0].message
                assert alerts.tick(latest.started_at + timedelta(minutes=9)) == []
    finally:
        receiver.faults.release()
        worker.join(120)
    # The run ended well within its SLA of a minute: the state clears.
    events = sorted(history(project), key=lambda e: e.id)
    assert [(e.rule, e.kind) for e in events] == [("sla", "raised"), ("sla", "resolved")]
