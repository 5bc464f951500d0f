"""`run`, `plan` and the web app's Run now check a sync exactly as `validate` does.

Each case is a project that loads but would go wrong at run time (a template typo, an
unknown filter, a Slack sync in mirror mode...). The real command runs in a fresh
interpreter against real receivers; nothing may arrive and the snapshot must not change.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from backhaul import api
from backhaul.summary import RunStatus
from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.slack import SlackEmulator
from backhaul.testing.receiver import WebhookReceiver
from backhaul.testing.server import LoopbackServer
from backhaul.web.app import close_app
from backhaul.web.app import create_app
from backhaul.web.auth import Role
from conftest import Builder

pytestmark = pytest.mark.integration

TYPO = [
    {"column": "id", "field": "id"},
    {"template": "{{ frist_name }} {{ last_name }}", "field": "name"},
]


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def _line_of(path: Path, needle: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(i for i, text in enumerate(lines, 1) if needle in text)


def _people(project: Builder, n: int = 5) -> None:
    project.users(n, "'First ' || i AS first_name, 'Last ' || i AS last_name")


def _one_error(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.fixture
def slack() -> Iterator[SlackEmulator]:
    emulator = SlackEmulator(messages_per_second=20, burst=5)
    with EmulatorServer(emulator):
        yield emulator


def test_template_typo_fails_run_with_exit_2_and_sends_nothing(
    project: Builder, receiver: WebhookReceiver
) -> None:
    _people(project)
    project.webhook_destination(receiver)
    good = {"template": "{{ first_name }} {{ last_name }}", "field": "name"}
    project.sync("s", destination="hook", mappings=[TYPO[0], good])
    assert project.cli("run", "s").returncode == 0  # a first run delivers every row
    assert len(receiver.records) == 5
    receiver.reset()
    project.sql("UPDATE users SET last_name = 'Changed' WHERE id = 1")
    project.sync("s", destination="hook", mappings=TYPO)
    before = _digest(project.state_file("s"))

    result = project.cli("run", "s")

    assert result.returncode == 2, result.stdout + result.stderr
    line = _one_error(result.stderr)
    where = f"syncs/s.yml:{_line_of(project.root / 'syncs/s.yml', 'frist_name')}"
    assert line.startswith(f"error: {where}: mappings.1.template: ")
    assert "template variable `frist_name` is not a column of model `users`" in line
    assert "did you mean `first_name`?" in line
    assert result.stdout.strip() == ""
    assert receiver.calls == []
    assert _digest(project.state_file("s")) == before
    # The refused run is on record, with the one line, and nothing counted as sent.
    with api.open_store(project.load()) as store:
        last = store.last_run("s")
    assert last is not None and last.status is RunStatus.FAILED
    assert last.error is not None and "frist_name" in last.error
    assert last.counts.succeeded == 0 and last.counts.added == 0


def test_plan_and_validate_give_the_same_line(project: Builder, receiver: WebhookReceiver) -> None:
    _people(project)
    project.webhook_destination(receiver)
    project.sync("s", destination="hook", mappings=TYPO)

    planned = project.cli("plan", "s")
    validated = project.cli("validate")

    assert planned.returncode == validated.returncode == 2
    assert _one_error(planned.stderr) == _one_error(validated.stderr)
    assert not project.state_file("s").exists()


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ("{{ first_name | upcsae }}", "unknown Liquid filter `upcsae`"),
        ("{{ first_name | json | nosuch: 2 }}", "unknown Liquid filter `nosuch`"),
    ],
)
def test_unknown_filter_is_refused_by_validate_and_run(
    project: Builder, receiver: WebhookReceiver, template: str, fragment: str
) -> None:
    _people(project)
    project.webhook_destination(receiver)
    project.sync("s", destination="hook", mappings=[TYPO[0], {"template": template, "field": "n"}])

    for args in (("validate",), ("run", "s")):
        result = project.cli(*args)
        assert result.returncode == 2, result.stdout + result.stderr
        line = _one_error(result.stderr)
        assert "syncs/s.yml:" in line and ": mappings.1.template: " in line and fragment in line
    assert receiver.calls == []


def test_the_json_filter_the_runtime_knows_passes_validate(
    project: Builder, receiver: WebhookReceiver
) -> None:
    _people(project, 2)
    project.webhook_destination(receiver)
    project.sync(
        "s",
        destination="hook",
        mappings=[TYPO[0], {"template": "{{ last_name | json }}", "field": "n"}],
    )

    assert project.cli("validate").returncode == 0
    assert project.cli("run", "s").returncode == 0
    assert receiver.records["1"]["n"] == '"Last 1"'


def test_liquid_syntax_error_is_one_line_naming_the_file(
    project: Builder, receiver: WebhookReceiver
) -> None:
    _people(project)
    project.webhook_destination(receiver)
    project.write(
        "syncs/s.yml",
        "model: users\ndestination: hook\nmappings:\n  - column: id\n    field: id\n"
        "  - field: name\n    template: |\n      Hello\n      {{ first_name | }\n",
    )

    result = project.cli("run", "s")

    assert result.returncode == 2
    line = _one_error(result.stderr)
    where = _line_of(project.root / "syncs/s.yml", "template: |")
    assert line.startswith(
        f"error: syncs/s.yml:{where}: mappings.1.template: the template does not parse"
    )
    assert "(line 2 of the template)" in line
    assert receiver.calls == []


def test_slack_sync_in_mirror_mode_is_refused_up_front(
    project: Builder, slack: SlackEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.users(3)
    monkeypatch.setenv("SLACK_WEBHOOK_URL", slack.webhook_url("alerts"))
    project.destination("slack", type="slack", webhook_url="${env:SLACK_WEBHOOK_URL}")
    project.sync("s", destination="slack", mode="mirror")

    result = project.cli("run", "s")

    assert result.returncode == 2
    line = _one_error(result.stderr)
    where = _line_of(project.root / "syncs/s.yml", "mode:")
    assert line.startswith(f"error: syncs/s.yml:{where}: mode: ")
    assert "the `slack` destination cannot delete records" in line
    assert "set `on_remove: nothing`" in line
    assert slack.calls == [] and slack.posted("alerts") == []
    assert not project.state_file("s").exists()


def test_an_on_remove_the_destination_cannot_do_names_on_remove(
    project: Builder, slack: SlackEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.users(3)
    monkeypatch.setenv("SLACK_WEBHOOK_URL", slack.webhook_url("alerts"))
    project.destination("slack", type="slack", webhook_url="${env:SLACK_WEBHOOK_URL}")
    project.sync("s", destination="slack", on_remove="clear")

    result = project.cli("validate")

    assert result.returncode == 2
    line = _one_error(result.stderr)
    assert (
        f"syncs/s.yml:{_line_of(project.root / 'syncs/s.yml', 'on_remove:')}: on_remove: " in line
    )
    assert "on_remove `clear` needs the `slack` destination to clear records" in line


def test_zendesk_match_field_is_checked_before_anything_is_sent(project: Builder) -> None:
    project.users(3)
    project.destination(
        "zd",
        type="zendesk",
        subdomain="acme",
        email="a@example.com",
        api_token="t",
        base_url="http://127.0.0.1:9",
    )
    project.sync("s", destination="zd", object="users")

    result = project.cli("run", "s")

    assert result.returncode == 2
    line = _one_error(result.stderr)
    assert ": match.fields: zendesk users are matched by external_id or email" in line


def test_web_run_now_refuses_a_broken_sync_and_records_why(
    project: Builder, receiver: WebhookReceiver
) -> None:
    _people(project)
    project.webhook_destination(receiver)
    project.sync("s", destination="hook", mappings=TYPO)
    app = create_app(project.root)
    try:
        app.state.users.add("op", "operator-password-1", Role.OPERATOR)
        token, _ = app.state.users.create_token("op", "tests")
        server = LoopbackServer(app, name="backhaul-web").start()
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as client:
            started = client.post("/api/v1/syncs/s/runs", json={})
            assert started.status_code == 202, started.text
            run_id = started.json()["run_id"]
            for _ in range(300):
                run = client.get(f"/api/v1/runs/{run_id}").json()
                if run["status"] != "running":
                    break
                time.sleep(0.1)
            page = client.get(f"/runs/{run_id}")
        server.stop()
    finally:
        close_app(app)

    assert run["status"] == "failed"
    assert "syncs/s.yml:" in run["error"] and "`frist_name`" in run["error"]
    assert "frist_name" in page.text
    assert receiver.calls == []
    assert not project.state_file("s").exists()


def test_a_message_template_reading_an_unmapped_field_is_refused(
    project: Builder, slack: SlackEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.users(3)
    monkeypatch.setenv("SLACK_WEBHOOK_URL", slack.webhook_url("alerts"))
    project.destination(
        "slack",
        type="slack",
        webhook_url="${env:SLACK_WEBHOOK_URL}",
        text="New user {{ emial }} ({{ key }})",
    )
    project.sync("s", destination="slack")

    result = project.cli("run", "s")

    assert result.returncode == 2
    line = _one_error(result.stderr)
    assert f"syncs/s.yml:{_line_of(project.root / 'syncs/s.yml', 'mappings:')}: mappings: " in line
    assert "the slack destination's `text` reads `emial`, which the sync does not map" in line
    assert slack.calls == []


def test_a_webhook_body_reading_only_what_it_is_given_passes(
    project: Builder, receiver: WebhookReceiver
) -> None:
    project.users(2)
    project.destination(
        "hook",
        type="webhook",
        url=receiver.url,
        mode="row",
        body_template='{"id": {{ id }}, "email": {{ record.email | json }}, "op": "{{ operation }}"}',
    )
    project.sync("s", destination="hook")

    assert project.cli("validate").returncode == 0
    assert project.cli("run", "s").returncode == 0
    assert receiver.records["1"]["email"] == "u1@example.com"


def test_zendesk_match_field_from_the_primary_key_passes_the_checks(project: Builder) -> None:
    project.model("people", "SELECT 'a@example.com' AS email, 'A' AS name", primary_key="email")
    project.destination(
        "zd",
        type="zendesk",
        subdomain="acme",
        email="a@example.com",
        api_token="t",
    )
    project.sync(
        "s",
        model="people",
        destination="zd",
        object="users",
        mappings=[{"column": "email", "field": "email"}, {"column": "name", "field": "name"}],
    )

    assert project.cli("validate").returncode == 0


def test_membership_mode_needs_a_destination_that_keeps_lists(
    project: Builder, receiver: WebhookReceiver
) -> None:
    project.users(3)
    project.webhook_destination(receiver)
    project.sync("s", destination="hook", mode="membership")

    result = project.cli("run", "s")

    assert result.returncode == 2
    line = _one_error(result.stderr)
    where = _line_of(project.root / "syncs/s.yml", "mode:")
    assert line.startswith(f"error: syncs/s.yml:{where}: mode: ")
    assert "mode `membership` needs a destination that keeps lists or audiences" in line
    assert "use mode `mirror`" in line
    assert receiver.calls == []
    assert not project.state_file("s").exists()
