"""Crash safety of a first load in one statement: ``backhaul run`` to an empty DuckDB table,
killed with SIGKILL while it loads, records or logs, then run again without a kill.

The second run must succeed and leave the table equal to the model with every key once;
a run after it must plan nothing. The DuckDB file is locked while a run holds it, so
kill points are read from the run store (the run recorded as running; its counts
recorded, which comes after the destination's commit and before the snapshot's) plus a
few delays after the run started. A kill that comes after the run ended changes nothing
the assertions rely on: timing can move a kill, never fail the test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest
import sqlalchemy.exc

from backhaul import api
from backhaul.state.store import INTERRUPTED
from backhaul.state.store import RunRecord
from backhaul.state.store import RunStore
from backhaul.summary import RunStatus

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SYNC = "people"
TOTAL = 300_000
GIVE_UP_S = 300.0  # a safety net against a hung subprocess only
POLL_S = 0.01
COLUMNS = ("id", "email", "score", "seen_at", "balance")


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    write(root, "backhaul.yml", "name: firstload\n")
    write(root, "sources/wh.yml", "type: duckdb\npath: wh.duckdb\n")
    write(root, "models/people.yml", "source: wh\nprimary_key: id\n")
    write(root, "models/people.sql", "SELECT * FROM people\n")
    write(
        root,
        "destinations/crm.yml",
        "type: duckdb\npath: crm.duckdb\ntable: people\ncreate_table: true\n",
    )
    maps = "".join(f"  - column: {c}\n    field: {c}\n" for c in COLUMNS)
    write(
        root,
        f"syncs/{SYNC}.yml",
        f"model: people\ndestination: crm\nmode: mirror\nmappings:\n{maps}",
    )
    with duckdb.connect(str(root / "wh.duckdb")) as con:
        con.execute(
            "CREATE TABLE people AS SELECT i::BIGINT AS id, 'p' || i || '@example.com' AS email, "
            "(i * 7919 % 100003)::DOUBLE / 7 AS score, "
            "TIMESTAMP '2024-01-01' + to_seconds(i) AS seen_at, "
            f"(i % 100000 / 100)::DECIMAL(12, 2) AS balance FROM range({TOTAL}) t(i)"
        )
    return root


def runs(root: Path) -> list[RunRecord]:
    """The sync's runs, newest first; [] while the first run is still creating the store."""
    if not (root / ".backhaul" / "backhaul.db").exists():
        return []
    store = RunStore(str(api.load_project(root).metadata_url))
    try:
        return store.runs(SYNC, limit=10)
    except sqlalchemy.exc.OperationalError:
        return []
    finally:
        store.close()


def started(root: Path) -> bool:
    found = runs(root)
    return bool(found) and found[0].status is RunStatus.RUNNING


def recorded(root: Path) -> bool:
    """The load committed and its counts are recorded; the snapshot may not be written."""
    found = runs(root)
    return bool(found) and found[0].counts.succeeded > 0


def command(root: Path) -> list[str]:
    return [sys.executable, "-m", "backhaul.cli.app", "run", SYNC, "-C", str(root)]


def run_and_kill(root: Path, reached: Callable[[Path], bool], delay: float) -> bool:
    """Start a run; SIGKILL it ``delay`` seconds after ``reached`` holds. True: killed."""
    env = {**os.environ, "NO_COLOR": "1"}
    log = root / "killed.log"
    with log.open("w") as out:
        proc = subprocess.Popen(command(root), env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + GIVE_UP_S
            while proc.poll() is None and time.monotonic() < deadline:
                if reached(root):
                    time.sleep(delay)
                    if proc.poll() is None:
                        os.kill(proc.pid, signal.SIGKILL)
                    break
                time.sleep(POLL_S)
        finally:
            if proc.poll() is None and time.monotonic() >= deadline:
                proc.kill()
            proc.wait(timeout=60)
    assert proc.returncode in (0, -signal.SIGKILL), log.read_text()
    return proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize(
    ("reached", "delay"),
    [(started, 0.0), (started, 0.4), (started, 1.0), (recorded, 0.0), (recorded, 0.05)],
    ids=["started", "loading-0.4s", "loading-1s", "recorded", "logging"],
)
def test_a_killed_first_load_is_completed_by_the_next_run(
    root: Path, reached: Callable[[Path], bool], delay: float
) -> None:
    run_and_kill(root, reached, delay)

    again = subprocess.run(
        command(root),
        env={**os.environ, "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=GIVE_UP_S,
        check=False,
    )

    assert again.returncode == 0, again.stdout + again.stderr
    cols = ", ".join(COLUMNS)
    with duckdb.connect(str(root / "crm.duckdb")) as con:
        con.execute(f"ATTACH '{root / 'wh.duckdb'}' AS wh (READ_ONLY)")
        counts = con.execute("SELECT count(*), count(DISTINCT id) FROM people").fetchall()
        differ = con.execute(
            f"SELECT count(*) FROM ((SELECT {cols} FROM people EXCEPT SELECT {cols} FROM wh.people) "
            f"UNION ALL (SELECT {cols} FROM wh.people EXCEPT SELECT {cols} FROM people))"
        ).fetchall()
    # The table has no key to refuse a resent row: one row per id is the merge's doing.
    assert counts == [(TOTAL, TOTAL)]
    assert differ == [(0,)]
    history = runs(root)
    assert history[0].status is RunStatus.SUCCEEDED
    # The killed run is not left running: it failed as interrupted, or it had ended.
    assert history[1].status in (RunStatus.FAILED, RunStatus.SUCCEEDED)
    if history[1].status is RunStatus.FAILED:
        assert INTERRUPTED in (history[1].error or "")
    final = api.plan(api.load_project(root), SYNC)
    assert final.counts.planned == 0
