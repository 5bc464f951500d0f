"""The conformance suite against the Slack emulator, through chat.postMessage and a webhook.

Slack has no record identity, so the suite reads the channel as "the latest message per
match value": each message's text is the record's email and its section block carries the
name and score. The update and insert checks assume a destination that knows which records
exist (update rejects missing ones, insert leaves existing ones alone); Slack cannot, so the
target declares only upsert and the equivalent checks for messages are at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backhaul.destinations.base import Operation
from backhaul.summary import RunStatus
from backhaul.testing.conformance import CHECKS
from backhaul.testing.conformance import Harness
from backhaul.testing.conformance import Target
from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.slack import DEFAULT_TOKEN
from backhaul.testing.emulators.slack import SlackEmulator

pytestmark = pytest.mark.integration

TEXT = "{{ email }}"
BLOCKS = (
    '[{"type": "section", "text": {"type": "plain_text", "text": {{ email | json }}}, '
    '"fields": [{"type": "plain_text", "text": {{ name | json }}}, '
    '{"type": "plain_text", "text": "{{ score }}"}]}]'
)
COMMON = {
    "mode": "row",  # the conformance checks count one message per record
    "text": TEXT,
    "blocks": BLOCKS,
    "rate_limit": {"requests": 500},
    "retry": {"max_attempts": 5, "base_delay": 0.01, "max_delay": 0.05},
}


@pytest.fixture
def slack() -> Iterator[SlackEmulator]:
    emulator = SlackEmulator(messages_per_second=1000, burst=50)
    with EmulatorServer(emulator):
        yield emulator


def channel_view(slack: SlackEmulator) -> dict[str, dict[str, Any]]:
    """The latest message per email in #alerts, as a record."""
    records: dict[str, dict[str, Any]] = {}
    for message in slack.posted("alerts"):
        assert message.text is not None and message.blocks is not None
        name, score = (f["text"] for f in message.blocks[0]["fields"])
        records[message.text] = {"email": message.text, "name": name, "score": score}
    return records


def make_target(slack: SlackEmulator, via: str) -> Target:
    assert slack.server is not None
    base = slack.server.url
    if via == "token":
        destination = {
            "type": "slack",
            "token": "${env:SLACK_BOT_TOKEN}",
            "channel": "#alerts",
            "base_url": f"{base}/api",
            **COMMON,
        }
        bad = {**destination, "token": "${env:SLACK_BAD_TOKEN}"}
        env = {"SLACK_BOT_TOKEN": DEFAULT_TOKEN, "SLACK_BAD_TOKEN": "xoxb-revoked-0000"}
        secrets = [DEFAULT_TOKEN, "xoxb-revoked-0000"]
    else:
        url = slack.webhook_url("alerts")
        destination = {"type": "slack", "webhook_url": "${env:SLACK_WEBHOOK_URL}", **COMMON}
        bad = {**destination, "webhook_url": "${env:SLACK_BAD_WEBHOOK_URL}"}
        revoked = f"{base}/services/T0EMULATOR/B0REVOKED/revoked-webhook-secret"
        env = {"SLACK_WEBHOOK_URL": url, "SLACK_BAD_WEBHOOK_URL": revoked}
        secrets = [url, url.rsplit("/", 1)[1], "revoked-webhook-secret"]
    return Target(
        destination=destination,
        env=env,
        match_field="email",
        read=lambda: channel_view(slack),
        operations=frozenset({Operation.UPSERT}),
        faults=slack.faults,
        calls=lambda: list(slack.calls),
        bad_destination=bad,
        secrets=secrets,
    )


# Through a webhook, only the checks whose answers differ from the Web API's run again.
WEBHOOK_CHECKS = [
    "rejection_mapped_to_key",
    "rate_limit_respected",
    "fatal_fails_fast",
    "no_secret_in_calls",
]


@pytest.mark.parametrize(
    ("check", "via"),
    [(name, "token") for name in CHECKS] + [(name, "webhook") for name in WEBHOOK_CHECKS],
)
def test_conformance(check: str, via: str, slack: SlackEmulator, tmp_path: Path) -> None:
    CHECKS[check](make_target(slack, via), tmp_path)


# -- the message equivalents of the update and insert checks -------------------------------


def test_insert_posts_new_rows_once_and_never_changes(
    slack: SlackEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = make_target(slack, "token")
    monkeypatch.setenv("SLACK_BOT_TOKEN", DEFAULT_TOKEN)
    h = Harness(target, tmp_path, "insert")
    sync = h.sync("people_insert", mode="insert")

    first = h.run(sync)
    h.sql("UPDATE people SET name = 'Changed' WHERE id <= 5")
    h.sql(f"INSERT INTO people VALUES (21, 'person21@{h.domain}', 'Person 21', 1)")
    later = h.run(sync)

    assert first.status is RunStatus.SUCCEEDED and first.counts.succeeded == 20
    assert later.status is RunStatus.SUCCEEDED and later.counts.added == 1
    posted = [m.text for m in slack.posted("alerts")]
    assert len(posted) == 21 and posted[-1] == h.email(21)  # changed rows were not announced
    assert channel_view(slack)[h.email(1)]["name"] == "Person 1"


def test_update_announces_every_change_since_slack_has_no_identity(
    slack: SlackEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = make_target(slack, "token")
    monkeypatch.setenv("SLACK_BOT_TOKEN", DEFAULT_TOKEN)
    h = Harness(target, tmp_path, "update")
    h.use_destination({**target.destination, "text": "{{ operation }} {{ email }}", "blocks": None})
    sync = h.sync("people_update", mode="update")

    first = h.run(sync)
    h.sql("UPDATE people SET score = score + 1 WHERE id = 4")
    later = h.run(sync)

    # Nothing is rejected as missing: a message needs no existing record.
    assert first.status is RunStatus.SUCCEEDED and first.counts.succeeded == 20
    assert later.counts.succeeded == 1 and later.counts.rejected == 0
    assert [m.text for m in slack.posted("alerts")][-1] == f"update {h.email(4)}"
