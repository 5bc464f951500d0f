"""Every rule fires once on entering its state and once on recovery, on every channel.

Each test drives real runs of a small project (DuckDB warehouse → webhook receiver) with
alerts attached, and checks what the Slack, PagerDuty and Datadog emulators, the SMTP server
and the webhook receiver got: one raise, then one recovery, nothing repeated in between.
"""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from tests.alerts.conftest import WEB_URL
from tests.alerts.conftest import Channels
from tests.alerts.conftest import alert_project
from tests.alerts.conftest import history
from tests.alerts.conftest import run
from tests.conftest import Builder

from backhaul.summary import RunStatus
from backhaul.testing.receiver import WebhookReceiver

DEDUP = "backhaul/t/users_hook/{rule}"


def assert_raised_then_resolved(
    project: Builder, ch: Channels, rule: str, raised_by: str, resolved_by: str
) -> None:
    """One raise (from run ``raised_by``) and one recovery on every channel, nothing else."""
    events = [(e.rule, e.kind, e.run_id) for e in history(project)]
    assert events == [(rule, "raised", raised_by), (rule, "resolved", resolved_by)]
    for entry in history(project):
        assert sorted(d.channel for d in entry.deliveries) == [
            "datadog",
            "hook",
            "mail",
            "oncall",
            "team_slack",
        ]
        assert all(d.ok for d in entry.deliveries), [d.error for d in entry.deliveries]

    slack = ch.slack_messages()
    assert [m["blocks"][0]["text"]["text"].split()[0] for m in slack] == ["ALERT", "RESOLVED"]
    fields = [f["text"] for f in slack[0]["blocks"][2]["fields"]]
    assert f"*Rule*\n{rule}" in fields and "*Sync*\nusers_hook" in fields
    button = slack[0]["blocks"][3]["elements"][0]
    assert button["url"] == f"{WEB_URL}/runs/{raised_by}"

    dedup = DEDUP.format(rule=rule)
    assert [a.dedup_key for a in ch.pagerduty.alerts] == [dedup]
    incident = ch.pagerduty.alerts[0]
    assert incident.status == "resolved"
    assert [e["event_action"] for e in incident.events] == ["trigger", "resolve"]
    assert incident.events[0]["payload"]["class"] == rule
    assert incident.events[0]["links"][0]["href"] == f"{WEB_URL}/runs/{raised_by}"

    dd = [(e.status, e.aggregation_key) for e in ch.datadog.events]
    assert dd == [("error", dedup), ("ok", dedup)]

    assert ch.smtp.mailbox.logins and all(ch.smtp.mailbox.logins)  # signed in every time
    subjects = [str(m["Subject"]) for m in ch.smtp.mailbox.messages]
    assert [s.split()[1] for s in subjects] == ["ALERT", "RESOLVED"]
    assert all("users_hook" in s for s in subjects)
    body = ch.smtp.mailbox.messages[0].get_payload(decode=True)
    assert f"{WEB_URL}/runs/{raised_by}".encode() in body

    hooks = [(h["event"], h["rule"], h["run_id"]) for h in ch.alert_hooks()]
    assert hooks == [("alert.raised", rule, raised_by), ("alert.resolved", rule, resolved_by)]


