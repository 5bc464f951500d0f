"""The HubSpot destination through real syncs against the HubSpot emulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from backhaul import api
from backhaul.calls import MemoryRecorder
from backhaul.destinations.base import DestinationContext
from backhaul.destinations.hubspot import HubSpotConfig
from backhaul.destinations.hubspot import HubSpotDestination
from backhaul.destinations.hubspot import _turns
from backhaul.errors import DestinationError
from backhaul.errors import FailureType
from backhaul.plugins import Registry
from backhaul.summary import RunStatus
from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.hubspot import HubSpotEmulator
from conftest import Builder
from conftest import keys_of

pytestmark = pytest.mark.integration

FAST_RETRY = {"max_attempts": 4, "base_delay": 0.01, "max_delay": 0.05}
CONTACT_MAPPINGS = [
    {"column": "email", "field": "email"},
    {"column": "name", "field": "firstname"},
    {"column": "score", "field": "score"},
]


@pytest.fixture
def hub() -> Iterator[HubSpotEmulator]:
    emulator = HubSpotEmulator(burst_limit=50, burst_seconds=1.0)
    emulator.add_property("contacts", "score", type="number", field_type="number")
    yield emulator


@pytest.fixture
def server(hub: HubSpotEmulator) -> Iterator[EmulatorServer]:
    with EmulatorServer(hub) as running:
        yield running


@pytest.fixture
def proj(
    project: Builder, server: EmulatorServer, hub: HubSpotEmulator, monkeypatch: pytest.MonkeyPatch
) -> Builder:
    monkeypatch.setenv("HUBSPOT_TOKEN", hub.token)
    project.destination(
        "crm",
        type="hubspot",
        token="${env:HUBSPOT_TOKEN}",
        base_url=server.url,
        retry=FAST_RETRY,
        rate_limit={"requests": 50, "per_seconds": 1.0},
    )
    return project


def contacts_sync(project: Builder, n: int = 10, **extra: Any) -> None:
    project.users(n)
    options: dict[str, Any] = {"object": "contacts", "match": {"fields": ["email"]}, **extra}
    project.sync("s", destination="crm", mappings=CONTACT_MAPPINGS, **options)


def precreate(server: EmulatorServer, hub: HubSpotEmulator, rows: list[dict[str, str]]) -> None:
    inputs = [{"properties": r} for r in rows]
    answer = httpx.post(
        f"{server.url}/crm/v3/objects/contacts/batch/create",
        json={"inputs": inputs},
        headers={"Authorization": f"Bearer {hub.token}"},
    )
    assert answer.status_code == 201, answer.text


def by_email(hub: HubSpotEmulator) -> dict[str, dict[str, str]]:
    return hub.records("contacts", key="email")


def test_registered_as_a_builtin_destination() -> None:
    assert Registry.discover().destination("hubspot") is HubSpotDestination
    assert HubSpotDestination.capabilities.max_batch_size == 100


def test_upsert_creates_then_sends_only_changes(proj: Builder, hub: HubSpotEmulator) -> None:
    contacts_sync(proj, 10)

    first = proj.run("s")

    assert first.status is RunStatus.SUCCEEDED, first.error
    contacts = by_email(hub)
    assert len(contacts) == 10
    assert contacts["u3@example.com"]["firstname"] == "name 3"
    assert contacts["u3@example.com"]["score"] == "3"
    proj.sql("UPDATE users SET name = 'Ada' WHERE id = 3")
    before = len(hub.calls)

    second = proj.run("s")

    assert second.counts.changed == 1 and second.counts.succeeded == 1
    assert by_email(hub)["u3@example.com"]["firstname"] == "Ada"
    assert len(by_email(hub)) == 10
    upserts = [c for c in hub.calls[before:] if c.path.endswith("/batch/upsert")]
    assert len(upserts) == 1 and len(upserts[0].json["inputs"]) == 1


def test_update_rejects_missing_contacts_and_retries_them_next_run(
    proj: Builder, server: EmulatorServer, hub: HubSpotEmulator
) -> None:
    precreate(server, hub, [{"email": f"u{i}@example.com", "firstname": "old"} for i in (1, 2)])
    contacts_sync(proj, 4, mode="update")

    first = proj.run("s")

    assert first.status is RunStatus.PARTIAL
    rejected = {r.key: r.error for r in proj.rows(first.run_id, status="rejected")}
    assert rejected == {
        "3": "HubSpot contacts has no record with email = u3@example.com: update mode creates none",
        "4": "HubSpot contacts has no record with email = u4@example.com: update mode creates none",
    }
    assert {e: c["firstname"] for e, c in by_email(hub).items()} == {
        "u1@example.com": "name 1",
        "u2@example.com": "name 2",
    }
    precreate(server, hub, [{"email": "u3@example.com"}])

    second = proj.run("s")

    assert second.counts.planned == 2
    assert keys_of(proj.rows(second.run_id, status="ok")) == {"3"}
    assert keys_of(proj.rows(second.run_id, status="rejected")) == {"4"}
    assert by_email(hub)["u3@example.com"]["firstname"] == "name 3"


def test_insert_creates_missing_and_leaves_existing_alone(
    proj: Builder, server: EmulatorServer, hub: HubSpotEmulator
) -> None:
    precreate(server, hub, [{"email": "u1@example.com", "firstname": "Keep"}])
    contacts_sync(proj, 3, mode="insert")

    run = proj.run("s")

    assert run.status is RunStatus.SUCCEEDED and run.counts.succeeded == 3
    contacts = by_email(hub)
    assert contacts["u1@example.com"]["firstname"] == "Keep"
    assert contacts["u2@example.com"]["firstname"] == "name 2"
    assert len(contacts) == 3
    assert not [c for c in hub.calls if c.path.endswith("/batch/upsert")]


def test_mirror_archives_removed_rows(proj: Builder, hub: HubSpotEmulator) -> None:
    contacts_sync(proj, 5, mode="mirror", max_remove_pct=100)
    proj.run("s")
    proj.sql("DELETE FROM users WHERE id IN (2, 4)")

    run = proj.run("s")

    assert run.status is RunStatus.SUCCEEDED and run.counts.removed == 2
    assert sorted(by_email(hub)) == [f"u{i}@example.com" for i in (1, 3, 5)]
    archives = [c for c in hub.calls if c.path.endswith("/batch/archive")]
    assert archives and archives[-1].status == 204


def test_removed_rows_are_cleared_but_kept(proj: Builder, hub: HubSpotEmulator) -> None:
    contacts_sync(proj, 3, on_remove="clear", max_remove_pct=100)
    proj.run("s")
    proj.sql("DELETE FROM users WHERE id = 2")

    run = proj.run("s")

    assert run.status is RunStatus.SUCCEEDED, run.error
    cleared = by_email(hub)["u2@example.com"]
    assert "firstname" not in cleared and "score" not in cleared
    assert by_email(hub)["u1@example.com"]["firstname"] == "name 1"


def test_rejection_is_mapped_to_its_row_and_retried(proj: Builder, hub: HubSpotEmulator) -> None:
    contacts_sync(proj, 6)
    hub.faults.reject({"u4@example.com": "Email address u4@example.com is blocked"})

    first = proj.run("s")

    assert first.status is RunStatus.PARTIAL
    rejected = proj.rows(first.run_id, status="rejected")
    assert [(r.key, r.error) for r in rejected] == [
        ("4", "Email address u4@example.com is blocked")
    ]
    assert "u4@example.com" not in by_email(hub) and len(by_email(hub)) == 5
    hub.faults.clear()

    second = proj.run("s")

    assert keys_of(proj.rows(second.run_id)) == {"4"}
    assert by_email(hub)["u4@example.com"]["firstname"] == "name 4"


def test_rows_sharing_an_email_go_in_turns(proj: Builder, hub: HubSpotEmulator) -> None:
    contacts_sync(proj, 4)
    proj.sql("UPDATE users SET email = 'same@example.com' WHERE id IN (2, 3)")

    run = proj.run("s")

    assert run.status is RunStatus.SUCCEEDED, run.error
    assert by_email(hub)["same@example.com"]["firstname"] == "name 3"  # batch order kept
    assert len(by_email(hub)) == 3
    assert list(_turns([0, 1, 2, 3], ["a", "b", "a", "a"])) == [[0, 1], [2], [3]]


def test_unknown_properties_stop_the_run_before_anything_is_sent(
    proj: Builder, hub: HubSpotEmulator
) -> None:
    proj.users(3)
    mappings = [*CONTACT_MAPPINGS, {"column": "name", "field": "favorite_color"}]
    proj.sync(
        "s", destination="crm", object="contacts", match={"fields": ["email"]}, mappings=mappings
    )

    run = proj.run("s")

    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert "HubSpot contacts has no property favorite_color" in run.error
    assert "create it in HubSpot" in run.error
    assert by_email(hub) == {}


def test_matching_on_a_property_without_unique_values_is_refused(
    proj: Builder, hub: HubSpotEmulator
) -> None:
    contacts_sync(proj, 3)
    proj.sync(
        "s",
        destination="crm",
        object="contacts",
        match={"fields": ["firstname"]},
        mappings=CONTACT_MAPPINGS,
    )

    run = proj.run("s")

    assert run.status is RunStatus.FAILED and run.error is not None
    assert "property `firstname` does not require unique values" in run.error
    assert by_email(hub) == {}


def test_custom_object_upserts_by_a_unique_property(proj: Builder, hub: HubSpotEmulator) -> None:
    hub.add_object_type("pets", ["nickname"])
    hub.add_property("pets", "ext_id", unique=True)
    proj.users(4)
    mappings = [{"column": "id", "field": "ext_id"}, {"column": "name", "field": "nickname"}]
    proj.sync("s", destination="crm", object="pets", mappings=mappings)

    run = proj.run("s")

    assert run.status is RunStatus.SUCCEEDED, run.error
    pets = hub.records("pets", key="ext_id")
    assert {k: v["nickname"] for k, v in pets.items()} == {str(i): f"name {i}" for i in range(1, 5)}


def test_wrong_token_fails_once_with_one_clear_error(
    proj: Builder, hub: HubSpotEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    contacts_sync(proj, 3)
    monkeypatch.setenv("HUBSPOT_TOKEN", "pat-na1-not-the-right-one")

    run = proj.run("s")

    assert run.status is RunStatus.FAILED and run.error is not None
    assert run.error.startswith("HubSpot at 127.0.0.1:")
    assert "answered 401 Unauthorized: set `token` in the destination file" in run.error
    assert "pat-na1-not-the-right-one" not in run.error
    assert [c.status for c in hub.calls] == [401]  # no retry storm
    with api.open_store(proj.load()) as store:
        calls = store.calls(run.run_id)
    assert calls and all("pat-na1-not-the-right-one" not in str(c) for c in calls)


def test_unknown_object_is_a_config_error(proj: Builder, hub: HubSpotEmulator) -> None:
    proj.users(2)
    proj.sync(
        "s",
        destination="crm",
        object="widgets",
        match={"fields": ["email"]},
        mappings=[{"column": "email", "field": "email"}],
    )

    run = proj.run("s")

    assert run.status is RunStatus.FAILED and run.error is not None
    assert "HubSpot has no object type `widgets`" in run.error


def test_a_429_pauses_and_the_batch_goes_through(proj: Builder, hub: HubSpotEmulator) -> None:
    contacts_sync(proj, 5)
    hub.faults.rate_limit_next(1)

    run = proj.run("s")

    assert run.status is RunStatus.SUCCEEDED, run.error
    assert [c.status for c in hub.calls][:2] == [429, 200]
    assert len(by_email(hub)) == 5


def test_token_is_never_recorded(proj: Builder, hub: HubSpotEmulator) -> None:
    contacts_sync(proj, 3)
    hub.faults.reject({"u1@example.com": "nope"})

    run = proj.run("s")

    with api.open_store(proj.load()) as store:
        calls = store.calls(run.run_id)
    assert len(calls) >= 2
    assert all(hub.token not in repr(c) for c in calls)
    headers = [{k.lower(): v for k, v in c.request_headers.items()} for c in calls]
    assert all(h["authorization"] == "***" for h in headers)


@pytest.mark.parametrize("failure_rate", [0.0, 0.2])
def test_never_exceeds_the_burst_limit_and_ends_equal_to_the_model(
    project: Builder, monkeypatch: pytest.MonkeyPatch, failure_rate: float
) -> None:
    hub = HubSpotEmulator(burst_limit=10, burst_seconds=1.0, seed=7)
    hub.add_property("contacts", "score", type="number", field_type="number")
    if failure_rate:
        hub.faults.fail_randomly(failure_rate, seed=11)
    with EmulatorServer(hub) as server:
        monkeypatch.setenv("HUBSPOT_TOKEN", hub.token)
        project.destination(
            "crm",
            type="hubspot",
            token="${env:HUBSPOT_TOKEN}",
            base_url=server.url,
            retry={"max_attempts": 8, "base_delay": 0.01, "max_delay": 0.05},
            rate_limit={"requests": 10, "per_seconds": 1.0},
        )
        contacts_sync(project, 2000)
        for _ in range(3):  # at-least-once: a run that gave up is completed by the next
            run = project.run("s")
            if run.status is RunStatus.SUCCEEDED:
                break

    assert run.status is RunStatus.SUCCEEDED, run.error
    assert hub.window.refused == 0
    assert 429 not in {c.status for c in hub.calls}
    if failure_rate:
        assert 503 in {c.status for c in hub.calls}
    model = {f"u{i}@example.com": (f"name {i}", str(i % 97)) for i in range(1, 2001)}
    state = {e: (c.get("firstname"), c.get("score")) for e, c in by_email(hub).items()}
    assert state == model


def test_config_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="extra"):
        HubSpotConfig.model_validate({"type": "hubspot", "token": "t", "hapikey": "x"})


async def test_connection_test_outside_a_run_reads_properties(
    tmp_path: Path, server: EmulatorServer, hub: HubSpotEmulator
) -> None:
    def open_hubspot(token: str) -> tuple[HubSpotDestination, MemoryRecorder]:
        recorder = MemoryRecorder()
        config = HubSpotConfig.model_validate(
            {"type": "hubspot", "token": token, "base_url": server.url, "retry": FAST_RETRY}
        )
        context = DestinationContext(tmp_path, recorder, "", "", (token,))
        return HubSpotDestination(config, context), recorder

    good, recorder = open_hubspot(hub.token)
    await good.check()
    await good.close()
    bad, _ = open_hubspot("pat-na1-wrong")
    with pytest.raises(DestinationError) as refused:
        await bad.check()
    await bad.close()

    assert [c.url.rsplit("/", 2)[-2:] for c in recorder.calls] == [["properties", "contacts"]]
    assert refused.value.failure is FailureType.CONFIG
    assert refused.value.message.startswith("HubSpot at 127.0.0.1:")
    assert "answered 401 Unauthorized: set `token` in the destination file" in refused.value.message
    assert [c.status for c in hub.calls] == [200, 401]


def test_a_sync_without_an_object_is_refused_before_anything_is_sent(
    proj: Builder, hub: HubSpotEmulator
) -> None:
    proj.users(3)
    email = [{"column": "email", "field": "email"}]
    proj.sync("s", destination="crm", mappings=email, match={"fields": ["email"]})

    result = proj.cli("run", "s")

    assert result.returncode == 2, result.stdout + result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: syncs/s.yml"), lines
    assert ": object: HubSpot needs an object: set `object` in the sync" in lines[0]
    assert hub.calls == []
    assert proj.cli("validate", "--offline").returncode == 2
