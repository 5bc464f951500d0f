"""Crash safety of the warehouse planner: ``backhaul run`` killed with SIGKILL, then run again.

A 200,000-row Postgres model is mirrored to a Postgres table by a ``backhaul run``
subprocess planning in the warehouse. The process is killed while it sends and
checkpoints (once half the keys are in the ``people_acks`` log), or once every batch is
checkpointed (while it folds the ack log into the snapshot). Checkpoints committed before
the kill must survive it, a fold must be all or nothing, the next run must succeed and
leave the table equal to the model, and the one after sends nothing. Kill points are found
by polling the warehouse's ack log; a run that ends before its kill point still has to
satisfy every assertion, so timing cannot make the test fail.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from engine.plan import pg_database

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOTAL = 200_000
GIVE_UP_S = 300.0  # a safety net against a hung subprocess; no assertion depends on time
COLUMNS = "id, email, score, active, signup"
MODEL = f"""
CREATE TABLE people AS
SELECT i::bigint AS id, 'user' || i || '@example.com' AS email,
       ((i * 7919) % 100003)::float8 / 7.0 AS score, i % 3 = 0 AS active,
       DATE '2020-01-01' + (i % 1500) AS signup
FROM generate_series(1, {TOTAL}) AS t(i)
"""


@pytest.fixture
def warehouse_url() -> Iterator[str]:
    yield from pg_database("bh_kwh")


@pytest.fixture
def dest_url() -> Iterator[str]:
    yield from pg_database("bh_kdst")


def _rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql.encode())
        return cur.fetchall() if cur.description else []


def _project(root: Path, warehouse_url: str, dest_url: str) -> Path:
    files = {
        "backhaul.yml": "name: killwh\n",
        "sources/wh.yml": f"type: postgres\nurl: {warehouse_url}\n",
        "models/people.yml": "source: wh\nprimary_key: id\n",
        "models/people.sql": "SELECT * FROM people\n",
        "destinations/pg.yml": f"type: postgres\nurl: {dest_url}\ntable: people\n"
        "create_table: true\n",
        "syncs/people.yml": "model: people\ndestination: pg\nmode: mirror\nbatch_size: 2000\n"
        "concurrency: 3\nplanner: warehouse\nmappings:\n"
        + "".join(f"  - column: {c}\n    field: {c}\n" for c in COLUMNS.split(", ")),
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def _command(root: Path) -> list[str]:
    return [sys.executable, "-m", "backhaul.cli.app", "run", "people", "-C", str(root)]


def _env() -> dict[str, str]:
    return {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}


def _count(url: str, sql: str) -> int:
    try:
        return int(_rows(url, sql)[0][0])
    except psycopg.errors.UndefinedTable:
        return 0


def _settle(*urls: str) -> None:
    """Wait until the killed client's sessions are gone (a COMMIT may be completing)."""
    names = [u.rsplit("/", 1)[1] for u in urls]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rows = _rows(
            urls[0],
            "SELECT count(*) FROM pg_stat_activity WHERE datname = ANY(%s) "
            "AND pid <> pg_backend_pid()".replace(
                "%s", "ARRAY[" + ", ".join(f"'{n}'" for n in names) + "]"
            ),
        )
        if rows[0][0] == 0:
            return
        time.sleep(0.05)
    pytest.fail("the killed run's sessions did not end")


def _run_and_kill(root: Path, reached: Callable[[], bool]) -> bool:
    log = root / "killed-run.log"
    with log.open("w") as out:
        proc = subprocess.Popen(_command(root), env=_env(), stdout=out, stderr=subprocess.STDOUT)
        killed = False
        deadline = time.monotonic() + GIVE_UP_S
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                if reached():
                    os.kill(proc.pid, signal.SIGKILL)
                    killed = True
                    break
                time.sleep(0.02)
        finally:
            if proc.poll() is None and not killed:
                proc.kill()
            proc.wait(timeout=60)
    assert proc.returncode in (0, -signal.SIGKILL), log.read_text()
    return proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize("point", ["sending", "folding"])
def test_killed_run_is_followed_by_a_run_that_delivers_everything(
    tmp_path: Path, warehouse_url: str, dest_url: str, point: str
) -> None:
    _rows(warehouse_url, MODEL)
    root = _project(tmp_path / "proj", warehouse_url, dest_url)
    acks = "SELECT count(*) FROM backhaul_planner.people_acks"

    # Polling the ack log (not the destination) puts the kill inside the checkpoint phase:
    # when sending, half the keys are committed there and the rest are still to come.
    wanted = TOTAL // 2 if point == "sending" else TOTAL

    def reached() -> bool:
        # At TOTAL every batch is checkpointed: the run is folding the log into the snapshot.
        return _count(warehouse_url, acks) >= wanted

    killed = _run_and_kill(root, reached)
    _settle(warehouse_url, dest_url)
    snapshot = _count(warehouse_url, "SELECT count(*) FROM backhaul_planner.people_snapshot")
    pending = _count(warehouse_url, acks)
    print(f"\n[kill {point}] killed={killed} snapshot={snapshot} acks={pending}")  # `pytest -s`
    if killed:
        assert snapshot + pending <= TOTAL  # no key acknowledged twice, nothing invented
        if point == "sending":
            # Every checkpoint committed before the kill survives it (or was folded).
            assert snapshot + pending >= wanted
        else:
            # The fold is one transaction: it either happened entirely or not at all.
            assert (snapshot, pending) in {(0, TOTAL), (TOTAL, 0)}

    done = subprocess.run(
        _command(root), env=_env(), capture_output=True, text=True, timeout=GIVE_UP_S, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr

    model = _rows(warehouse_url, f"SELECT {COLUMNS} FROM people ORDER BY id")
    table = _rows(dest_url, f"SELECT {COLUMNS} FROM people ORDER BY id")
    assert len(table) == TOTAL and table == model
    assert _count(warehouse_url, "SELECT count(*) FROM backhaul_planner.people_snapshot") == TOTAL
    assert _count(warehouse_url, acks) == 0

    # The next run finds nothing to send.
    again = subprocess.run(
        [*_command(root), "--json"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=GIVE_UP_S,
        check=False,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert '"added": 0' in again.stdout and '"changed": 0' in again.stdout
