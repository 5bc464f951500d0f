"""What a user sees when Backhaul's own state breaks under it: one line, no traceback.

A damaged snapshot, a damaged run store, a full disk and a model query that fails on one
row each end a real ``backhaul`` process with exactly one stderr line that names what is
broken and the command that recovers; nothing is sent and the rest of the state is left
as it was. Each test then repairs the cause as the message says and runs again: the
destination ends equal to the model.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.sources import pg_database
from tests.sources import pg_exec

from backhaul import api
from backhaul.testing.receiver import WebhookReceiver
from conftest import Builder
from conftest import sqlite_rows

pytestmark = pytest.mark.integration

ROWS = 40


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a failed command (asserting there is exactly one)."""
    assert result.returncode not in (0, None), result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def model_rows(b: Builder) -> list[tuple[Any, ...]]:
    return b.sql("SELECT id, email FROM users ORDER BY id")


def started(b: Builder) -> Path:
    """A project whose sync ``s`` delivered every row once; then the model changed."""
    b.users(ROWS)
    dest = b.sqlite_destination()
    b.sync("s")
    assert b.cli("run", "s").returncode == 0
    assert sqlite_rows(dest) == model_rows(b)
    b.sql("UPDATE users SET email = 'new' || id || '@example.com' WHERE id % 4 = 0")
    return dest


# -- a damaged snapshot ----------------------------------------------------------------


def _garbage(path: Path) -> None:
    path.write_bytes(os.urandom(20_000))


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _truncated(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 3)


def _overwritten(path: Path) -> None:
    # Bytes changed inside the file's blocks: DuckDB finds it by their checksums.
    data = bytearray(path.read_bytes())
    for i in range(12_288 + 64, min(len(data), 12_288 + 64 + 4096)):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


