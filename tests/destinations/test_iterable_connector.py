"""The Iterable destination through real syncs against the Iterable emulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backhaul.api import RunStatus
from backhaul.destinations.iterable import IterableConfig
from backhaul.destinations.iterable import IterableDestination
from backhaul.plugins import Registry
from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.iterable import IterableEmulator
from backhaul.testing.sandbox import Sandbox
from conftest import Builder
from conftest import keys_of

pytestmark = pytest.mark.integration

KEY = "iterable-connector-key-55b2"
FAST_RETRY = {"max_attempts": 4, "base_delay": 0.01, "max_delay": 0.05}
BY_EMAIL = [
    {"column": "email", "field": "email"},
    {"column": "name", "field": "name"},
    {"column": "score", "field": "score"},
]
FAST = {"/api/users/bulkUpdate": (100, 1.0), "/api/events/trackBulk": (100, 1.0)}


@pytest.fixture
def iterable() -> IterableEmulator:
    return IterableEmulator(api_key=KEY, rate_limits=FAST, lists={1001: "Weekly"})


@pytest.fixture
def server(iterable: IterableEmulator) -> Iterator[EmulatorServer]:
    with EmulatorServer(iterable) as running:
        yield running


def destination(project: Builder, server: EmulatorServer, **extra: Any) -> None:
    options: dict[str, Any] = {"rate_limit": {"requests": 100, "per_seconds": 1}, **extra}
    project.destination(
        "iterable",
        type="iterable",
        base_url=server.url,
        api_key="${env:ITERABLE_API_KEY}",
        retry=FAST_RETRY,
        **options,
    )


@pytest.fixture
def proj(project: Builder, server: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> Builder:
    monkeypatch.setenv("ITERABLE_API_KEY", KEY)
    destination(project, server)
    return project


def users_sync(project: Builder, n: int, **extra: Any) -> None:
    project.users(n)
    options: dict[str, Any] = {"match": {"fields": ["email"]}, **extra}
    project.sync("s", destination="iterable", mappings=BY_EMAIL, **options)


def by_email(iterable: IterableEmulator) -> dict[str, dict[str, Any]]:
    return {u["email"]: u for u in iterable.state()["users"] if u["email"]}


def sent(iterable: IterableEmulator, path: str, field: str = "users") -> list[int]:
    return [len(c.json[field]) for c in iterable.calls if c.path == path and c.status == 200]


def test_registered_and_the_sandbox_file_is_a_valid_config() -> None:
    assert Registry.discover().destination("iterable") is IterableDestination
    file = IterableEmulator().destination_config("http://127.0.0.1:9")
    assert IterableConfig.model_validate(file).api_key == "${env:ITERABLE_API_KEY}"


def test_users_are_packed_within_the_item_and_byte_caps(
    project: Builder, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A 6 KB body cap: the emulator answers 413 to a bigger one, so a clean run proves
    # every request kept it.
    iterable = IterableEmulator(api_key=KEY, rate_limits=FAST, max_request_bytes=6_000)
    monkeypatch.setenv("ITERABLE_API_KEY", KEY)
    with EmulatorServer(iterable) as server:
        destination(project, server, max_request_bytes=6_000, max_users_per_request=40)
        users_sync(project, 300)

        run = project.run("s")

    assert run.status is RunStatus.SUCCEEDED, run.error
    sizes = sent(iterable, "/api/users/bulkUpdate")
    assert sum(sizes) == 300 and max(sizes) <= 40 and len(sizes) > 300 // 40
    assert all(c.status != 413 for c in iterable.calls)
    users = by_email(iterable)
    assert len(users) == 300
    assert users["u7@example.com"]["dataFields"] == {"name": "name 7", "score": 7}


def test_failed_updates_are_rejected_by_key_and_retried_alone(
    proj: Builder, iterable: IterableEmulator
) -> None:
    users_sync(proj, 50)
    proj.sql("UPDATE users SET email = 'not-an-email' WHERE id = 4")
    iterable.faults.reject({"u9@example.com": "refused"})

    first = proj.run("s")

    assert first.status is RunStatus.PARTIAL
    rejected = {r.key: r.error for r in proj.rows(first.run_id, status="rejected")}
    assert rejected == {
        "4": "iterable refused the user: the e-mail or userId is not valid "
        "(failedUpdates.invalidEmails)",
        "9": "iterable refused the user: a data field does not fit the type the project "
        "keeps for it (failedUpdates.invalidDataEmails)",
    }
    assert len(keys_of(proj.rows(first.run_id, status="ok"))) == 48
    assert "u9@example.com" not in by_email(iterable) and len(by_email(iterable)) == 48
    iterable.faults.clear()
    proj.sql("UPDATE users SET email = 'u4@example.com' WHERE id = 4")

    second = proj.run("s")

    assert second.counts.planned == 2  # the snapshot holds only the 48 accepted rows
    assert second.status is RunStatus.SUCCEEDED and second.counts.succeeded == 2
    assert len(by_email(iterable)) == 50


def test_an_email_and_user_id_of_two_users_is_a_conflict_on_that_row_only(
    proj: Builder, iterable: IterableEmulator
) -> None:
    proj.users(3, "i::VARCHAR AS uid")
    mappings = [*BY_EMAIL, {"column": "uid", "field": "userId"}]
    proj.sync("s", destination="iterable", mappings=mappings, match={"fields": ["email"]})
    assert proj.run("s").status is RunStatus.SUCCEEDED
    proj.sql("UPDATE users SET uid = '2' WHERE id = 1", "UPDATE users SET name = 'Cy' WHERE id = 3")

    run = proj.run("s")

    assert run.status is RunStatus.PARTIAL
    rejected = {r.key: r.error for r in proj.rows(run.run_id, status="rejected")}
    assert rejected == {
        "1": "iterable refused the user: the e-mail and the userId belong to two different "
        "users (failedUpdates.conflictEmails)"
    }
    assert keys_of(proj.rows(run.run_id, status="ok")) == {"3"}
    users = by_email(iterable)
    assert users["u1@example.com"]["userId"] == "1"
    assert users["u3@example.com"]["dataFields"]["name"] == "Cy"


def test_an_oversize_record_is_rejected_by_key(proj: Builder, iterable: IterableEmulator) -> None:
    users_sync(proj, 5)
    proj.destination(
        "iterable",
        **{**proj.load().destinations["iterable"].raw, "max_request_bytes": 3_000},
    )
    proj.sql("UPDATE users SET name = repeat('x', 4000) WHERE id = 2")

    run = proj.run("s")

    assert run.status is RunStatus.PARTIAL
    [refused] = proj.rows(run.run_id, status="rejected")
    assert refused.key == "2"
    assert "iterable takes at most" in (refused.error or "")
    assert set(by_email(iterable)) == {f"u{i}@example.com" for i in (1, 3, 4, 5)}


def test_mirror_deletes_users_by_email(proj: Builder, iterable: IterableEmulator) -> None:
    users_sync(proj, 6, mode="mirror", max_remove_pct=100)
    assert proj.run("s").status is RunStatus.SUCCEEDED
    proj.sql("DELETE FROM users WHERE id IN (2, 3)")

    run = proj.run("s")

    assert run.status is RunStatus.SUCCEEDED, run.error
    assert set(by_email(iterable)) == {f"u{i}@example.com" for i in (1, 4, 5, 6)}


def test_mirror_deletes_users_by_user_id(proj: Builder, iterable: IterableEmulator) -> None:
    proj.users(4)
    mappings = [{"column": "id", "field": "userId"}, {"column": "name", "field": "name"}]
    proj.sync("s", destination="iterable", mappings=mappings, mode="mirror", max_remove_pct=100)
    assert proj.run("s").status is RunStatus.SUCCEEDED
    assert iterable.user(user_id="3") is not None
    proj.sql("DELETE FROM users WHERE id = 3")

    run = proj.run("s")

    assert run.status is RunStatus.SUCCEEDED, run.error
    assert {u["userId"] for u in iterable.state()["users"]} == {"1", "2", "4"}
    assert [c.path for c in iterable.calls if c.method == "DELETE"] == ["/api/users/byUserId/3"]


def test_membership_subscribes_and_unsubscribes_without_deleting(
    proj: Builder, iterable: IterableEmulator
) -> None:
    users_sync(proj, 5, mode="membership", object="1001", max_remove_pct=100)

    first = proj.run("s")

    assert first.status is RunStatus.SUCCEEDED, first.error

    def members() -> set[str]:
        [weekly] = iterable.state()["lists"]
        ids = set(weekly["members"])
        return {u["email"] for u in iterable.state()["users"] if u["id"] in ids}

    assert members() == {f"u{i}@example.com" for i in range(1, 6)}
    assert by_email(iterable)["u3@example.com"]["dataFields"]["name"] == "name 3"
    proj.sql("DELETE FROM users WHERE id IN (1, 4)")

    second = proj.run("s")

    assert second.status is RunStatus.SUCCEEDED, second.error
    assert members() == {f"u{i}@example.com" for i in (2, 3, 5)}
    assert len(by_email(iterable)) == 5  # people leave the list, never Iterable
    assert sent(iterable, "/api/lists/unsubscribe", "subscribers") == [2]


def test_membership_of_a_list_that_does_not_exist_fails_before_sending(
    proj: Builder, iterable: IterableEmulator
) -> None:
    users_sync(proj, 3, mode="membership", object="999")

    run = proj.run("s")

    assert run.status is RunStatus.FAILED
    assert "iterable has no list 999: check the sync's `object`" in (run.error or "")
    assert not [c for c in iterable.calls if c.path.startswith("/api/lists/")]


def test_events_carry_the_row_key_as_id_so_a_resend_replaces_them(
    proj: Builder, iterable: IterableEmulator
) -> None:
    proj.users(4)
    mappings = [
        {"column": "email", "field": "email"},
        {"template": "scored", "field": "eventName"},
        {"column": "score", "field": "points"},
    ]
    proj.sync(
        "events",
        destination="iterable",
        object="events",
        mappings=mappings,
        match={"fields": ["email"]},
    )

    first = proj.run("events")
    again = proj.run("events", full_resync=True)

    assert first.status is RunStatus.SUCCEEDED, first.error
    assert again.status is RunStatus.SUCCEEDED and again.counts.succeeded == 4
    events = iterable.state()["events"]
    assert sorted(e["id"] for e in events) == ["1", "2", "3", "4"]
    assert {e["email"]: e["dataFields"] for e in events}["u3@example.com"] == {"points": 3}
    assert {e["eventName"] for e in events} == {"scored"}


def test_a_rate_limit_answer_is_waited_out(proj: Builder, iterable: IterableEmulator) -> None:
    users_sync(proj, 10)
    iterable.faults.rate_limit_next(2)  # Iterable names no wait: the configured pause

    run = proj.run("s")

    assert run.status is RunStatus.SUCCEEDED, run.error
    assert [c.status for c in iterable.calls] == [429, 429, 200, 200]
    assert len(by_email(iterable)) == 10


def _line_of(path: Path, needle: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(i for i, text in enumerate(lines, 1) if needle in text)


def test_validate_refuses_syncs_iterable_cannot_serve(project: Builder) -> None:
    project.users(3)
    project.destination("iterable", type="iterable", base_url="http://127.0.0.1:9", api_key="k")
    project.sync("by_name", destination="iterable", mappings=BY_EMAIL, match={"fields": ["name"]})
    project.sync(
        "named_list",
        destination="iterable",
        mappings=BY_EMAIL,
        mode="membership",
        object="weekly",
        match={"fields": ["email"]},
    )
    project.sync(
        "mirrored_events",
        destination="iterable",
        object="events",
        mode="mirror",
        mappings=[*BY_EMAIL, {"template": "x", "field": "eventName"}],
        match={"fields": ["email"]},
    )

    result = project.cli("validate")

    assert result.returncode == 2
    errors = result.stderr
    assert "Traceback" not in errors
    syncs = project.root / "syncs"
    assert (
        f"syncs/by_name.yml:{_line_of(syncs / 'by_name.yml', '  fields:')}: match.fields: "
        "iterable users are matched by email or userId"
    ) in errors
    assert (
        f"syncs/named_list.yml:{_line_of(syncs / 'named_list.yml', 'object:')}: object: "
        "iterable membership needs the list id as `object`"
    ) in errors
    assert (
        f"syncs/mirrored_events.yml:{_line_of(syncs / 'mirrored_events.yml', 'mode:')}: mode: "
        "iterable events cannot be removed"
    ) in errors


def test_validate_refuses_bad_destination_files(project: Builder) -> None:
    project.destination("nokey", type="iterable")
    project.destination("big", type="iterable", api_key="k", max_request_bytes=0)

    result = project.cli("validate")

    assert result.returncode == 2
    assert "destinations/nokey.yml: api_key: missing required key `api_key`" in result.stderr
    line = _line_of(project.root / "destinations/big.yml", "max_request_bytes")
    assert f"destinations/big.yml:{line}: max_request_bytes:" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_sandbox_destination_file_runs_a_sync(
    project: Builder, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Sandbox(["iterable"]) as sandbox:
        [entry] = sandbox.entries
        assert entry.destination_file is not None
        project.destination("iterable", **entry.destination_file)
        for name, value in entry.credentials.items():
            monkeypatch.setenv(name, value)
        users_sync(project, 5)

        run = project.run("s")

        assert run.status is RunStatus.SUCCEEDED, run.error
        assert len(entry.emulator.state()["users"]) == 5
