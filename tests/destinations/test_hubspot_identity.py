"""Identity that survives change: HubSpot contacts whose match e-mail changes.

The snapshot keeps, per key, the e-mail a contact was delivered with and its HubSpot id.
A changed e-mail updates the contact by its id; a snapshot written before ids were kept
removes the old contact and creates the new one in mirror mode. Either way the emulator's
contacts end equal to the model, with no orphans.
"""

from __future__ import annotations

from collections.abc import Iterator

import duckdb
import pytest

from backhaul.summary import RunStatus
from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.hubspot import HubSpotEmulator
from conftest import Builder
from conftest import keys_of

pytestmark = pytest.mark.integration

FAST_RETRY = {"max_attempts": 4, "base_delay": 0.01, "max_delay": 0.05}
MAPPINGS = [
    {"column": "email", "field": "email"},
    {"column": "name", "field": "firstname"},
]
N = 400
# 5% of the keys: every 20th id gets a new e-mail.
REKEY = "UPDATE users SET email = 'moved' || id || '@example.org' WHERE id % 20 = 0"


@pytest.fixture
def hub() -> Iterator[HubSpotEmulator]:
    yield HubSpotEmulator(burst_limit=200, burst_seconds=1.0)


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
        rate_limit={"requests": 200, "per_seconds": 1.0},
    )
    project.users(N)
    return project


def sync(proj: Builder, mode: str = "mirror") -> None:
    proj.sync(
        "s",
        destination="crm",
        mappings=MAPPINGS,
        object="contacts",
        match={"fields": ["email"]},
        mode=mode,
        max_remove_pct=100,
    )


def contacts(hub: HubSpotEmulator) -> dict[str, str]:
    """e-mail -> first name of every contact the emulator holds."""
    return {e: c.get("firstname", "") for e, c in hub.records("contacts", key="email").items()}


def model(proj: Builder) -> dict[str, str]:
    return {str(e): str(n) for e, n in proj.sql("SELECT email, name FROM users")}


def ids_by_email(hub: HubSpotEmulator) -> dict[str, str]:
    return {e: c["hs_object_id"] for e, c in hub.records("contacts", key="email").items()}


def snapshot_ids(proj: Builder) -> dict[int, str | None]:
    con = duckdb.connect(str(proj.state_file("s")), read_only=True)
    try:
        return {int(k): rid for k, rid in con.execute("SELECT k0, rid FROM snapshot").fetchall()}
    finally:
        con.close()


def test_a_changed_email_updates_the_contact_by_its_id(proj: Builder, hub: HubSpotEmulator) -> None:
    sync(proj)
    first = proj.run("s")
    assert first.status is RunStatus.SUCCEEDED, first.error
    before = ids_by_email(hub)
    assert snapshot_ids(proj) == {
        i: before[f"u{i}@example.com"] for i in range(1, N + 1)
    }  # every key remembers its contact's id
    proj.sql(REKEY)
    calls = len(hub.calls)

    second = proj.run("s")

    assert second.status is RunStatus.SUCCEEDED, second.error
    assert second.counts.changed == N // 20 and second.counts.succeeded == N // 20
    assert contacts(hub) == model(proj)  # no orphan left under an old e-mail
    after = ids_by_email(hub)
    for i in range(20, N + 1, 20):  # the same contacts, now with their new e-mails
        assert after[f"moved{i}@example.org"] == before[f"u{i}@example.com"]
    paths = [c.path.rsplit("/", 1)[-1] for c in hub.calls[calls:]]
    assert "update" in paths and "archive" not in paths and "upsert" not in paths
    assert proj.run("s").counts.planned == 0


def test_upsert_mode_moves_the_contact_too(proj: Builder, hub: HubSpotEmulator) -> None:
    sync(proj, mode="upsert")
    proj.run("s")
    proj.sql(REKEY)

    run = proj.run("s")

    assert run.status is RunStatus.SUCCEEDED, run.error
    assert contacts(hub) == model(proj)


def drop_record_ids(proj: Builder) -> None:
    """Make the snapshot look like one written before record ids were kept."""
    con = duckdb.connect(str(proj.state_file("s")))
    try:
        con.execute("ALTER TABLE snapshot DROP COLUMN rid")
        con.execute("ALTER TABLE acks DROP COLUMN rid")
    finally:
        con.close()


def test_an_old_snapshot_removes_the_old_contact_and_creates_the_new_one(
    proj: Builder, hub: HubSpotEmulator
) -> None:
    sync(proj)
    proj.run("s")
    drop_record_ids(proj)
    proj.sql(REKEY)

    preview = proj.plan("s")  # a dry run reads the old snapshot as it is
    assert preview.counts.changed == N // 20 and preview.counts.added == 0
    assert len(preview.samples["rekey"]) == 5
    run = proj.run("s")

    assert run.status is RunStatus.SUCCEEDED, run.error
    assert run.counts.changed == N // 20 and run.counts.succeeded == N // 20
    assert contacts(hub) == model(proj)
    moved = {k: v for k, v in snapshot_ids(proj).items() if k % 20 == 0}
    ids = ids_by_email(hub)
    assert moved == {i: ids[f"moved{i}@example.org"] for i in moved}
    assert proj.run("s").counts.planned == 0


def test_an_old_contact_that_cannot_be_removed_holds_its_new_one_back(
    proj: Builder, hub: HubSpotEmulator
) -> None:
    sync(proj)
    proj.run("s")
    drop_record_ids(proj)
    proj.sql(REKEY)
    hub.faults.reject({"u40@example.com": "contact u40 is locked"})

    first = proj.run("s")

    # HubSpot archives a batch whole or not at all: every old contact of that batch stays,
    # and so none of their new contacts is created.
    moved = {str(i) for i in range(20, N + 1, 20)}
    assert first.status is RunStatus.PARTIAL
    rejected = proj.rows(first.run_id, status="rejected")
    assert keys_of(rejected) == moved and first.counts.rejected == len(moved)
    assert all("contact u40 is locked" in str(r.error) for r in rejected)
    held = contacts(hub)
    assert len(held) == N and not [e for e in held if e.startswith("moved")]
    hub.faults.clear()

    second = proj.run("s")

    assert second.status is RunStatus.SUCCEEDED, second.error
    assert keys_of(proj.rows(second.run_id)) == moved
    assert contacts(hub) == model(proj)
