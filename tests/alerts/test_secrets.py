"""No secret reaches an alert: not a message, an e-mail, a header we record or a history entry.

Every channel's credentials and the destination's token come from environment variables
with random values; after a raise, a recovery and lifecycle events, everything the vendors
got as message content and everything Backhaul recorded is scanned for each value.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC
from datetime import datetime

import pytest
from sqlalchemy import select
from tests.alerts.conftest import Channels
from tests.alerts.conftest import alert_project
from tests.alerts.conftest import run
from tests.conftest import Builder

from backhaul import api
from backhaul.alerts import AlertSink
from backhaul.observe.events import RunFinished
from backhaul.state.tables import alert_deliveries
from backhaul.state.tables import alert_events
from backhaul.state.tables import alert_states
from backhaul.summary import RunStatus
from backhaul.summary import RunSummary
from backhaul.testing.receiver import WebhookReceiver


def recorded_text(project: Builder) -> str:
    """Every alert row Backhaul stored, as text."""
    with api.open_store(project.load()) as store, store.engine.connect() as conn:
        rows = [
            dict(r._mapping)
            for table in (alert_states, alert_events, alert_deliveries)
            for r in conn.execute(select(table))
        ]
    return json.dumps(rows, default=str)


def sent_text(ch: Channels) -> str:
    """What the vendors received as message content (credentials fields left out)."""
    pagerduty = [
        {k: v for k, v in e.items() if k != "routing_key"}  # the key is how PagerDuty auths
        for a in ch.pagerduty.alerts
        for e in a.events
    ]
    parts = [
        json.dumps(ch.slack_messages()),
        json.dumps(pagerduty),
        json.dumps(ch.datadog.state()),
        *(raw.decode("utf-8", "replace") for raw in ch.smtp.mailbox.raw),
        *(r.body.decode("utf-8", "replace") for r in ch.hook.calls),
        json.dumps([dict(r.headers) for r in ch.hook.calls]),
    ]
    return "\n".join(parts)


def test_no_secret_in_any_alert_or_record(
    project: Builder, channels: Channels, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "dest-" + secrets.token_hex(10)
    with WebhookReceiver(key_field="id", token=token) as hook:
        alert_project(project, channels, {"rejected_rate": {"above_pct": 1}}, destination=hook)
        project.webhook_destination(hook, headers={"Authorization": "Bearer ${env:DEST_TOKEN}"})
        monkeypatch.setenv("DEST_TOKEN", "not-" + token)
        assert run(project).status is RunStatus.FAILED
        monkeypatch.setenv("DEST_TOKEN", token)
        hook.faults.reject({"2": f"refused (token {token})"})  # a destination echoing a secret
        assert run(project).status is RunStatus.PARTIAL
        hook.faults.clear()
        assert run(project).status is RunStatus.SUCCEEDED
    everything = sent_text(channels) + recorded_text(project)
    assert "alert.raised" in everything and "alert.resolved" in everything
    assert "***" in recorded_text(project)  # recorded headers carry masks, not values
    for what, value in {**channels.secrets, "destination token": token}.items():
        assert value not in everything, f"the {what} leaked"


def test_a_run_error_quoting_a_secret_is_masked(
    project: Builder, channels: Channels, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Alert texts quote run errors; a destination secret in one is masked before sending."""
    hidden = "s3cr3t-" + secrets.token_hex(8)
    monkeypatch.setenv("DEST_TOKEN", hidden)
    with WebhookReceiver(key_field="id") as hook:
        alert_project(project, channels, destination=hook)
        project.webhook_destination(hook, headers={"X-Token": "${env:DEST_TOKEN}"})
        loaded = project.load()
        now = datetime.now(UTC)
        summary = RunSummary(
            "r1",
            "users_hook",
            RunStatus.FAILED,
            started_at=now,
            finished_at=now,
            error=f"the destination said: bad token {hidden}",
        )
        with api.open_store(loaded) as store, AlertSink.open(loaded, store) as alerts:
            alerts(RunFinished(summary))
    assert channels.slack_messages(), "the failure was announced"
    assert "bad token ***" in channels.slack_messages()[0]["text"]
    assert hidden not in sent_text(channels) + recorded_text(project)
