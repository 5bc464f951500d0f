"""The Braze destination through real syncs against the Braze emulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backhaul.api import RunStatus
from backhaul.destinations.braze import BrazeConfig
from backhaul.destinations.braze import BrazeDestination
from backhaul.plugins import Registry
from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.braze import BAD_EMAIL
from backhaul.testing.emulators.braze import BrazeEmulator
from backhaul.testing.sandbox import Sandbox
from conftest import Builder
from conftest import keys_of

pytestmark = pytest.mark.integration

KEY = "braze-connector-key-3e7a"
FAST_RETRY = {"max_attempts": 4, "base_delay": 0.01, "max_delay": 0.05}
BY_EXTERNAL_ID = [
    {"column": "id", "field": "external_id"},
    {"column": "email", "field": "email"},
    {"column": "name", "field": "first_name"},
    {"column": "score", "field": "score"},
]


@pytest.fixture
def braze() -> BrazeEmulator:
    return BrazeEmulator(api_key=KEY)


@pytest.fixture
def server(braze: BrazeEmulator) -> Iterator[EmulatorServer]:
    with EmulatorServer(braze) as running:
        yield running


def destination(project: Builder, server: EmulatorServer, **extra: Any) -> None:
    project.destination(
        "braze",
        type="braze",
        base_url=server.url,
        api_key="${env:BRAZE_API_KEY}",
        retry=FAST_RETRY,
        **extra,
    )


@pytest.fixture
def proj(project: Builder, server: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> Builder:
    monkeypatch.setenv("BRAZE_API_KEY", KEY)
    destination(project, server)
    return project


def users_sync(project: Builder, n: int, **extra: Any) -> None:
    project.users(n)
    options: dict[str, Any] = {"match": {"fields": ["external_id"]}, **extra}
    project.sync("s", destination="braze", mappings=BY_EXTERNAL_ID, **options)


def by_id(braze: BrazeEmulator) -> dict[str, dict[str, Any]]:
    return {u["external_id"]: u for u in braze.state()["users"] if u["external_id"]}


def track_sizes(braze: BrazeEmulator, since: int = 0) -> list[int]:
    return [
        len(c.json["attributes"])
        for c in braze.calls[since:]
        if c.path == "/users/track" and c.status == 201
    ]


def test_registered_and_the_sandbox_file_is_a_valid_config() -> None:
    assert Registry.discover().destination("braze") is BrazeDestination
    file = BrazeEmulator().destination_config("http://127.0.0.1:9")
    assert BrazeConfig.model_validate(file).api_key == "${env:BRAZE_API_KEY}"


def test_attributes_are_packed_75_objects_a_call(proj: Builder, braze: BrazeEmulator) -> None:
    users_sync(proj, 200)

    run = proj.run("s")

    assert run.status is RunStatus.SUCCEEDED, run.error
    assert run.counts.succeeded == 200
    # The emulator refuses a call of more than 75 objects: every one was taken.
    assert sorted(track_sizes(braze), reverse=True) == [75, 75, 50]
    users = by_id(braze)
    assert len(users) == 200
    objects = [
        o for c in braze.calls if c.path == "/users/track" for o in c.json.get("attributes", [])
    ]
    assert all(isinstance(o["external_id"], str) for o in objects)  # ids go as text
    assert users["7"]["email"] == "u7@example.com"
    assert users["7"]["attributes"] == {"first_name": "name 7", "score": 7}


def test_a_lower_cap_for_mau_plans_is_kept(
    project: Builder, monkeypatch: pytest.MonkeyPatch
) -> None:
    braze = BrazeEmulator(api_key=KEY, max_objects=50)
    monkeypatch.setenv("BRAZE_API_KEY", KEY)
    with EmulatorServer(braze) as server:
        destination(project, server, max_objects_per_request=50)
        users_sync(project, 120)

        run = project.run("s")

    assert run.status is RunStatus.SUCCEEDED, run.error
    assert sorted(track_sizes(braze), reverse=True) == [50, 50, 20]


def test_refused_objects_are_rejected_by_key_and_retried_alone(
    proj: Builder, braze: BrazeEmulator
) -> None:
    users_sync(proj, 100)
    proj.sql("UPDATE users SET email = 'not-an-email' WHERE id IN (4, 90)")

    first = proj.run("s")

    assert first.status is RunStatus.PARTIAL
    rejected = {r.key: r.error for r in proj.rows(first.run_id, status="rejected")}
    assert rejected == {
        "4": f"braze refused the user: {BAD_EMAIL}",
        "90": f"braze refused the user: {BAD_EMAIL}",
    }
    assert len(keys_of(proj.rows(first.run_id, status="ok"))) == 98
    assert set(by_id(braze)) == {str(i) for i in range(1, 101)} - {"4", "90"}
    before = len(braze.calls)

    second = proj.run("s")

    assert second.counts.planned == 2  # the snapshot holds only the 98 accepted rows
    assert track_sizes(braze, before) == []  # both refused again, in one call
    proj.sql("UPDATE users SET email = 'fixed' || id || '@example.com' WHERE id IN (4, 90)")

    third = proj.run("s")

    assert third.status is RunStatus.SUCCEEDED and third.counts.succeeded == 2
    assert by_id(braze)["90"]["email"] == "fixed90@example.com"


def test_an_oversize_record_is_rejected_by_key(
    project: Builder, server: EmulatorServer, braze: BrazeEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BRAZE_API_KEY", KEY)
    destination(project, server, max_record_bytes=2_000)
    users_sync(project, 10)
    project.sql("UPDATE users SET name = repeat('x', 5000) WHERE id = 6")

    run = project.run("s")

    assert run.status is RunStatus.PARTIAL
    [refused] = project.rows(run.run_id, status="rejected")
    assert refused.key == "6"
    assert "braze takes at most 2,000 per record" in (refused.error or "")
    assert set(by_id(braze)) == {str(i) for i in range(1, 11)} - {"6"}


def test_mirror_deletes_users_50_identifiers_a_call(proj: Builder, braze: BrazeEmulator) -> None:
    users_sync(proj, 120, mode="mirror", max_remove_pct=100)
    assert proj.run("s").status is RunStatus.SUCCEEDED
    proj.sql("DELETE FROM users WHERE id > 10")

    run = proj.run("s")

    assert run.status is RunStatus.SUCCEEDED, run.error
    assert run.counts.removed == 110
    deletes = [c for c in braze.calls if c.path == "/users/delete"]
    assert sorted(len(c.json["external_ids"]) for c in deletes) == [10, 50, 50]
    assert set(by_id(braze)) == {str(i) for i in range(1, 11)}


def test_membership_subscribes_and_unsubscribes_without_deleting(
    proj: Builder, braze: BrazeEmulator
) -> None:
    users_sync(proj, 6, mode="membership", object="g-weekly", max_remove_pct=100)

    first = proj.run("s")

    assert first.status is RunStatus.SUCCEEDED, first.error
    groups = {k: u["subscription_groups"] for k, u in by_id(braze).items()}
    assert groups == {str(i): {"g-weekly": "subscribed"} for i in range(1, 7)}
    proj.sql("DELETE FROM users WHERE id IN (2, 5)")

    second = proj.run("s")

    assert second.status is RunStatus.SUCCEEDED, second.error
    users = by_id(braze)
    assert len(users) == 6  # people leave the group, never Braze
    assert {k: u["subscription_groups"]["g-weekly"] for k, u in users.items()} == {
        "1": "subscribed",
        "2": "unsubscribed",
        "3": "subscribed",
        "4": "subscribed",
        "5": "unsubscribed",
        "6": "subscribed",
    }
    assert users["2"]["attributes"]["first_name"] == "name 2"


def test_a_used_up_window_is_waited_out_until_its_reset(
    project: Builder, monkeypatch: pytest.MonkeyPatch
) -> None:
    braze = BrazeEmulator(api_key=KEY, track_rate_limit=2, track_rate_window=1.0)
    monkeypatch.setenv("BRAZE_API_KEY", KEY)
    with EmulatorServer(braze) as server:
        destination(project, server, rate_limit=None, concurrency=1)
        users_sync(project, 300)

        run = project.run("s")

    assert run.status is RunStatus.SUCCEEDED, run.error
    assert len(by_id(braze)) == 300
    # X-RateLimit-Remaining: 0 paused the calls until X-RateLimit-Reset: none was refused.
    assert braze.windows["/users/track"].refused == 0
    assert len(track_sizes(braze)) == 4


def test_a_queued_answer_acknowledges_nothing_and_is_sent_again(
    proj: Builder, braze: BrazeEmulator
) -> None:
    users_sync(proj, 5)
    braze.faults.fail_next(2, status=202)  # the credential check, then the first call

    run = proj.run("s")

    assert run.status is RunStatus.SUCCEEDED, run.error
    sent = [c.status for c in braze.calls if c.path == "/users/track" and c.json.get("attributes")]
    assert sent == [202, 201]  # Braze processed nothing while in maintenance: sent again
    assert len(by_id(braze)) == 5


def _line_of(path: Path, needle: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(i for i, text in enumerate(lines, 1) if needle in text)


def test_validate_refuses_syncs_braze_cannot_serve(project: Builder) -> None:
    project.users(3)
    project.destination("braze", type="braze", base_url="http://127.0.0.1:9", api_key="k")
    project.write("models/phones.yml", {"source": "wh", "primary_key": "id"})
    project.write("models/phones.sql", "SELECT id, email AS phone FROM users\n")
    by_name = [{"column": "id", "field": "external_id"}, {"column": "name", "field": "name"}]
    project.sync("by_name", destination="braze", mappings=by_name, match={"fields": ["name"]})
    project.sync("no_group", destination="braze", mappings=BY_EXTERNAL_ID, mode="membership")
    project.sync(
        "phones",
        model="phones",
        destination="braze",
        mappings=[{"column": "phone", "field": "phone"}],
        match={"fields": ["phone"]},
        mode="mirror",
    )

    result = project.cli("validate")

    assert result.returncode == 2
    errors = result.stderr
    assert "Traceback" not in errors
    syncs = project.root / "syncs"
    assert (
        f"syncs/by_name.yml:{_line_of(syncs / 'by_name.yml', '  fields:')}: match.fields: braze "
        "users are matched by external_id, email or phone"
    ) in errors
    assert (
        "syncs/no_group.yml: object: braze membership needs the subscription group id as the "
        "sync's `object`"
    ) in errors
    assert (
        f"syncs/phones.yml:{_line_of(syncs / 'phones.yml', '  fields:')}: match.fields: braze "
        "deletes users by external_id or email, not phone"
    ) in errors


def test_validate_refuses_bad_destination_files(project: Builder) -> None:
    project.destination("nokey", type="braze", base_url="http://127.0.0.1:9")
    project.destination(
        "overcap",
        type="braze",
        base_url="http://127.0.0.1:9",
        api_key="k",
        max_objects_per_request=100,
    )

    result = project.cli("validate")

    assert result.returncode == 2
    assert "destinations/nokey.yml: api_key: missing required key `api_key`" in result.stderr
    line = _line_of(project.root / "destinations/overcap.yml", "max_objects_per_request")
    assert f"destinations/overcap.yml:{line}: max_objects_per_request:" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_sandbox_destination_file_runs_a_sync(
    project: Builder, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Sandbox(["braze"]) as sandbox:
        [entry] = sandbox.entries
        assert entry.destination_file is not None
        project.destination("braze", **entry.destination_file)
        for name, value in entry.credentials.items():
            monkeypatch.setenv(name, value)
        users_sync(project, 5)

        run = project.run("s")

        assert run.status is RunStatus.SUCCEEDED, run.error
        assert len(entry.emulator.state()["users"]) == 5