DAMAGE = {
    "garbage": _garbage,
    "empty": _empty,
    "truncated": _truncated,
    "overwritten": _overwritten,
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_snapshot(project: Builder, damage: str) -> None:
    dest = started(project)
    delivered = sqlite_rows(dest)
    state = project.state_file("s")
    DAMAGE[damage](state)
    broken = digest(state)

    for args in (("run", "s"), ("plan", "s")):
        line = one_error_line(project.cli(*args))
        assert "the snapshot of sync `s` is damaged (.backhaul/syncs/s.duckdb: " in line
        assert "nothing was sent" in line
        assert "`backhaul reset s` forgets it, and the next run sends every model row" in line
        assert digest(state) == broken  # not "repaired" behind the user's back
        assert sqlite_rows(dest) == delivered

    assert project.cli("reset", "s").returncode == 0
    assert project.cli("run", "s").returncode == 0
    assert sqlite_rows(dest) == model_rows(project)


def test_snapshot_path_that_is_a_directory(project: Builder) -> None:
    dest = started(project)
    delivered = sqlite_rows(dest)
    state = project.state_file("s")
    aside = state.with_name("kept.duckdb")
    state.rename(aside)
    state.mkdir()

    line = one_error_line(project.cli("run", "s"))

    assert f"the snapshot file {state} is a directory, not a file; nothing was sent" in line
    assert sqlite_rows(dest) == delivered
    state.rmdir()
    aside.rename(state)
    assert project.cli("run", "s").returncode == 0
    assert sqlite_rows(dest) == model_rows(project)


# -- a damaged run store -----------------------------------------------------------------


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_damaged_run_store(project: Builder, damage: str) -> None:
    dest = started(project)
    delivered = sqlite_rows(dest)
    store = project.root / ".backhaul" / "backhaul.db"
    if damage == "garbage":
        store.write_bytes(os.urandom(30_000))
    else:
        os.truncate(store, 8192)
    broken, snapshot = digest(store), digest(project.state_file("s"))

    for args in (("run", "s"), ("runs", "s"), ("serve", "--port", "0")):
        line = one_error_line(project.cli(*args))
        assert f"the run store {store} is damaged (" in line
        assert digest(store) == broken
        assert digest(project.state_file("s")) == snapshot
        assert sqlite_rows(dest) == delivered

    # Recover with the very command the message gives.
    command = re.search(r"\(`([^`]+)`\)", line)
    assert command is not None
    subprocess.run(["bash", "-c", command.group(1)], check=True)
    assert not store.exists()
    rerun = project.cli("run", "s")
    assert rerun.returncode == 0, rerun.stderr
    assert sqlite_rows(dest) == model_rows(project)
    with api.open_store(project.load()) as fresh:
        (last,) = fresh.runs("s")
    # The snapshot survived: only the rows that changed travelled.
    assert last.counts.changed == ROWS // 4 and last.counts.added == 0


# -- a full disk ---------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs of its own, so filling it fills nothing else (needs root, as in CI)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Write a file until the disk refuses; returns it (delete it to free the space)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError as exc:
        assert exc.errno == 28  # ENOSPC
    finally:
        os.close(fd)
    return filler


def on_disk(fast_tmp: Path, disk: Path, *, store_on_disk: bool) -> Builder:
    """A project whose state folder is on ``disk``; its run store there too, or not."""
    state: dict[str, str] = {"path": str(disk / "state")}
    if not store_on_disk:
        state["metadata_url"] = f"sqlite:///{fast_tmp / 'runs.db'}"
    return Builder(fast_tmp / "proj", project_extra={"state": state})


def test_disk_full_while_planning(fast_tmp: Path, small_disk: Path) -> None:
    b = on_disk(fast_tmp, small_disk, store_on_disk=False)
    dest = started(b)
    delivered = sqlite_rows(dest)
    state = small_disk / "state" / "syncs" / "s.duckdb"
    before = digest(state)
    filler = fill(small_disk)

    line = one_error_line(b.cli("run", "s"))

    assert f"no space left on the disk of {state} " in line
    assert "while planning sync `s`; nothing was sent" in line
    assert "Free space there and run `backhaul run s` again" in line
    assert digest(state) == before
    assert sqlite_rows(dest) == delivered
    with api.open_store(b.load()) as store:
        assert store.runs("s")[0].status.value == "failed"

    filler.unlink()
    assert b.cli("run", "s").returncode == 0
    assert sqlite_rows(dest) == model_rows(b)


def test_disk_full_while_checkpointing(fast_tmp: Path, small_disk: Path) -> None:
    b = on_disk(fast_tmp, small_disk, store_on_disk=False)
    # Batches larger than a memory page: a small append could land in the free end of a
    # page the log file already has, and a full tmpfs would not refuse it.
    b.users(1000)
    with WebhookReceiver(key_field="id") as hook:
        b.webhook_destination(hook, name="db")
        b.sync("s", batch_size=500, concurrency=1)
        hook.faults.hold_next(1)
        proc = subprocess.Popen(
            [sys.executable, "-m", "backhaul.cli.app", "run", "s", "-C", str(b.root)],
            env={**os.environ, "NO_COLOR": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            while not hook.calls:  # the first batch is at the destination, held there
                assert proc.poll() is None, proc.communicate()
                time.sleep(0.02)
            filler = fill(small_disk)
            hook.faults.release()
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
        result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

        line = one_error_line(result)
        assert "while recording delivered rows; the run stopped" in line
        assert "Free space there and run `backhaul run s` again" in line
        # The one batch of 500 rows whose checkpoint failed (the webhook splits it into
        # requests of its own size), and nothing after it.
        sent = [rec["id"] for r in hook.calls for rec in r.json["records"]]
        assert sorted(sent) == list(range(1, 501))
        assert len(hook.records) == 500

        filler.unlink()
        assert b.cli("run", "s").returncode == 0
        expected = {str(i): {"id": i, "email": e} for i, e in model_rows(b)}
        assert hook.records == expected


def test_run_store_on_a_full_disk(fast_tmp: Path, small_disk: Path) -> None:
    b = on_disk(fast_tmp, small_disk, store_on_disk=True)
    dest = started(b)
    delivered = sqlite_rows(dest)
    store = small_disk / "state" / "backhaul.db"
    before = digest(store), digest(small_disk / "state" / "syncs" / "s.duckdb")
    filler = fill(small_disk)

    line = one_error_line(b.cli("run", "s"))

    assert f"the run store {store} could not be written (" in line
    assert "its disk has free space and run again" in line
    assert (digest(store), digest(small_disk / "state" / "syncs" / "s.duckdb")) == before
    assert sqlite_rows(dest) == delivered

    filler.unlink()
    assert b.cli("run", "s").returncode == 0
    assert sqlite_rows(dest) == model_rows(b)


# -- a model query that fails on one row ------------------------------------------------

FAILING = {
    "cast": (
        "SELECT id, CASE WHEN id = 7 THEN CAST(email AS INTEGER)::VARCHAR ELSE email END "
        "AS email FROM users",
        "Conversion Error: Could not convert string 'u7@example.com' to INT32",
    ),
    "division": (
        "SELECT id, email FROM users WHERE 100 // (id - 7) >= -100",
        "Division by zero",
    ),
}


@pytest.mark.parametrize("case", list(FAILING))
def test_model_that_fails_on_a_row(project: Builder, case: str) -> None:
    dest = started(project)
    delivered = sqlite_rows(dest)
    snapshot = digest(project.state_file("s"))
    sql, cause = FAILING[case]
    project.write("models/users.sql", sql + "\n")

    line = one_error_line(project.cli("run", "s"))

    assert line.startswith("error: s: models/users.sql: the model query failed on its rows: ")
    assert cause in line and line.endswith("Nothing was sent")
    assert sqlite_rows(dest) == delivered
    assert digest(project.state_file("s")) == snapshot
    with api.open_store(project.load()) as store:
        last = store.runs("s")[0]
    assert last.status.value == "failed" and last.error is not None
    assert last.error.startswith("models/users.sql: the model query failed")

    project.write("models/users.sql", "SELECT * FROM users\n")
    assert project.cli("run", "s").returncode == 0
    assert sqlite_rows(dest) == model_rows(project)


@pytest.mark.parametrize("planner", ["local", "warehouse"])
def test_postgres_model_that_fails_on_a_row(project: Builder, planner: str) -> None:
    # Locally planned, Postgres fails mid-stream (rows before it were already read);
    # planned in the warehouse, the statement running the model fails there.
    with pg_database() as url:
        pg_exec(
            url,
            "CREATE TABLE users (id bigint PRIMARY KEY, email text)",
            "INSERT INTO users SELECT i, 'u' || i || '@example.com' "
            "FROM generate_series(1, 3000) i",
        )
        project.write("sources/wh.yml", {"type": "postgres", "url": url})
        project.model("users", "SELECT id, email FROM users WHERE 1 / (2500 - id) >= 0")
        dest = project.sqlite_destination()
        project.sync("s", planner=planner)

        line = one_error_line(project.cli("run", "s"))

        assert line.startswith("error: s: models/users.sql: the model query failed on its rows: ")
        assert "division by zero" in line and line.endswith("Nothing was sent")
        assert not dest.exists() or sqlite_rows(dest) == []
        with api.open_store(project.load()) as store:
            (last,) = store.runs("s")
        assert last.status.value == "failed"

        project.model("users", "SELECT id, email FROM users")
        assert project.cli("run", "s").returncode == 0
        assert sqlite_rows(dest) == pg_rows(url)


def pg_rows(url: str) -> list[tuple[Any, ...]]:
    """The model's rows in Postgres, to compare with the destination."""
    import psycopg

    with psycopg.connect(url) as conn:
        return [tuple(r) for r in conn.execute("SELECT id, email FROM users ORDER BY id")]
