"""The sink's promises: the stale check plugs in on a clock, muting silences, a broken
channel never fails a run, and no recovery is sent for a raise nobody heard."""

from __future__ import annotations

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
from backhaul.alerts.store import AlertStore
from backhaul.summary import RunStatus
from backhaul.testing.receiver import WebhookReceiver


def test_stale_rule_through_its_pluggable_interface(
    project: Builder, channels: Channels, receiver: WebhookReceiver
) -> None:
    """AWAITING THE SCHEDULER: a fake "expected next run" stands in for the real one."""
    alert_project(project, channels, {"stale": {"grace_minutes": 5}}, destination=receiver)
    loaded = project.load()
    expected = {"users_hook": datetime(2030, 1, 1, 12, 0, tzinfo=UTC)}
    with api.open_store(loaded) as store:
        alerts = AlertSink.open(loaded, store, next_run=expected.get)
        with alerts:
            assert alerts.tick(datetime(2030, 1, 1, 12, 4, tzinfo=UTC)) == []  # within grace
            late = alerts.tick(datetime(2030, 1, 1, 12, 6, tzinfo=UTC))
            assert [(c.rule, c.raised) for c in late] == [("stale", True)]
            assert alerts.tick(datetime(2030, 1, 1, 12, 30, tzinfo=UTC)) == []  # no repeat
            expected["users_hook"] = datetime(2030, 1, 1, 13, 0, tzinfo=UTC)  # it ran
            back = alerts.tick(datetime(2030, 1, 1, 12, 31, tzinfo=UTC))
            assert [(c.rule, c.raised) for c in back] == [("stale", False)]
    assert [e.kind for e in history(project)] == ["raised", "resolved"]
    assert "missed its schedule" in channels.slack_messages()[0]["text"]
    assert [a.status for a in channels.pagerduty.alerts] == ["resolved"]
    assert [e.status for e in channels.datadog.events] == ["error", "ok"]
    assert len(channels.smtp.mailbox.messages) == 2


def test_unscheduled_syncs_are_never_stale(
    project: Builder, channels: Channels, receiver: WebhookReceiver
) -> None:
    alert_project(project, channels, destination=receiver)
    loaded = project.load()
    far = datetime.now(UTC) + timedelta(days=365)
    with api.open_store(loaded) as store:
        with AlertSink.open(loaded, store) as alerts:  # no scheduler at all
            assert alerts.tick(far) == []
        with AlertSink.open(loaded, store, next_run=lambda sync: None) as alerts:  # manual
            assert alerts.tick(far) == []
    assert history(project) == []


def test_muted_sync_is_tracked_but_silent(
    project: Builder, channels: Channels, receiver: WebhookReceiver
) -> None:
    alert_project(project, channels, {"rejected_rate": {"above_pct": 10}}, destination=receiver)
    with api.open_store(project.load()) as store:
        assert AlertStore(store).mute("users_hook", by="test")
    receiver.faults.reject({"1": "no", "2": "no"})
    assert run(project).status is RunStatus.PARTIAL
    receiver.faults.clear()
    assert run(project).status is RunStatus.SUCCEEDED
    assert [(e.kind, e.muted) for e in history(project)] == [("raised", True), ("resolved", True)]
    # Nothing was said about the raise, so nothing is said about its recovery either.
    assert channels.slack_messages() == [] and channels.pagerduty.alerts == []
    assert channels.smtp.mailbox.messages == [] and channels.alert_hooks() == []
    with api.open_store(project.load()) as store:
        assert AlertStore(store).unmute("users_hook")
    receiver.faults.reject({"3": "no", "4": "no"})
    project.sql("UPDATE users SET email = 'new' || id || '@example.com' WHERE id IN (3, 4)")
    assert run(project).counts.rejected == 2
    assert len(channels.slack_messages()) == 1  # heard again once unmuted


def test_mute_one_rule_only(
    project: Builder, channels: Channels, receiver: WebhookReceiver
) -> None:
    rules = {"rejected_rate": {"above_pct": 10}, "volume_change": {"above_pct": 10, "runs": 1}}
    alert_project(project, channels, rules, destination=receiver)
    with api.open_store(project.load()) as store:
        AlertStore(store).mute("users_hook", "rejected_rate")
    run(project)
    project.users(20)
    receiver.faults.reject({"11": "no", "12": "no", "13": "no"})
    run(project)  # both rules fire; only the volume alert is sent
    texts = [m["text"] for m in channels.slack_messages()]
    assert len(texts) == 1 and "row volume changed" in texts[0]


def test_failing_channels_never_fail_the_run(
    project: Builder, channels: Channels, receiver: WebhookReceiver
) -> None:
    alert_project(project, channels, {"rejected_rate": {"above_pct": 10}}, destination=receiver)
    project.write(  # a channel whose variable is unset, and one nobody listens to
        "channels/hook.yml", {"type": "webhook", "url": "http://127.0.0.1:9/nothing-here"}
    )
    channels.pagerduty.faults.fail_next(10, status=400)
    receiver.faults.reject({"1": "no", "2": "no"})
    summary = run(project)
    assert summary.status is RunStatus.PARTIAL  # the run's own result, untouched
    (raised,) = history(project)
    outcome = {d.channel: d for d in raised.deliveries}
    assert outcome["team_slack"].ok and outcome["mail"].ok and outcome["datadog"].ok
    assert not outcome["oncall"].ok and "400" in (outcome["oncall"].error or "")
    assert not outcome["hook"].ok and "refused the connection" in (outcome["hook"].error or "")
    assert len(channels.slack_messages()) == 1


def test_recovery_messages_can_be_turned_off(
    project: Builder, channels: Channels, receiver: WebhookReceiver
) -> None:
    alert_project(
        project,
        channels,
        {"rejected_rate": {"above_pct": 10}},
        destination=receiver,
        sync_extra={"alerts": {"recovery": False, "channels": ["team_slack"]}},
    )
    receiver.faults.reject({"1": "no", "2": "no"})
    run(project)
    receiver.faults.clear()
    run(project)
    assert [e.kind for e in history(project)] == ["raised", "resolved"]
    assert len(channels.slack_messages()) == 1  # the raise only
    assert channels.pagerduty.alerts == []  # the sync's channel list replaced the project's
