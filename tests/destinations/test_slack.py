"""Slack: the emulator's contract over plain HTTP, and the connector through real syncs."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from backhaul import api
from backhaul.calls import MemoryRecorder
from backhaul.destinations.base import DestinationContext
from backhaul.destinations.slack import SlackConfig
from backhaul.destinations.slack import SlackDestination
from backhaul.errors import DestinationError
from backhaul.errors import FailureType
from backhaul.summary import RunStatus
from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.slack import DEFAULT_TOKEN
from backhaul.testing.emulators.slack import SlackEmulator
from conftest import Builder

pytestmark = pytest.mark.integration

FAST_RETRY = {"max_attempts": 3, "base_delay": 0.01, "max_delay": 0.05}
FAST_RATE = {"requests": 10, "per_seconds": 1}  # the test emulator takes 20 a second
MAPPINGS = [
    {"column": "id", "field": "id"},
    {"column": "email", "field": "email"},
    {"column": "name", "field": "name"},
    {"column": "score", "field": "score"},
]
TOO_MANY_BLOCKS = (
    '[{% for i in (1..51) %}{"type": "divider"}{% unless forloop.last %},{% endunless %}'
    "{% endfor %}]"
)


def serve(emulator: SlackEmulator) -> Iterator[SlackEmulator]:
    with EmulatorServer(emulator):
        yield emulator


@pytest.fixture
def slack() -> Iterator[SlackEmulator]:
    """A Slack emulator taking 20 messages a second per channel (bursts of 5)."""
    yield from serve(SlackEmulator(messages_per_second=20, burst=5))


@pytest.fixture
def base(slack: SlackEmulator) -> str:
    assert slack.server is not None
    return slack.server.url


def api_post(
    base: str, method: str, body: Any, token: str | None = DEFAULT_TOKEN
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{base}/api/{method}", json=body, headers=headers)


def texts(slack: SlackEmulator, channel: str = "alerts") -> list[str | None]:
    return [m.text for m in slack.posted(channel)]


# -- the emulator's contract ------------------------------------------------------------------


def test_post_message_needs_a_valid_token_and_answers_200_with_ok_flag(base: str) -> None:
    missing = api_post(base, "chat.postMessage", {"channel": "#alerts", "text": "hi"}, token=None)
    wrong = api_post(base, "chat.postMessage", {"channel": "#alerts", "text": "hi"}, "xoxb-bad")
    good = api_post(base, "chat.postMessage", {"channel": "#alerts", "text": "hi"})

    assert (missing.status_code, missing.json()) == (200, {"ok": False, "error": "not_authed"})
    assert (wrong.status_code, wrong.json()) == (200, {"ok": False, "error": "invalid_auth"})
    assert good.status_code == 200 and good.json()["ok"] is True
    assert good.json()["channel"] == "C00000ALERTS"
    assert good.json()["message"]["ts"] == good.json()["ts"]


def test_auth_test_reports_the_bot_or_invalid_auth(base: str) -> None:
    assert api_post(base, "auth.test", {}).json()["user_id"] == "U0BACKHAUL"
    assert api_post(base, "auth.test", {}, "xoxb-nope").json() == {
        "ok": False,
        "error": "invalid_auth",
    }


def test_messages_are_kept_per_channel_with_ts_and_thread(base: str, slack: SlackEmulator) -> None:
    first = api_post(base, "chat.postMessage", {"channel": "C00000ALERTS", "text": "one"}).json()
    api_post(
        base, "chat.postMessage", {"channel": "alerts", "text": "two", "thread_ts": first["ts"]}
    )
    api_post(base, "chat.postMessage", {"channel": "#general", "text": "elsewhere"})

    state = slack.state()["channels"]
    alerts = state["C00000ALERTS"]["messages"]
    assert [m["text"] for m in alerts] == ["one", "two"]
    assert alerts[1]["thread_ts"] == first["ts"] and alerts[0]["ts"] < alerts[1]["ts"]
    assert [m["text"] for m in state["C0000GENERAL"]["messages"]] == ["elsewhere"]
    assert httpx.get(f"{base}/_emulator/state").json()["channels"] == state


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"channel": "#nowhere", "text": "x"}, "channel_not_found"),
        ({"channel": "#alerts"}, "no_text"),
        ({"channel": "#alerts", "text": "x" * 40_001}, "msg_too_long"),
        ({"channel": "#alerts", "blocks": [{"type": "divider"}] * 51}, "invalid_blocks"),
        ({"channel": "#alerts", "blocks": [{"text": "no type"}]}, "invalid_blocks"),
        ({"channel": "#alerts", "attachments": [{}] * 101, "text": "x"}, "too_many_attachments"),
    ],
)
def test_post_message_refuses_what_slack_refuses(
    base: str, slack: SlackEmulator, body: dict[str, Any], error: str
) -> None:
    answer = api_post(base, "chat.postMessage", body)

    assert answer.status_code == 200
    assert answer.json()["ok"] is False and answer.json()["error"] == error
    assert slack.posted("alerts") == []


def test_invalid_blocks_say_why_in_response_metadata(base: str) -> None:
    answer = api_post(base, "chat.postMessage", {"channel": "#alerts", "blocks": [{}] * 51})

    notes = answer.json()["response_metadata"]["messages"]
    assert "no more than 50 items allowed [json-pointer:/blocks]" in notes[0]
    assert any("missing required field: type" in n for n in notes)


def test_webhook_answers_plain_text_and_its_path_is_the_secret(
    base: str, slack: SlackEmulator
) -> None:
    url = slack.webhook_url("alerts")
    slack.archive("general")
    archived = slack.webhook_url("general")

    good = httpx.post(url, json={"text": "hello", "channel": "#general"})
    unknown = httpx.post(f"{base}/services/T0EMULATOR/B0/guess", json={"text": "x"})
    bad_json = httpx.post(url, content=b"{not json", headers={"Content-Type": "application/json"})
    gone = httpx.post(archived, json={"text": "x"})

    assert (good.status_code, good.text) == (200, "ok")
    assert (unknown.status_code, unknown.text) == (404, "no_service")
    assert (bad_json.status_code, bad_json.text) == (400, "invalid_payload")
    assert (gone.status_code, gone.text) == (410, "channel_is_archived")
    assert texts(slack) == ["hello"]  # a webhook posts to its own channel only
    assert slack.posted("general") == []


def test_each_channel_has_its_own_rate_window() -> None:
    for slack in serve(SlackEmulator(messages_per_second=0.5)):
        assert slack.server is not None
        base = slack.server.url
        first = api_post(base, "chat.postMessage", {"channel": "#alerts", "text": "1"})
        over = api_post(base, "chat.postMessage", {"channel": "#alerts", "text": "2"})
        other = api_post(base, "chat.postMessage", {"channel": "#general", "text": "3"})
        hook = httpx.post(slack.webhook_url("alerts"), json={"text": "4"})

        assert first.json()["ok"] is True and other.json()["ok"] is True
        assert over.status_code == 429 and over.json() == {"ok": False, "error": "ratelimited"}
        assert over.headers["Retry-After"] == "2"
        assert (hook.status_code, hook.headers["Retry-After"]) == (429, "2")
        assert texts(slack) == ["1"]
        throttled = slack.state()["throttled"]
        assert [(t["channel"], t["retry_after"]) for t in throttled] == [("C00000ALERTS", 2)] * 2


def test_fault_switches_use_slacks_shapes(base: str, slack: SlackEmulator) -> None:
    slack.faults.reject({"blocked text": "restricted_content"})
    refused = api_post(base, "chat.postMessage", {"channel": "#alerts", "text": "blocked text"})
    hook_refused = httpx.post(slack.webhook_url("alerts"), json={"text": "blocked text"})
    slack.faults.rate_limit_next(1, retry_after=3)
    limited = api_post(base, "chat.postMessage", {"channel": "#alerts", "text": "x"})
    slack.faults.fail_next(1, 500)
    failed = api_post(base, "chat.postMessage", {"channel": "#alerts", "text": "x"})

    assert refused.json() == {"ok": False, "error": "restricted_content"}
    assert (hook_refused.status_code, hook_refused.text) == (400, "restricted_content")
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "3")
    assert (failed.status_code, failed.json()["error"]) == (500, "internal_error")
    assert slack.posted("alerts") == []

    slack.reset()
    assert slack.state()["throttled"] == [] and slack.faults.rejects == {}


# -- the connector through real syncs --------------------------------------------------------


def token_destination(
    project: Builder, base: str, monkeypatch: pytest.MonkeyPatch, **extra: Any
) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", DEFAULT_TOKEN)
    config: dict[str, Any] = {
        "type": "slack",
        "token": "${env:SLACK_BOT_TOKEN}",
        "channel": "#alerts",
        "base_url": f"{base}/api",
        "rate_limit": FAST_RATE,
        "retry": FAST_RETRY,
        "mode": "row",  # these tests are about one message per record
        **extra,
    }
    project.destination("slack", **config)


def webhook_destination(
    project: Builder, slack: SlackEmulator, monkeypatch: pytest.MonkeyPatch, **extra: Any
) -> str:
    url = slack.webhook_url("alerts")
    monkeypatch.setenv("SLACK_WEBHOOK_URL", url)
    project.destination(
        "slack",
        type="slack",
        webhook_url="${env:SLACK_WEBHOOK_URL}",
        rate_limit=FAST_RATE,
        retry=FAST_RETRY,
        **{"mode": "row", **extra},  # these tests are about one message per record
    )
    return url


def recorded_texts(project: Builder, run_id: str) -> list[str]:
    with api.open_store(project.load()) as store:
        calls = store.calls(run_id, limit=10_000)
    assert calls, "the run recorded no HTTP call"
    return [
        text
        for c in calls
        for text in (c.url, json.dumps(c.request_headers), c.request_body, c.response_body, c.error)
        if text
    ]


def test_row_mode_posts_one_liquid_message_per_changed_row(
    project: Builder, base: str, slack: SlackEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.users(3)
    token_destination(
        project, base, monkeypatch, text="{{ operation }}: {{ name }} scored {{ score }}"
    )
    project.sync("s", destination="slack", mappings=MAPPINGS)

    first = project.run("s")
    assert first.status is RunStatus.SUCCEEDED and first.counts.succeeded == 3
    assert texts(slack) == [f"upsert: name {i} scored {i}" for i in (1, 2, 3)]

    assert project.run("s").counts.planned == 0  # nothing changed: nothing posted
    project.sql("UPDATE users SET score = 50 WHERE id = 2")
    assert project.run("s").counts.succeeded == 1
    assert texts(slack)[3:] == ["upsert: name 2 scored 50"]
    for text in recorded_texts(project, first.run_id):
        assert DEFAULT_TOKEN not in text


def test_digest_mode_sums_up_a_batch_and_never_records_the_webhook_url(
    project: Builder, slack: SlackEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.users(12)
    url = webhook_destination(
        project,
        slack,
        monkeypatch,
        mode="digest",
        max_records_in_digest=3,
        text="{{ count }} leads became PQLs{% for r in records %}\n• {{ r.email }} ({{ r._key }})"
        "{% endfor %}{% if more > 0 %}\n…and {{ more }} more{% endif %}",
    )
    project.sync("s", destination="slack", mappings=MAPPINGS)

    run = project.run("s")

    assert run.status is RunStatus.SUCCEEDED and run.counts.succeeded == 12
    [message] = slack.posted("alerts")
    assert message.via == "webhook"
    lines = (message.text or "").splitlines()
    assert lines[0] == "12 leads became PQLs" and lines[-1] == "…and 9 more"
    assert len(lines) == 5 and "• u1@example.com (1)" in lines
    secret = url.rsplit("/", 1)[1]
    recorded = recorded_texts(project, run.run_id)
    assert "***" in recorded[0]  # the call is recorded, with its URL masked
    for text in recorded:
        assert url not in text and secret not in text


def test_block_kit_template_is_rendered_and_posted(
    project: Builder, base: str, slack: SlackEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.users(2)
    project.sql("UPDATE users SET name = 'Ann \"the\" Lead' WHERE id = 1")
    blocks = (
        '[{"type": "header", "text": {"type": "plain_text", "text": {{ name | json }}}},'
        ' {"type": "section", "text": {"type": "mrkdwn", "text": "*Score:* {{ score }}"}}]'
    )
    token_destination(project, base, monkeypatch, text="New lead {{ email }}", blocks=blocks)
    project.sync("s", destination="slack", mappings=MAPPINGS)

    assert project.run("s").status is RunStatus.SUCCEEDED

    first = slack.posted("alerts")[0]
    assert first.text == "New lead u1@example.com"
    assert first.blocks == [
        {"type": "header", "text": {"type": "plain_text", "text": 'Ann "the" Lead'}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "*Score:* 1"}},
    ]


def test_too_many_blocks_are_rejected_with_slacks_error(
    project: Builder, base: str, slack: SlackEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.users(2)
    token_destination(project, base, monkeypatch, blocks=TOO_MANY_BLOCKS)
    project.sync("s", destination="slack", mappings=MAPPINGS)

    run = project.run("s")

    # Every record was refused: nothing was delivered, so the run failed.
    assert run.status is RunStatus.FAILED and run.counts.rejected == 2
    assert run.error is not None and "2 rejected by the destination" in run.error
    errors = {r.key: r.error or "" for r in project.rows(run.run_id, status="rejected")}
    assert set(errors) == {"1", "2"}
    assert all(e.startswith("invalid_blocks: 51 blocks") for e in errors.values())
    assert slack.posted("alerts") == []
    assert [c.path for c in slack.calls] == ["/api/auth.test"]  # refused before posting


def test_slack_refusing_a_message_rejects_its_record(
    project: Builder, monkeypatch: pytest.MonkeyPatch
) -> None:
    for slack in serve(SlackEmulator(messages_per_second=20, max_blocks=2)):
        assert slack.server is not None
        project.users(3)
        three = '[{"type": "divider"}, {"type": "divider"}, {"type": "divider"}]'
        blocks = f'{{% if id == 2 %}}{three}{{% else %}}[{{"type": "divider"}}]{{% endif %}}'
        slack.faults.reject({"lead 3": "msg_blocked_by_policy"})
        token_destination(
            project, slack.server.url, monkeypatch, text="lead {{ id }}", blocks=blocks
        )
        project.sync("s", destination="slack", mappings=MAPPINGS)

        run = project.run("s")

        errors = {r.key: r.error for r in project.rows(run.run_id, status="rejected")}
        assert errors == {
            "2": "invalid_blocks: [ERROR] no more than 2 items allowed [json-pointer:/blocks]",
            "3": "msg_blocked_by_policy",
        }
        assert texts(slack) == ["lead 1"]
        slack.faults.clear()
        retry = project.run("s")  # refused rows stay pending and are posted once Slack takes them
        assert retry.counts.planned == 2 and retry.counts.succeeded == 1
        assert texts(slack) == ["lead 1", "lead 3"]


def test_one_message_per_second_per_channel_is_respected(
    project: Builder, monkeypatch: pytest.MonkeyPatch
) -> None:
    for slack in serve(SlackEmulator()):  # Slack's own pace: 1 message a second
        assert slack.server is not None
        project.users(3)
        token_destination(project, slack.server.url, monkeypatch, rate_limit={"requests": 1})
        project.sync("s", destination="slack", mappings=MAPPINGS)

        run = project.run("s")

        assert run.status is RunStatus.SUCCEEDED
        state = slack.state()
        messages = state["channels"]["C00000ALERTS"]["messages"]
        assert len(messages) == 3
        # The connector paces posts after each answer, so the window never had to refuse one.
        assert state["throttled"] == []
        posted = [m["at"] for m in messages]
        assert all(b - a >= 0.99 for a, b in itertools.pairwise(posted))


def test_row_mode_keeps_the_rest_pending_rather_than_post_twice(
    project: Builder, monkeypatch: pytest.MonkeyPatch
) -> None:
    for slack in serve(SlackEmulator(messages_per_second=0.2)):
        assert slack.server is not None
        project.users(3)
        token_destination(
            project,
            slack.server.url,
            monkeypatch,
            text="lead {{ id }}",
            retry={"max_attempts": 1},
            rate_limit={"requests": 50},
        )
        project.sync("s", destination="slack", mappings=MAPPINGS)

        run = project.run("s")

        assert texts(slack) == ["lead 1"]
        rejected = {r.key: r.error or "" for r in project.rows(run.run_id, status="rejected")}
        assert set(rejected) == {"2", "3"}
        assert all("429" in e and "sent again on the next run" in e for e in rejected.values())
        assert project.plan("s").counts.planned == 2


def test_wrong_token_fails_the_run_with_a_config_error(
    project: Builder, base: str, slack: SlackEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.users(2)
    token_destination(project, base, monkeypatch)
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-wrong-token")
    project.sync("s", destination="slack", mappings=MAPPINGS)

    run = project.run("s")

    assert run.status is RunStatus.FAILED
    assert run.error == (
        "slack refused the token (invalid_auth): set `token` to a valid bot token (xoxb-...)"
    )
    assert slack.posted("alerts") == []
    assert [c.path for c in slack.calls] == ["/api/auth.test"]
    for text in recorded_texts(project, run.run_id):
        assert "xoxb-wrong-token" not in text


def test_removals_are_not_supported(
    project: Builder, base: str, slack: SlackEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.users(3)
    token_destination(project, base, monkeypatch)
    project.sync("s", destination="slack", mappings=MAPPINGS, mode="mirror", max_remove_pct=100)

    run = project.run("s")

    # Refused before anything is read or sent: mirror mode would delete messages.
    assert run.status is RunStatus.FAILED and run.exit_code == 2
    assert run.error is not None and "set `on_remove: nothing`" in run.error
    assert run.error.startswith("syncs/s.yml:")
    assert slack.posted("alerts") == [] and slack.calls == []


def test_unknown_webhook_is_a_config_error(
    project: Builder, base: str, slack: SlackEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.users(2)
    monkeypatch.setenv("SLACK_WEBHOOK_URL", f"{base}/services/T0EMULATOR/B0/revoked")
    project.destination(
        "slack", type="slack", webhook_url="${env:SLACK_WEBHOOK_URL}", retry=FAST_RETRY
    )
    project.sync("s", destination="slack", mappings=MAPPINGS)

    run = project.run("s")

    assert run.status is RunStatus.FAILED
    assert run.error is not None and run.error.startswith("slack refused the webhook (no_service)")
    assert len(slack.calls) == 1
    for text in recorded_texts(project, run.run_id):
        assert "revoked" not in text


# -- config and check ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ({}, "either `webhook_url` or `token`"),
        ({"token": "xoxb-1", "webhook_url": "https://hooks.slack.com/services/T/B/x"}, "not both"),
        ({"token": "xoxb-1"}, "`channel` is required"),
        ({"webhook_url": "hooks.slack.com/services/T/B/x"}, "must start with https://"),
        ({"webhook_url": "https://hooks.slack.com"}, "has no path"),
        ({"token": "xoxb-1", "channel": "#a", "text": "{% if %}"}, "not valid Liquid"),
    ],
)
def test_config_says_what_is_wrong(config: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        SlackConfig.model_validate({"type": "slack", **config})


def test_check_calls_auth_test_or_only_looks_at_the_webhook_url(
    base: str, slack: SlackEmulator, tmp_path: Path
) -> None:
    def destination(**config: Any) -> SlackDestination:
        cfg = SlackConfig.model_validate({"type": "slack", **config})
        return SlackDestination(cfg, DestinationContext(tmp_path, MemoryRecorder()))

    asyncio.run(destination(token=DEFAULT_TOKEN, channel="#alerts", base_url=f"{base}/api").check())
    bad = destination(token="xoxb-nope", channel="#alerts", base_url=f"{base}/api")
    with pytest.raises(DestinationError) as caught:
        asyncio.run(bad.check())
    assert caught.value.failure is FailureType.CONFIG
    assert "invalid_auth" in caught.value.message

    calls = len(slack.calls)
    asyncio.run(destination(webhook_url=slack.webhook_url("alerts")).check())
    assert len(slack.calls) == calls  # checking a webhook posts nothing
