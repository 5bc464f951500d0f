"""A HubSpot mirror sync whose match e-mails change, killed with SIGKILL mid-run.

5% of the keys get a new e-mail. A ``backhaul run`` subprocess sends those changes to the
HubSpot emulator (served from this process, so it outlives the kill) and is killed once
part of them has landed. The next run must leave the emulator's contacts equal to the
model: every key one contact, under its current e-mail, none left under an old one.

Two paths are covered: a snapshot that knows each contact's id (the contact is updated by
id), and a snapshot written before ids were kept (the old contact is archived, then the
new one created). Each runs with the local planner (a DuckDB warehouse file) and with
``planner: warehouse`` on a Postgres warehouse. Kill points are found by polling the emulator; a run that ends before
its kill point still has to satisfy every assertion, so timing cannot fail the test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path

import duckdb
import psycopg
import pytest

from backhaul import api
from backhaul.state import snapshots
from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.hubspot import HubSpotEmulator

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N = 2_000
MOVED = N // 20  # 5% of the keys
SYNC = "contacts"
GIVE_UP_S = 300.0  # a safety net against a hung subprocess; no assertion depends on time
POLL_S = 0.01
REKEY = "UPDATE users SET email = 'moved' || id || '@example.org' WHERE id % 20 = 0"


PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
USERS = (
    "CREATE TABLE users AS SELECT CAST(i AS BIGINT) AS id, 'u' || i || '@example.com' AS email, "
    "'name ' || i AS name FROM {series}"
)


class Warehouse:
    """The model's warehouse: a DuckDB file (local planner) or a Postgres database
    (``planner: warehouse``, whose snapshot lives in that database)."""

    def __init__(self, root: Path, planner: str, url: str | None) -> None:
        self.root, self.planner, self.url = root, planner, url

    def sql(self, *statements: str) -> list[tuple[object, ...]]:
        rows: list[tuple[object, ...]] = []
        if self.url is None:
            con = duckdb.connect(str(self.root / "wh.duckdb"))
            try:
                for stmt in statements:
                    rows = con.execute(stmt).fetchall()
            finally:
                con.close()
            return rows
        with psycopg.connect(self.url, autocommit=True) as conn:
            for stmt in statements:
                cur = conn.execute(stmt.encode())
                rows = cur.fetchall() if cur.description else []
        return rows

    def source(self) -> str:
        if self.url is None:
            return "type: duckdb\npath: wh.duckdb\n"
        return f"type: postgres\nurl: {self.url}\n"

    def series(self) -> str:
        if self.url is None:
            return f"range(1, {N + 1}) t(i)"
        return f"generate_series(1, {N}) AS t(i)"

    def drop_record_ids(self) -> None:
        """Make the snapshot look like one written before record ids were kept."""
        if self.url is None:
            con = duckdb.connect(str(snapshots.state_path(self.root / ".backhaul", SYNC)))
            try:
                for table in ("snapshot", "acks"):
                    con.execute(f"ALTER TABLE {table} DROP COLUMN rid")
            finally:
                con.close()
            return
        schema = "backhaul_planner"
        self.sql(
            f"ALTER TABLE {schema}.{SYNC}_snapshot DROP COLUMN rid",
            f"ALTER TABLE {schema}.{SYNC}_acks DROP COLUMN rid",
            f"DELETE FROM {schema}.{SYNC}_meta WHERE name = 'identity'",
        )


@pytest.fixture(params=["local", "warehouse"])
def wh(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Warehouse]:
    root = tmp_path / "proj"
    if request.param == "local":
        yield Warehouse(root, "local", None)
        return
    name = f"bh_rekey_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    try:
        yield Warehouse(root, "warehouse", f"postgresql://postgres@127.0.0.1:5432/{name}")
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


@pytest.fixture
def hub() -> Iterator[tuple[HubSpotEmulator, EmulatorServer]]:
    emulator = HubSpotEmulator(burst_limit=10_000, burst_seconds=1.0)
    with EmulatorServer(emulator) as server:
        yield emulator, server


def write_sync(wh: Warehouse, batch_size: int) -> None:
    planner = "planner: warehouse\n" if wh.planner == "warehouse" else ""
    (wh.root / "syncs").mkdir(parents=True, exist_ok=True)
    (wh.root / "syncs" / f"{SYNC}.yml").write_text(
        "model: users\ndestination: crm\nmode: mirror\nobject: contacts\n"
        f"batch_size: {batch_size}\nconcurrency: 2\nmax_remove_pct: 100\n{planner}"
        "match: {fields: [email]}\nmappings:\n  - column: email\n    field: email\n"
        "  - column: name\n    field: firstname\n",
        encoding="utf-8",
    )


def write_project(wh: Warehouse, server: EmulatorServer) -> None:
    files = {
        "backhaul.yml": "name: rekeykill\n",
        "sources/wh.yml": wh.source(),
        "models/users.yml": "source: wh\nprimary_key: id\n",
        "models/users.sql": "SELECT * FROM users\n",
        "destinations/crm.yml": f"type: hubspot\ntoken: ${{env:HUBSPOT_TOKEN}}\n"
        f"base_url: {server.url}\nrate_limit: {{requests: 10000, per_seconds: 1}}\n",
    }
    for rel, text in files.items():
        path = wh.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    write_sync(wh, 100)
    wh.sql(USERS.format(series=wh.series()))


def command(root: Path) -> list[str]:
    return [sys.executable, "-m", "backhaul.cli.app", "run", SYNC, "-C", str(root)]


def env(hub: HubSpotEmulator) -> dict[str, str]:
    return {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", "HUBSPOT_TOKEN": hub.token}


def run(root: Path, hub: HubSpotEmulator) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(root), env=env(hub), capture_output=True, text=True, timeout=GIVE_UP_S, check=False
    )


def run_and_kill(root: Path, hub: HubSpotEmulator, reached: Callable[[], bool]) -> bool:
    """Start a run and SIGKILL it once ``reached``; False if it ended first."""
    log = root / "killed-run.log"
    with log.open("w") as out:
        proc = subprocess.Popen(command(root), env=env(hub), stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + GIVE_UP_S
            while proc.poll() is None and time.monotonic() < deadline:
                if reached():
                    os.kill(proc.pid, signal.SIGKILL)
                    break
                time.sleep(POLL_S)
        finally:
            if proc.poll() is None:
                proc.kill()  # hung: fail below rather than leave it behind
            proc.wait(timeout=60)
    assert proc.returncode in (0, -signal.SIGKILL), log.read_text()
    return proc.returncode == -signal.SIGKILL


def contacts(hub: HubSpotEmulator) -> dict[str, str]:
    return {e: c.get("firstname", "") for e, c in hub.records("contacts", key="email").items()}


def model(wh: Warehouse) -> dict[str, str]:
    return {str(e): str(n) for e, n in wh.sql("SELECT email, name FROM users")}


def moved_contacts(hub: HubSpotEmulator) -> int:
    return sum(1 for e in hub.records("contacts", key="email") if e.startswith("moved"))


def first_sync(wh: Warehouse, hub: HubSpotEmulator) -> dict[str, str]:
    done = run(wh.root, hub)
    assert done.returncode == 0, done.stdout + done.stderr
    assert contacts(hub) == model(wh)
    write_sync(wh, 5)  # small batches: many checkpoints, so a kill lands mid-way
    return {e: c["hs_object_id"] for e, c in hub.records("contacts", key="email").items()}


def finish_and_check(wh: Warehouse, hub: HubSpotEmulator) -> None:
    done = run(wh.root, hub)
    assert done.returncode == 0, done.stdout + done.stderr
    held = contacts(hub)
    assert len(held) == N, f"{len(held) - N} contacts more than keys (orphans)"
    assert held == model(wh)
    # Nothing is left to send. A plan checks the destination's variables as a run does.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HUBSPOT_TOKEN", hub.token)
        assert api.plan(api.load_project(wh.root), SYNC).counts.planned == 0


@pytest.mark.parametrize("share", [0.3, 0.7])
def test_rekey_by_id_killed_then_rerun(
    wh: Warehouse, hub: tuple[HubSpotEmulator, EmulatorServer], share: float
) -> None:
    emulator, server = hub
    write_project(wh, server)
    ids = first_sync(wh, emulator)
    wh.sql(REKEY)
    emulator.faults.latency = 0.05  # so the kill lands while batches are in flight

    killed = run_and_kill(wh.root, emulator, lambda: moved_contacts(emulator) >= share * MOVED)
    landed = moved_contacts(emulator)
    emulator.faults.latency = 0.0
    assert len(contacts(emulator)) == N  # updated in place: never a contact too many
    finish_and_check(wh, emulator)

    after = {e: c["hs_object_id"] for e, c in emulator.records("contacts", key="email").items()}
    for i in range(20, N + 1, 20):  # the same contact, under its new e-mail
        assert after[f"moved{i}@example.org"] == ids[f"u{i}@example.com"]
    print(
        f"\n[rekey by id, {wh.planner} planner, kill at {share:.0%}] killed={killed} "
        f"moved_before_rerun={landed}"
    )


def archiving(hub: HubSpotEmulator) -> bool:
    """Half the old contacts are archived (the first phase of the run)."""
    return N - len(contacts(hub)) >= MOVED // 2


def creating(hub: HubSpotEmulator) -> bool:
    """Every old contact is archived and half the new ones exist (the second phase)."""
    return moved_contacts(hub) >= MOVED // 2


@pytest.mark.parametrize("point", [archiving, creating], ids=["archiving", "creating"])
def test_rekey_from_an_old_snapshot_killed_then_rerun(
    wh: Warehouse,
    hub: tuple[HubSpotEmulator, EmulatorServer],
    point: Callable[[HubSpotEmulator], bool],
) -> None:
    emulator, server = hub
    write_project(wh, server)
    first_sync(wh, emulator)
    wh.drop_record_ids()
    wh.sql(REKEY)
    emulator.faults.latency = 0.05

    killed = run_and_kill(wh.root, emulator, lambda: point(emulator))
    created = moved_contacts(emulator)
    archived = N - len(contacts(emulator)) + created
    emulator.faults.latency = 0.0
    finish_and_check(wh, emulator)
    print(
        f"\n[rekey archive+create, {wh.planner} planner, kill {point.__name__}] "
        f"killed={killed} archived={archived} created={created}"
    )
