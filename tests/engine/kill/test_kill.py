"""Crash safety: ``backhaul run`` killed with SIGKILL at many points, then run again.

Each test builds a 200,000-row DuckDB model with columns of mixed types, mirrors it to a
real PostgreSQL table from a ``backhaul run`` subprocess, kills that process with
SIGKILL while it plans or sends, and runs the sync again without killing it. The second
run must succeed, leave the table equal to the model row for row, resend only rows whose
checkpoint was not written (at most the batches in flight at the kill), and the killed
run must show up in the history as failed (interrupted).

Kill points are found by polling the destination table and the run store. When a run
ends before its kill point is reached, the assertions still hold (nothing is left to
resend), so timing cannot make a test fail; it can only make a kill land later.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest
import sqlalchemy.exc

from backhaul import api
from backhaul.state import snapshots
from backhaul.state.store import INTERRUPTED
from backhaul.state.store import RunRecord
from backhaul.state.store import RunStore
from backhaul.summary import RunStatus

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
SYNC = "people_to_pg"
TOTAL = 200_000
BATCH = 2_000
CONCURRENCY = 3
# Only a safety net against a hung subprocess; no assertion depends on time.
GIVE_UP_S = 300.0
POLL_S = 0.02

COLUMNS = (
    "id",
    "email",
    "name",
    "score",
    "visits",
    "active",
    "signup",
    "seen_at",
    "balance",
    "plan",
)


def people_sql(lo: int, hi: int) -> str:
    """SELECT of the model rows with ids in [lo, hi): ten columns of mixed types."""
    return f"""
    SELECT i::BIGINT AS id,
           'user' || i || '@example.com' AS email,
           'Zoë Ångström ' || (i % 977) AS name,
           ((i * 7919) % 100003)::DOUBLE / 7.0 AS score,
           (i % 50000)::INTEGER AS visits,
           i % 3 = 0 AS active,
           DATE '2020-01-01' + (i % 1500)::INTEGER AS signup,
           TIMESTAMP '2023-01-01' + to_seconds(i * 37) + to_microseconds(i % 1000) AS seen_at,
           ((i * 13) % 1000000 / 100)::DECIMAL(12, 2) AS balance,
           CASE WHEN i % 10 = 0 THEN NULL ELSE ['free', 'pro', 'team'][1 + i % 3] END AS plan
    FROM range({lo}, {hi}) t(i)
    """


# About 1% each: ids ending in 01 change, ids ending in 02 leave, 2,000 new ids arrive.
CHANGES = (
    "UPDATE people SET email = 'changed' || id || '@example.org', score = score + 0.5, "
    "plan = NULL WHERE id % 100 = 1",
    "DELETE FROM people WHERE id % 100 = 2",
    f"INSERT INTO people {people_sql(TOTAL, TOTAL + TOTAL // 100)}",
)
CHANGED = ADDED = REMOVED = TOTAL // 100


# -- the project ---------------------------------------------------------------------------


@dataclass
class KillProject:
    """A project folder mirroring the ``people`` model to a table in a throwaway database."""

    root: Path
    url: str
    _pg: psycopg.Connection[tuple[Any, ...]] | None = None
    _store: RunStore | None = None

    def write(self, rel: str, text: str) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")

    def write_sync(self, batch_size: int) -> None:
        maps = "".join(f"  - column: {c}\n    field: {c}\n" for c in COLUMNS)
        self.write(
            f"syncs/{SYNC}.yml",
            f"model: people\ndestination: pg\nmode: mirror\nbatch_size: {batch_size}\n"
            f"concurrency: {CONCURRENCY}\nmappings:\n{maps}",
        )

    def warehouse(self, *statements: str) -> None:
        con = duckdb.connect(str(self.root / "wh.duckdb"))
        try:
            for stmt in statements:
                con.execute(stmt)
        finally:
            con.close()

    def model_rows(self) -> list[tuple[Any, ...]]:
        con = duckdb.connect(str(self.root / "wh.duckdb"), read_only=True)
        try:
            return con.execute(f"SELECT {', '.join(COLUMNS)} FROM people ORDER BY id").fetchall()
        finally:
            con.close()

    def table_rows(self) -> list[tuple[Any, ...]]:
        cols = ", ".join(f'"{c}"' for c in COLUMNS)
        with psycopg.connect(self.url) as conn:
            return conn.execute(f"SELECT {cols} FROM people ORDER BY id").fetchall()

    def pg_scalar(self, sql: str) -> int:
        # One connection kept for polling, so watching a run costs it little.
        if self._pg is None:
            self._pg = psycopg.connect(self.url, autocommit=True)
        return int(self._pg.execute(sql).fetchall()[0][0])

    @property
    def state_file(self) -> Path:
        return snapshots.state_path(self.root / ".backhaul", SYNC)

    def runs(self) -> list[RunRecord]:
        """Every run of the sync, newest first (read without migrating the store)."""
        if self._store is None:
            self._store = RunStore(str(api.load_project(self.root).metadata_url))
        return self._store.runs(SYNC, limit=100)

    def close(self) -> None:
        if self._pg is not None:
            self._pg.close()
        if self._store is not None:
            self._store.close()

    def runs_so_far(self) -> list[RunRecord]:
        """Like :meth:`runs`, while a run may still be creating the store: [] until it exists."""
        if not (self.root / ".backhaul" / "backhaul.db").exists():
            return []
        try:
            return self.runs()
        except sqlalchemy.exc.OperationalError:
            return []  # the first run is creating the store's tables right now

    def command(self) -> list[str]:
        return [sys.executable, "-m", "backhaul.cli.app", "run", SYNC, "-C", str(self.root)]

    def run(self) -> subprocess.CompletedProcess[str]:
        """One run to its end, as a user would start it."""
        return subprocess.run(
            self.command(),
            env=_env(),
            capture_output=True,
            text=True,
            timeout=GIVE_UP_S,
            check=False,
        )


def _env() -> dict[str, str]:
    return {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}


@pytest.fixture
def kill_project(tmp_path: Path) -> Iterator[KillProject]:
    """The project, with its model built and a fresh Postgres database dropped afterwards."""
    name = f"bh_kill_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        kp = KillProject(tmp_path / "proj", f"postgresql://postgres@127.0.0.1:5432/{name}")
        kp.write("backhaul.yml", "name: killtest\n")
        kp.write("sources/wh.yml", "type: duckdb\npath: wh.duckdb\n")
        kp.write("models/people.yml", "source: wh\nprimary_key: id\n")
        kp.write("models/people.sql", "SELECT * FROM people\n")
        kp.write(
            "destinations/pg.yml",
            f"type: postgres\nurl: {kp.url}\ntable: people\ncreate_table: true\n",
        )
        kp.write_sync(BATCH)
        kp.warehouse(f"CREATE TABLE people AS {people_sql(0, TOTAL)}")
        try:
            yield kp
        finally:
            kp.close()
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- killing a run -------------------------------------------------------------------------


@dataclass
class Killed:
    """What the test saw of a run it killed."""

    killed: bool  # False: the run had already ended when its kill point came
    record: RunRecord | None  # the run as stored right after the kill
    running: bool  # it was still ``running`` in the store when it died
    acked: int  # checkpointed records of this run (its acks in the state log)
    acked_ops: dict[str, int]


def run_and_kill(kp: KillProject, reached: Callable[[KillProject], bool]) -> Killed:
    """Start a run and SIGKILL it as soon as ``reached`` says so."""
    before = {r.run_id for r in kp.runs_so_far()}
    out_path = kp.root / f"run-{uuid.uuid4().hex[:6]}.log"
    with out_path.open("w") as out:
        proc = subprocess.Popen(kp.command(), env=_env(), stdout=out, stderr=subprocess.STDOUT)
        killed = False
        try:
            deadline = time.monotonic() + GIVE_UP_S
            while proc.poll() is None and time.monotonic() < deadline:
                if reached(kp):
                    os.kill(proc.pid, signal.SIGKILL)
                    killed = True
                    break
                time.sleep(POLL_S)
        finally:
            if proc.poll() is None and not killed:
                proc.kill()  # hung: fail below rather than leave it behind
            proc.wait(timeout=60)
    assert proc.returncode in (0, -signal.SIGKILL), out_path.read_text()
    killed = proc.returncode == -signal.SIGKILL
    wait_for_backends(kp)
    new = [r for r in kp.runs() if r.run_id not in before]
    record = new[0] if new else None
    running = record is not None and record.status is RunStatus.RUNNING
    assert killed or not running
    acked, ops = acked_by(kp, record)
    return Killed(killed, record, running, acked, ops)


def wait_for_backends(kp: KillProject) -> None:
    """Wait until Postgres has finished with the killed client's sessions.

    A COMMIT sent just before the kill may still be completing; counting rows before
    the session ends would undercount what reached the table.
    """
    db = kp.url.rsplit("/", 1)[1]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with psycopg.connect(PG_ADMIN) as conn:
            rows = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                "AND application_name = 'backhaul'",
                (db,),
            ).fetchall()
        if rows[0][0] == 0:
            return
        time.sleep(0.05)
    pytest.fail("the killed run's Postgres sessions did not end")


def acked_by(kp: KillProject, record: RunRecord | None) -> tuple[int, dict[str, int]]:
    """How many records of ``record``'s run are checkpointed, by planned operation.

    Reads the append-only ack log. A run that got as far as its closing fold acked
    everything it planned (the fold comes after the last checkpoint), so then the
    run's own final counts are the answer.
    """
    if record is None or not kp.state_file.exists():
        return 0, {}
    con = duckdb.connect(str(kp.state_file), read_only=True)
    try:
        has_acks = con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'acks'"
        ).fetchall()[0][0]
        rows = (
            con.execute(
                "SELECT op, count(*) FROM acks WHERE run_id = ? GROUP BY op", [record.run_id]
            ).fetchall()
            if has_acks
            else []
        )
    finally:
        con.close()
    ops = {str(op): int(n) for op, n in rows}
    if ops:
        return sum(ops.values()), ops
    c = record.counts
    if c.planned and c.succeeded == c.planned:
        return c.planned, {"(folded)": c.planned}
    return 0, {}


def pending_acks(kp: KillProject) -> int:
    """Rows in the ack log not yet folded into the snapshot."""
    con = duckdb.connect(str(kp.state_file), read_only=True)
    try:
        return int(con.execute("SELECT count(*) FROM acks").fetchall()[0][0])
    finally:
        con.close()


# -- kill points ---------------------------------------------------------------------------


def planning(kp: KillProject) -> bool:
    """The newest run is recorded as running and nothing was sent yet: it is planning."""
    runs = kp.runs_so_far()
    return bool(runs) and runs[0].status is RunStatus.RUNNING and runs[0].counts.succeeded == 0


def rows_in_table(n: int) -> Callable[[KillProject], bool]:
    """At least ``n`` rows committed in the destination table."""

    def reached(kp: KillProject) -> bool:
        try:
            return kp.pg_scalar("SELECT count(*) FROM people") >= n
        except psycopg.errors.UndefinedTable:
            return False  # created once planning is done

    return reached


def checkpointed(share: float) -> Callable[[KillProject], bool]:
    """The newest run recorded at least ``share`` of its planned rows as sent."""

    def reached(kp: KillProject) -> bool:
        runs = kp.runs_so_far()
        if not runs or runs[0].status is not RunStatus.RUNNING:
            return False
        c = runs[0].counts
        return c.planned > 0 and c.succeeded >= share * c.planned

    return reached


# -- checks --------------------------------------------------------------------------------


def assert_table_equals_model(kp: KillProject) -> None:
    model = kp.model_rows()
    table = kp.table_rows()
    if model == table:
        return
    missing = sorted(set(model) - set(table))
    extra = sorted(set(table) - set(model))
    pytest.fail(
        f"table has {len(table)} rows, model {len(model)}; {len(missing)} model rows missing "
        f"or different (first: {missing[:3]}), {len(extra)} table rows extra or different "
        f"(first: {extra[:3]})"
    )


def rerun(kp: KillProject, killed: Killed) -> RunRecord:
    """Run to the end; check it succeeded and the killed run is marked interrupted."""
    done = kp.run()
    assert done.returncode == 0, done.stdout + done.stderr
    runs = {r.run_id: r for r in kp.runs()}
    last = kp.runs()[0]
    assert last.status is RunStatus.SUCCEEDED, last
    assert last.counts.rejected == 0 and last.counts.invalid == 0
    if killed.record is not None:
        after = runs[killed.record.run_id]
        if killed.running:
            assert after.status is RunStatus.FAILED
            assert after.error == INTERRUPTED
            assert after.finished_at is None
        else:
            assert after.status is killed.record.status
    assert_table_equals_model(kp)
    return last


def report(label: str, **numbers: object) -> None:
    # Shown with `pytest -s`: where each kill landed and what the next run resent.
    print(f"\n[kill {label}] " + ", ".join(f"{k}={v}" for k, v in numbers.items()))


# -- tests ---------------------------------------------------------------------------------


KILL_POINTS: dict[str, Callable[[KillProject], bool]] = {
    "planning": planning,
    "10%": rows_in_table(TOTAL // 10),
    "50%": rows_in_table(TOTAL // 2),
    "90%": rows_in_table(TOTAL * 9 // 10),
}


def kill_first_sync_then_rerun(
    kp: KillProject, point: str, reached: Callable[[KillProject], bool]
) -> None:
    """Kill the first sync of the model at ``reached``, run again, check both runs."""
    killed = run_and_kill(kp, reached)
    try:
        at_destination = kp.pg_scalar("SELECT count(*) FROM people")
    except psycopg.errors.UndefinedTable:
        at_destination = 0

    # Every checkpointed record reached the table; at most the batches in flight (one per
    # concurrent writer) reached it without a checkpoint.
    assert killed.acked <= at_destination <= killed.acked + CONCURRENCY * BATCH
    if killed.record is not None:
        assert killed.record.counts.succeeded <= killed.acked  # store counts trail the log

    last = rerun(kp, killed)

    # The next run plans exactly the rows without a checkpoint: acked ones never travel again.
    assert last.counts.added == TOTAL - killed.acked
    assert last.counts.succeeded == TOTAL - killed.acked
    assert last.counts.changed == last.counts.removed == 0
    if killed.acked:
        assert last.counts.succeeded < TOTAL
    resent = last.counts.succeeded - (TOTAL - at_destination)
    assert 0 <= resent <= CONCURRENCY * BATCH
    report(
        point,
        killed=killed.killed,
        at_destination=at_destination,
        acked=killed.acked,
        store_succeeded=killed.record.counts.succeeded if killed.record else None,
        second_run_sent=last.counts.succeeded,
        resent=resent,
    )


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_first_sync_killed_then_rerun(kill_project: KillProject, point: str) -> None:
    kill_first_sync_then_rerun(kill_project, point, KILL_POINTS[point])


def test_run_with_changes_killed_then_rerun(kill_project: KillProject) -> None:
    kp = kill_project
    # The first sync dies after its last checkpoint, while the acks fold into the snapshot.
    kill_first_sync_then_rerun(kp, "last-ack", checkpointed(1.0))

    kp.warehouse(*CHANGES)
    # Small batches so the 6,000 changes take many checkpoints and the kill lands mid-way.
    kp.write_sync(100)
    planned = CHANGED + ADDED + REMOVED
    # Upserts go first, removals last: at 80% both kinds have been acknowledged.
    killed = run_and_kill(kp, checkpointed(0.8))
    # Changes of each kind the table already shows (new ids also end in 01 and 02).
    applied = (
        kp.pg_scalar(
            f"SELECT count(*) FROM people WHERE id < {TOTAL} AND id % 100 = 1 "
            "AND email LIKE 'changed%'"
        )
        + REMOVED
        - kp.pg_scalar(f"SELECT count(*) FROM people WHERE id < {TOTAL} AND id % 100 = 2")
        + kp.pg_scalar(f"SELECT count(*) FROM people WHERE id >= {TOTAL}")
    )
    assert killed.acked <= applied <= killed.acked + CONCURRENCY * 100
    if killed.record is not None and killed.killed:
        c = killed.record.counts
        assert (c.added, c.changed, c.removed) == (ADDED, CHANGED, REMOVED)

    # A run killed while planning folds the previous run's checkpoints (or not): either
    # way nothing acknowledged may be planned again.
    early = run_and_kill(kp, planning)
    folded = pending_acks(kp) == 0  # whether the killed planning got past its opening fold

    last = rerun(kp, killed)
    if early.record is not None and early.running:
        assert {r.run_id: r for r in kp.runs()}[early.record.run_id].error == INTERRUPTED
    # The run that finished the work: the last one, or the "early" one if it was too quick.
    resumed = last if early.killed or early.record is None else early.record
    assert resumed.counts.planned == planned - killed.acked
    assert resumed.counts.succeeded == planned - killed.acked
    if killed.acked:
        assert resumed.counts.succeeded < planned
    resent = resumed.counts.succeeded - (planned - applied)
    assert 0 <= resent <= CONCURRENCY * 100
    # The history a user sees lists the killed runs as failed.
    history = subprocess.run(
        [sys.executable, "-m", "backhaul.cli.app", "runs", SYNC, "-C", str(kp.root)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=GIVE_UP_S,
        check=False,
    )
    assert history.returncode == 0, history.stderr
    lines = history.stdout.splitlines()
    for gone in (killed, early):
        if gone.record is not None and gone.running:
            assert any(gone.record.run_id in ln and "failed" in ln for ln in lines), history.stdout
    report(
        "changes-80%",
        killed=killed.killed,
        acked=killed.acked,
        acked_ops=killed.acked_ops,
        applied_at_destination=applied,
        planning_kill=early.killed,
        acks_folded_before_planning_kill=folded,
        resumed_planned=resumed.counts.planned,
        resent=resent,
    )
