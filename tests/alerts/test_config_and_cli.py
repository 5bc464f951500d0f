"""Alert settings in files: validation with file:line, references, schema, and the CLI."""

from __future__ import annotations

import json

import pytest
from tests.alerts.conftest import Channels
from tests.alerts.conftest import alert_project
from tests.conftest import Builder

from backhaul.config.checks import check_project
from backhaul.config.schema import schema_bundle
from backhaul.testing.receiver import WebhookReceiver

pytestmark = pytest.mark.integration


def test_validate_reports_channel_problems_with_file_and_line(
    project: Builder, receiver: WebhookReceiver
) -> None:
    project.write(
        "backhaul.yml",
        {"name": "t", "alerts": {"channels": ["team_slak"], "rules": {"sla": {"minutes": 5}}}},
    )
    project.write("channels/team_slack.yml", {"type": "slack", "webhook_url": "${env:NOPE_X}"})
    project.write("channels/pager.yml", {"type": "pagerduty", "routng_key": "x"})
    project.write("channels/odd.yml", {"type": "smoke-signal"})
    project.users(3)
    project.webhook_destination(receiver)
    project.sync("s", destination="hook", alerts={"channels": ["pager", "missing"]})
    found = sorted(str(e) for e in check_project(project.load(), open_sources=False))
    assert found == [
        "backhaul.yml:3: alerts.channels.0: unknown channel `team_slak` (did you mean "
        "`team_slack`? known: team_slack)",
        "channels/odd.yml:1: type: unknown channel type `smoke-signal` (known: datadog, "
        "email, pagerduty, slack, webhook)",
        "channels/pager.yml:1: routng_key: unknown key `routng_key` (did you mean `routing_key`?)",
        "channels/team_slack.yml:2: webhook_url: environment variable NOPE_X is not set "
        "(referenced by `webhook_url`): export it, or write `${env:NOPE_X:-default}`",
        "syncs/s.yml:3: alerts.channels.0: unknown channel `pager` (known: team_slack)",
        "syncs/s.yml:4: alerts.channels.1: unknown channel `missing` (known: team_slack)",
    ]


def test_rule_settings_are_checked_when_loading(project: Builder) -> None:
    project.write("backhaul.yml", {"name": "t", "alerts": {"rules": {"sla": {"minuts": 3}}}})
    result = project.cli("validate", "--offline")
    assert result.returncode == 2
    assert "backhaul.yml:4: alerts.rules.sla.minuts: unknown key `minuts`" in result.stderr


def test_schema_describes_channel_files() -> None:
    schema = schema_bundle().schemas["channel"]
    text = json.dumps(schema)
    for kind in ("slack", "pagerduty", "datadog", "email", "webhook"):
        assert f'"const": "{kind}"' in text
    assert "routing_key" in text and "signing_secret" in text


def test_cli_lists_tests_and_mutes(
    project: Builder, channels: Channels, receiver: WebhookReceiver
) -> None:
    alert_project(project, channels, {"rejected_rate": {"above_pct": 5}}, destination=receiver)
    receiver.faults.reject({"1": "no"})
    ran = project.cli("run", "users_hook")
    assert ran.returncode == 3, ran.stderr
    listed = project.cli("alerts", "--json")
    assert listed.returncode == 0, listed.stderr
    (sync,) = json.loads(listed.stdout)
    states = {r["rule"]: r["state"] for r in sync["rules"]}
    assert states == {
        "failed": "ok",
        "guarded": "ok",
        "rejected_rate": "firing",
        "stale": "unknown",
    }
    assert len(channels.slack_messages()) == 1  # the CLI run sent the alert before exiting
    table = project.cli("alerts")
    assert "rejected_rate" in table.stdout and "firing" in table.stdout

    sent = project.cli("alerts", "test", "team_slack")
    assert sent.returncode == 0, sent.stderr
    assert "TEST" in channels.slack_messages()[-1]["text"]
    missing = project.cli("alerts", "test", "nope")
    assert missing.returncode == 2 and "unknown channel `nope`" in missing.stderr

    assert project.cli("alerts", "mute", "users_hook", "--rule", "rejected_rate").returncode == 0
    muted = json.loads(project.cli("alerts", "--json").stdout)[0]["rules"]
    assert {r["rule"]: r["muted"] for r in muted}["rejected_rate"] is True
    assert project.cli("alerts", "unmute", "users_hook", "--rule", "rejected_rate").returncode == 0
    bad = project.cli("alerts", "mute", "users_hook", "--rule", "loud")
    assert bad.returncode == 2 and "unknown rule `loud`" in bad.stderr