def test_run_failed_then_fixed(
    project: Builder, channels: Channels, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "dest-" + secrets.token_hex(10)
    with WebhookReceiver(key_field="id", token=token) as guarded_hook:
        alert_project(project, channels, destination=guarded_hook)
        project.webhook_destination(
            guarded_hook, headers={"Authorization": "Bearer ${env:DEST_TOKEN}"}
        )
        monkeypatch.setenv("DEST_TOKEN", "an-old-token")  # the receiver refuses it: 401
        first = run(project)
        again = run(project)
        assert first.status is again.status is RunStatus.FAILED
        monkeypatch.setenv("DEST_TOKEN", token)
        fixed = run(project)
        still = run(project)
        assert fixed.status is RunStatus.SUCCEEDED and still.status is RunStatus.SUCCEEDED
    assert_raised_then_resolved(project, channels, "failed", first.run_id, fixed.run_id)
    assert "401" in channels.alert_hooks()[0]["message"]


def test_rejected_rate_at_threshold(
    project: Builder, channels: Channels, receiver: WebhookReceiver
) -> None:
    alert_project(project, channels, {"rejected_rate": {"above_pct": 20}}, destination=receiver)
    receiver.faults.reject({"3": "email is blocked", "7": "email is blocked"})  # 2 of 10 = 20%
    first = run(project)
    assert first.status is RunStatus.PARTIAL and first.counts.rejected == 2
    again = run(project)  # the two are retried and refused again: still 100% of 2 sent
    assert again.counts.rejected == 2
    receiver.faults.clear()
    fixed = run(project)
    assert fixed.status is RunStatus.SUCCEEDED and fixed.counts.retried == 2
    run(project)
    assert_raised_then_resolved(project, channels, "rejected_rate", first.run_id, fixed.run_id)
    assert "2 of 10 rows sent were rejected (20.0%" in channels.slack_messages()[0]["text"]


def test_volume_change_against_recent_average(
    project: Builder, channels: Channels, receiver: WebhookReceiver
) -> None:
    rule = {"volume_change": {"above_pct": 60, "runs": 2}}
    alert_project(project, channels, rule, destination=receiver)
    run(project)
    run(project)  # two runs of 10 rows: the average
    project.users(30)
    jump = run(project)  # 30 against 10: +200%
    assert jump.counts.queried == 30
    project.users(31)
    high = run(project)  # 31 against (30 + 10) / 2 = 20: +55%, under 60%
    run(project)
    assert_raised_then_resolved(project, channels, "volume_change", jump.run_id, high.run_id)
    assert "30 rows queried, 200% above the average of the last 2 runs" in (
        channels.smtp.mailbox.messages[0].get_payload(decode=True).decode()
    )


def test_guard_tripped_then_cleared(
    project: Builder, channels: Channels, receiver: WebhookReceiver
) -> None:
    alert_project(project, channels, destination=receiver, sync_extra={"mode": "mirror"}, rows=10)
    assert run(project).status is RunStatus.SUCCEEDED
    project.sql("DELETE FROM users WHERE id > 5")  # half would be deleted; the limit is 20%
    first = run(project)
    again = run(project)
    assert first.status is again.status is RunStatus.GUARDED
    project.users(10)
    fixed = run(project)
    assert fixed.status is RunStatus.SUCCEEDED
    run(project)
    assert_raised_then_resolved(project, channels, "guarded", first.run_id, fixed.run_id)


def test_run_longer_than_sla(
    project: Builder, channels: Channels, receiver: WebhookReceiver
) -> None:
    alert_project(project, channels, {"sla": {"minutes": 0.01}}, destination=receiver)  # 0.6 s
    receiver.faults.timeout_next(1, 1.0)  # the only call of the run is held a whole second
    slow = run(project)
    assert slow.duration_s > 0.6
    project.users(11)
    receiver.faults.timeout_next(1, 1.0)
    run(project)  # still slow: no second message
    # The team accepts slower runs now: the next run is judged against 10 minutes.
    data: dict[str, Any] = {
        "name": "t",
        "alerts": {
            "channels": ["team_slack", "oncall", "datadog", "mail", "hook"],
            "web_url": WEB_URL,
            "rules": {"sla": {"minutes": 10}},
        },
    }
    project.write("backhaul.yml", data)
    within = run(project)
    assert_raised_then_resolved(project, channels, "sla", slow.run_id, within.run_id)


def test_run_metrics_reach_datadog_as_series(
    project: Builder, channels: Channels, receiver: WebhookReceiver
) -> None:
    alert_project(project, channels, destination=receiver, rows=12)
    first = run(project)
    project.sql("UPDATE users SET email = 'new' || id || '@example.com' WHERE id <= 4")
    second = run(project)
    queried = channels.datadog.series("backhaul.run.rows_queried")
    changed = channels.datadog.series("backhaul.run.rows_changed")
    assert [p.value for p in queried] == [12, 12]
    assert [p.value for p in changed] == [0, 4]
    assert all("sync:users_hook" in p.tags and "env:test" in p.tags for p in queried)
    assert len(channels.datadog.series("backhaul.run.duration")) == 2
    # Lifecycle events on the webhook channel, in order, each signed (the receiver checks).
    lifecycle = [
        (r.json["event"], r.json["run_id"])
        for r in channels.hook.calls
        if str(r.json.get("event", "")).startswith("run.")
    ]
    assert lifecycle == [
        ("run.started", first.run_id),
        ("run.succeeded", first.run_id),
        ("run.started", second.run_id),
        ("run.succeeded", second.run_id),
    ]
    assert channels.datadog.events == []  # no alert, no event
