"""Crash safety of the queue destinations: a 100,000-row sync to each real broker, killed
with SIGKILL mid-run, run again, then a round of updates, removals and additions.

Every change must reach the broker at least once with its message id, and a consumer that
drops messages whose id it has seen must see exactly the model's changes: one ``add`` per
first-run row, one ``change``, ``remove`` or ``add`` per changed, removed or new row, each
carrying the model's values. Only messages of batches in flight at the kill may come twice.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlalchemy.exc
from tests.conftest import dump_yaml
from tests.conftest import free_port
from tests.destinations.brokers import BROKERS
from tests.destinations.brokers import Broker
from tests.destinations.brokers import Mqtt
from tests.destinations.brokers import Received
from tests.destinations.brokers import check_id

from backhaul import api
from backhaul.state.store import RunRecord
from backhaul.state.store import RunStore
from backhaul.summary import RunStatus

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SYNC = "people_to_queue"
TOTAL = 100_000
BATCH = 2_000
CONCURRENCY = 2
# Only a safety net against a hung subprocess; no assertion depends on time.
GIVE_UP_S = 900.0
POLL_S = 0.05
ENV = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
COLUMNS = ("id", "email", "name", "score", "visits", "active", "signup", "plan")


def people_sql(lo: int, hi: int) -> str:
    return f"""
    SELECT i::BIGINT AS id,
           'user' || i || '@example.com' AS email,
           'Zoë Ångström ' || (i % 977) AS name,
           ((i * 7919) % 100003)::DOUBLE / 7.0 AS score,
           (i % 50000)::INTEGER AS visits,
           i % 3 = 0 AS active,
           DATE '2020-01-01' + (i % 1500)::INTEGER AS signup,
           CASE WHEN i % 10 = 0 THEN NULL ELSE ['free', 'pro', 'team'][1 + i % 3] END AS plan
    FROM range({lo}, {hi}) t(i)
    """


# About 1% each: ids ending in 01 change, ids ending in 02 leave, 1,000 new ids arrive.
CHANGES = (
    "UPDATE people SET email = 'changed' || id || '@example.org', score = score + 0.5, "
    "plan = NULL WHERE id % 100 = 1",
    "DELETE FROM people WHERE id % 100 = 2",
    f"INSERT INTO people {people_sql(TOTAL, TOTAL + TOTAL // 100)}",
)


@dataclass
class QueueProject:
    """A project folder syncing the ``people`` model to one broker."""

    root: Path
    _store: RunStore | None = None

    def write(self, rel: str, text: str) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")

    def warehouse(self, *statements: str) -> None:
        con = duckdb.connect(str(self.root / "wh.duckdb"))
        try:
            for stmt in statements:
                con.execute(stmt)
        finally:
            con.close()

    def model(self) -> dict[str, dict[str, Any]]:
        """The model's rows as a consumer sees their fields (dates as ISO text), by key."""
        con = duckdb.connect(str(self.root / "wh.duckdb"), read_only=True)
        try:
            rows = con.execute(f"SELECT {', '.join(COLUMNS)} FROM people").fetchall()
        finally:
            con.close()
        out: dict[str, dict[str, Any]] = {}
        for row in rows:
            fields = dict(zip(COLUMNS, row, strict=True))
            fields["signup"] = fields["signup"].isoformat()
            out[str(fields["id"])] = fields
        return out

    def runs(self) -> list[RunRecord]:
        """Every run of the sync, newest first ([] while the first run creates the store)."""
        if not (self.root / ".backhaul" / "backhaul.db").exists():
            return []
        try:
            if self._store is None:
                self._store = RunStore(str(api.load_project(self.root).metadata_url))
            return self._store.runs(SYNC, limit=100)
        except sqlalchemy.exc.OperationalError:
            return []

    def command(self) -> list[str]:
        return [sys.executable, "-m", "backhaul.cli.app", "run", SYNC, "-C", str(self.root)]

    def kill_mid_run(self, share: float) -> tuple[bool, int]:
        """Start a run and SIGKILL it once ``share`` of its planned rows are checkpointed.

        Returns whether it was killed (it may have ended first) and its checkpointed rows.
        """
        with (self.root / f"run-{uuid.uuid4().hex[:6]}.log").open("w") as out:
            proc = subprocess.Popen(self.command(), env=ENV, stdout=out, stderr=subprocess.STDOUT)
            killed = False
            deadline = time.monotonic() + GIVE_UP_S
            try:
                while proc.poll() is None and time.monotonic() < deadline:
                    runs = self.runs()
                    c = runs[0].counts if runs else None
                    if c is not None and c.planned and c.succeeded >= share * c.planned:
                        os.kill(proc.pid, signal.SIGKILL)
                        killed = True
                        break
                    time.sleep(POLL_S)
            finally:
                if proc.poll() is None and not killed:
                    proc.kill()  # hung: fail below rather than leave it behind
                proc.wait(timeout=60)
        assert proc.returncode in (0, -signal.SIGKILL)
        runs = self.runs()
        return proc.returncode == -signal.SIGKILL, runs[0].counts.succeeded if runs else 0

    def run_to_end(self) -> None:
        done = subprocess.run(
            self.command(),
            env=ENV,
            capture_output=True,
            text=True,
            timeout=GIVE_UP_S,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        last = self.runs()[0]
        assert last.status is RunStatus.SUCCEEDED and last.counts.rejected == 0, last

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


MOSQUITTO = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")


@contextmanager
def private_mosquitto(tmp_path: Path) -> Iterator[int]:
    """A Mosquitto of the test's own whose queue towards a subscriber has no limit.

    A stock Mosquitto keeps at most 1,000 messages queued for a subscriber and drops the
    rest ("Outgoing messages are being dropped" in its log). At 100,000 messages on a busy
    machine the test's subscriber falls that far behind, and the broker's drops would look
    like messages the destination lost. The destination itself is unchanged.
    """
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_queued_messages 0\nmax_queued_bytes 0\n"
    )
    proc = subprocess.Popen(
        [str(MOSQUITTO), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    pytest.fail(f"the test's own mosquitto did not start: {err}")
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if proc.stderr is not None:
            proc.stderr.close()


@pytest.fixture(params=sorted(BROKERS))
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[QueueProject, Broker]]:
    with ExitStack() as stack:
        if request.param == "mqtt":
            if MOSQUITTO is None:
                pytest.skip("the MQTT kill test needs the mosquitto binary on PATH")
            port = stack.enter_context(private_mosquitto(tmp_path))
            broker: Broker = Mqtt(port=port)
        else:
            broker = BROKERS[request.param]()
        yield from _setup(broker, tmp_path)


def _setup(broker: Broker, tmp_path: Path) -> Iterator[tuple[QueueProject, Broker]]:
    broker.start()
    qp = QueueProject(tmp_path / "proj")
    try:
        qp.write("backhaul.yml", "name: queuekill\n")
        qp.write("sources/wh.yml", "type: duckdb\npath: wh.duckdb\n")
        qp.write("models/people.yml", "source: wh\nprimary_key: id\n")
        qp.write("models/people.sql", "SELECT * FROM people\n")
        qp.write("destinations/q.yml", dump_yaml(broker.destination()))
        maps = "".join(f"  - column: {c}\n    field: {c}\n" for c in COLUMNS)
        qp.write(
            f"syncs/{SYNC}.yml",
            f"model: people\ndestination: q\nmode: mirror\nbatch_size: {BATCH}\n"
            f"concurrency: {CONCURRENCY}\nmappings:\n{maps}",
        )
        qp.warehouse(f"CREATE TABLE people AS {people_sql(0, TOTAL)}")
        yield qp, broker
    finally:
        qp.close()
        broker.close()


def test_killed_sync_delivers_every_change_once_deduplicated(
    setup: tuple[QueueProject, Broker],
) -> None:
    qp, broker = setup
    started = time.monotonic()
    first = qp.model()
    killed, acked = qp.kill_mid_run(0.3)
    killed_at = time.monotonic()
    qp.run_to_end()
    resumed = time.monotonic()

    qp.warehouse(*CHANGES)
    second = qp.model()
    qp.run_to_end()
    ended = time.monotonic()

    changed = {k for k in first.keys() & second.keys() if first[k] != second[k]}
    removed = first.keys() - second.keys()
    added = second.keys() - first.keys()
    expected = (
        [("add", k) for k in first]
        + [("change", k) for k in changed]
        + [("remove", k) for k in removed]
        + [("add", k) for k in added]
    )
    got = broker.received(at_least=len(expected))

    for message in got:
        check_id(SYNC, message)
    seen: set[str] = set()
    distinct: list[Received] = []
    for message in got:
        if message.meta_id not in seen:
            seen.add(message.meta_id)
            distinct.append(message)
    changes = Counter((m.body["op"], m.body["key"]) for m in distinct)
    repeated = [c for c, n in changes.items() if n > 1]
    assert not repeated, f"{len(repeated)} changes arrived under two ids, e.g. {repeated[:3]}"
    missing = Counter(expected) - changes
    extra = changes - Counter(expected)
    assert not missing and not extra, (
        f"{len(missing)} changes missing (e.g. {list(missing)[:3]}), {len(extra)} extra "
        f"(e.g. {list(extra)[:3]})"
    )

    # Replaying the de-duplicated messages in order rebuilds the model exactly.
    state: dict[str, dict[str, Any]] = {}
    for message in distinct:
        body = message.body
        if body["op"] == "remove":
            assert body["fields"] == {"id": int(body["key"])}
            del state[body["key"]]
        else:
            state[body["key"]] = body["fields"]
    assert state == second

    # Only batches in flight at the kill were sent twice.
    duplicates = len(got) - len(distinct)
    assert duplicates <= CONCURRENCY * BATCH
    if killed:
        assert acked < TOTAL
    print(
        f"\n[{broker.name} 100k kill] killed={killed} acked_before_kill={acked} "
        f"messages={len(got)} duplicates={duplicates} "
        f"kill_s={killed_at - started:.1f} rerun_s={resumed - killed_at:.1f} "
        f"changes_round_s={ended - resumed:.1f}"
    )
