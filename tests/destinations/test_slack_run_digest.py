"""Slack `mode: run_digest`: one message per run, within Slack's limits, acknowledged whole."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from backhaul.summary import RunStatus
from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.slack import SlackEmulator
from conftest import Builder
from destinations.test_slack import MAPPINGS
from destinations.test_slack import token_destination

pytestmark = pytest.mark.integration


def _slack(**limits: Any) -> Iterator[SlackEmulator]:
    emulator = SlackEmulator(messages_per_second=20, burst=5, **limits)
    with EmulatorServer(emulator):
        yield emulator


@pytest.fixture
def slack() -> Iterator[SlackEmulator]:
    yield from _slack()


def _url(slack: SlackEmulator) -> str:
    assert slack.server is not None
    return slack.server.url


def test_one_message_sums_up_the_whole_run_across_batches(
    project: Builder, slack: SlackEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.users(120)
    token_destination(
        project, _url(slack), monkeypatch, mode="run_digest", text="{{ email }} ({{ score }})"
    )
    project.sync("s", destination="slack", mappings=MAPPINGS, batch_size=7)

    first = project.run("s")

    assert first.status is RunStatus.SUCCEEDED and first.counts.succeeded == 120
    [message] = slack.posted("alerts")
    lines = (message.text or "").splitlines()
    assert lines[0] == "*s*: 120 rows (120 added · 0 changed · 0 removed; upsert)"
    assert lines[1:11] == [f"u{i}@example.com ({i})" for i in range(1, 11)]
    assert lines[11:] == ["…and 110 more"]
    assert message.blocks is not None and len(message.blocks) == 12  # title, 10 rows, more
    assert message.blocks[-1]["elements"][0]["text"] == "…and 110 more"

    project.sql("UPDATE users SET score = 500 WHERE id IN (3, 4)")
    second = project.run("s")

    assert second.counts.succeeded == 2
    assert len(slack.posted("alerts")) == 2
    latest = slack.posted("alerts")[-1].text or ""
    assert latest.splitlines() == [
        "*s*: 2 rows (0 added · 2 changed · 0 removed; upsert)",
        "u3@example.com (500)",
        "u4@example.com (500)",
    ]
    assert project.run("s").counts.planned == 0 and len(slack.posted("alerts")) == 2


def test_the_digest_stays_within_the_emulators_limits(
    project: Builder, monkeypatch: pytest.MonkeyPatch
) -> None:
    for slack in _slack(max_blocks=5, max_section_text=60, max_text_length=400):
        project.users(30, extra_columns="repeat('x', 200) AS bio")
        token_destination(
            project,
            _url(slack),
            monkeypatch,
            mode="run_digest",
            title="{{ count }} leads",
            text="{{ email }}: {{ bio }}",
            limits={"blocks": 5, "section_chars": 60, "text_chars": 400},
        )
        mappings = [*MAPPINGS, {"column": "bio", "field": "bio"}]
        project.sync("s", destination="slack", mappings=mappings)

        run = project.run("s")

        assert run.status is RunStatus.SUCCEEDED and run.counts.succeeded == 30
        [message] = slack.posted("alerts")
        text = message.text or ""
        assert len(text) <= 400
        assert message.blocks is not None and len(message.blocks) == 5  # title, 3 rows, more
        for block in message.blocks[:-1]:
            assert len(block["text"]["text"]) <= 60
        assert text.splitlines()[0] == "30 leads" and text.splitlines()[-1] == "…and 27 more"


def test_a_refused_digest_advances_none_of_its_rows(
    project: Builder, monkeypatch: pytest.MonkeyPatch
) -> None:
    for slack in _slack(max_blocks=4):  # Slack takes fewer blocks than configured
        project.users(9)
        token_destination(project, _url(slack), monkeypatch, mode="run_digest")
        project.sync("s", destination="slack", mappings=MAPPINGS)

        refused = project.run("s")

        assert refused.status is RunStatus.FAILED and refused.counts.rejected == 9
        assert refused.counts.succeeded == 0
        errors = {r.error for r in project.rows(refused.run_id, status="rejected")}
        assert len(errors) == 1 and next(iter(errors)).startswith("invalid_blocks")
        assert slack.posted("alerts") == []

        token_destination(
            project, _url(slack), monkeypatch, mode="run_digest", limits={"blocks": 4}
        )
        retried = project.run("s")

        assert retried.status is RunStatus.SUCCEEDED
        assert retried.counts.retried == 9 and retried.counts.succeeded == 9
        [message] = slack.posted("alerts")
        assert (message.text or "").startswith("*s*: 9 rows (0 added · 0 changed · 9 retried")


def test_a_digest_slack_keeps_failing_leaves_every_row_pending(
    project: Builder, slack: SlackEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.users(5)
    token_destination(project, _url(slack), monkeypatch, mode="run_digest")
    project.sync("s", destination="slack", mappings=MAPPINGS)
    slack.faults.fail_next(20, 500)

    failed = project.run("s")

    assert failed.status is RunStatus.FAILED and failed.counts.succeeded == 0
    assert slack.posted("alerts") == []
    slack.faults.clear()
    again = project.run("s")
    assert again.counts.added == 5 and again.counts.succeeded == 5
    assert len(slack.posted("alerts")) == 1


def test_a_row_whose_template_fails_is_refused_alone(
    project: Builder, slack: SlackEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.users(4)
    template = "{% if id == 2 %}{{ score | divided_by: 0 }}{% endif %}{{ email }}"
    token_destination(project, _url(slack), monkeypatch, mode="run_digest", text=template)
    project.sync("s", destination="slack", mappings=MAPPINGS)

    run = project.run("s")

    assert run.status is RunStatus.PARTIAL
    assert run.counts.succeeded == 3 and run.counts.rejected == 1
    assert {r.key for r in project.rows(run.run_id, status="rejected")} == {"2"}
    [message] = slack.posted("alerts")
    assert (message.text or "").splitlines()[1:] == [
        "u1@example.com",
        "u3@example.com",
        "u4@example.com",
    ]


def test_title_template_variables_are_checked(
    project: Builder, slack: SlackEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.users(2)
    token_destination(
        project, _url(slack), monkeypatch, mode="run_digest", title="{{ count }} {{ nope }}"
    )
    project.sync("s", destination="slack", mappings=MAPPINGS)

    run = project.run("s")

    assert run.refused and any("title" in p and "nope" in p for p in run.problems)
    assert slack.posted("alerts") == []
