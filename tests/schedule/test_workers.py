"""`backhaul worker` processes on the real Postgres queue: one run of a sync at a time, the
periodic tick starts scheduled syncs, a worker killed with SIGKILL mid-run is detected and
its run interrupted and retried, SIGTERM hands the current run back after the batch in
flight, and a schedule nobody works on raises `stale`."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from collections.abc import Iterator
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from typing import IO

import pytest
from sqlalchemy import text
from tests.conftest import Builder

from backhaul import api
from backhaul.alerts import AlertSink
from backhaul.alerts.store import AlertStore
from backhaul.observe.metrics import exposition
from backhaul.observe.metrics import registry_for
from backhaul.schedule.queue import QueueLauncher
from backhaul.schedule.queue import new_app
from backhaul.schedule.queue import queue_depth
from backhaul.schedule.queue import recover_stalled
from backhaul.schedule.timetable import Timetable
from backhaul.state.store import INTERRUPTED
from backhaul.state.store import RunRecord
from backhaul.summary import RunStatus
from backhaul.testing.receiver import WebhookReceiver

ROWS = 20
BATCH = 5


def _project(project: Builder, pg_db: str, receiver: WebhookReceiver, **schedules: object) -> None:
    project.write(
        "backhaul.yml",
        {
            "name": "t",
            "state": {"metadata_url": pg_db},
            "scheduler": {
                "queue": True,
                "tick_seconds": 1,
                "spread_first_runs_seconds": 0,  # a new schedule is due at once
                "heartbeat_seconds": 1,
                # Not tighter: on a loaded machine a live worker's heartbeat can be a few
                # seconds late, and it would be taken for dead with its run re-queued.
                "stalled_after_seconds": 10,
            },
        },
    )
    project.users(ROWS)
    project.webhook_destination(receiver)
    project.sync("a", destination="hook", batch_size=BATCH, concurrency=1)
    if schedules:
        # Scheduled syncs write a local table, not the receiver: a request the receiver
        # holds is then always one of `a`'s, whichever run the tick starts first.
        project.sqlite_destination("db")
    for name, schedule in schedules.items():
        project.sync(name, destination="db", batch_size=BATCH, schedule=schedule)


class Workers:
    def __init__(self, project: Builder, logs: Path) -> None:
        self.project = project
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.files: list[IO[bytes]] = []

    def start(self, name: str, *extra: str) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("wb")
        self.files.append(log)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "backhaul.cli.app",
                "worker",
                "-C",
                str(self.project.root),
                "--name",
                name,
                *extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "NO_COLOR": "1"},
        )
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        for file in self.files:
            file.close()


@pytest.fixture
def workers(project: Builder, tmp_path: Path) -> Iterator[Workers]:
    found = Workers(project, tmp_path)
    try:
        yield found
    finally:
        found.stop_all()


def _runs(project: Builder, sync: str) -> list[RunRecord]:
    with api.open_store(project.load()) as store:
        return list(reversed(store.runs(sync, limit=100)))


def _until(what: str, check: Callable[[], bool], workers: Workers, seconds: float = 120) -> None:
    end = time.monotonic() + seconds  # bounded wait for real processes, never asserted on
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.1)
    logs = "\n".join(f"--- {n}\n{workers.log(n)[-3000:]}" for n in workers.procs)
    raise AssertionError(f"timed out waiting for {what}\n{logs}")


def _defer(project: Builder, sync: str) -> None:
    loaded = project.load()
    with api.open_store(loaded) as store, QueueLauncher.open(loaded, store) as queue:
        queue.defer(sync, "test", trigger="queue")


def _delivered(receiver: WebhookReceiver) -> Counter[str]:
    counts: Counter[str] = Counter()
    for request in receiver.calls:
        body = request.json
        records = body.get("records", []) if isinstance(body, dict) else body
        for record in records or []:
            if isinstance(record, dict) and "id" in record:
                counts[str(record["id"])] += 1
    return counts


def _metrics(project: Builder) -> str:
    loaded = project.load()
    with api.open_store(loaded) as store:
        return exposition(registry_for(loaded, store)).decode()


def _complete(receiver: WebhookReceiver) -> bool:
    return set(receiver.records) == {str(i) for i in range(1, ROWS + 1)}


def test_a_sync_never_runs_twice_at_once_and_the_tick_schedules(
    project: Builder, pg_db: str, receiver: WebhookReceiver, workers: Workers
) -> None:
    _project(project, pg_db, receiver, hourly={"every": "1h"})
    receiver.faults.hold_next(1)  # the first request waits: the first run stays in progress
    _defer(project, "a")
    workers.start("w1", "--log-format", "json")
    workers.start("w2", "--log-format", "json")
    _until(
        "a's first run",
        lambda: any(r.status is RunStatus.RUNNING for r in _runs(project, "a")),
        workers,
    )
    _defer(project, "a")  # a second run queued while the first one runs
    for _ in range(20):  # the other worker is free, but the sync's lock keeps it waiting
        assert sum(r.status is RunStatus.RUNNING for r in _runs(project, "a")) <= 1
        time.sleep(0.1)
    assert len(_runs(project, "a")) == 1
    receiver.faults.release()
    _until(
        "two runs of a",
        lambda: sum(r.finished_at is not None for r in _runs(project, "a")) == 2,
        workers,
    )
    first, second = _runs(project, "a")
    assert first.finished_at is not None and second.started_at >= first.finished_at
    assert [r.status for r in (first, second)] == [RunStatus.SUCCEEDED, RunStatus.SUCCEEDED]
    # The periodic tick in the workers started the interval schedule.
    _until(
        "the hourly schedule", lambda: any(r.finished_at for r in _runs(project, "hourly")), workers
    )
    assert [r.trigger for r in _runs(project, "hourly")] == ["schedule"]
    assert _complete(receiver)
    text = _metrics(project)
    assert "backhaul_workers 2.0" in text
    assert 'backhaul_worker_last_heartbeat_timestamp_seconds{worker="' in text
    assert 'backhaul_runs_total{status="succeeded",sync="a"} 2.0' in text
    workers.stop_all()
    assert [p.returncode for p in workers.procs.values()] == [0, 0]
    # JSON lines; those of a run carry its id and sync.
    lines = [
        json.loads(line)
        for name in ("w1", "w2")
        for line in workers.log(name).splitlines()
        if line.startswith("{")
    ]
    ids = {r.run_id for r in _runs(project, "a")}
    started = [line for line in lines if line["message"] == "run started"]
    assert {line["run_id"] for line in started if line["sync"] == "a"} == ids
    assert all({"run_id", "sync", "level", "time"} <= set(line) for line in lines)


def test_a_killed_worker_is_detected_and_its_run_retried(
    project: Builder, pg_db: str, receiver: WebhookReceiver, workers: Workers
) -> None:
    _project(project, pg_db, receiver)
    receiver.faults.timeout_next(1, 0)  # the first batch goes through ...
    receiver.faults.hold_next(1)  # ... the second is in flight when the worker dies
    _defer(project, "a")
    victim = workers.start("victim", "--no-tick")
    _until("the held batch", lambda: len(receiver.calls) >= 2, workers)
    victim.send_signal(signal.SIGKILL)
    victim.wait(30)
    receiver.faults.release()
    workers.start("rescuer", "--no-tick")
    _until(
        "the retried run",
        lambda: any(r.status is RunStatus.SUCCEEDED for r in _runs(project, "a")),
        workers,
    )
    killed, retried = _runs(project, "a")
    assert killed.status is RunStatus.FAILED and killed.error == INTERRUPTED
    assert retried.status is RunStatus.SUCCEEDED
    assert _complete(receiver)
    # Checkpoints are per acknowledged batch: only the batch in flight went twice.
    sent = _delivered(receiver)
    twice = [k for k, n in sent.items() if n > 1]
    assert len(twice) <= BATCH and max(sent.values()) <= 2, sent
    assert "stopped responding" in workers.log("rescuer")


def test_sigterm_hands_the_run_back_after_the_batch_in_flight(
    project: Builder, pg_db: str, receiver: WebhookReceiver, workers: Workers
) -> None:
    _project(project, pg_db, receiver)
    receiver.faults.timeout_next(1, 0)
    receiver.faults.hold_next(1)
    _defer(project, "a")
    leaving = workers.start("leaving", "--no-tick")
    _until("the held batch", lambda: len(receiver.calls) >= 2, workers)
    leaving.send_signal(signal.SIGTERM)
    time.sleep(0.5)  # let the signal land before the batch is answered
    receiver.faults.release()
    assert leaving.wait(60) == 0, workers.log("leaving")
    stopped = _runs(project, "a")
    assert [r.status for r in stopped] == [RunStatus.CANCELLED]
    assert len(receiver.records) == 2 * BATCH  # the batch in flight was finished and kept
    with api.open_store(project.load()) as store:
        assert queue_depth(store).get("todo") == 1  # handed back to the queue
    workers.start("next", "--no-tick")
    _until(
        "the handed-back run",
        lambda: any(r.status is RunStatus.SUCCEEDED for r in _runs(project, "a")),
        workers,
    )
    assert _complete(receiver)
    assert max(_delivered(receiver).values()) == 1  # nothing was sent twice


def test_a_schedule_no_worker_takes_raises_stale_once(
    project: Builder, pg_db: str, receiver: WebhookReceiver
) -> None:
    _project(
        project,
        pg_db,
        receiver,
        often={
            "every": "1m",
        },
    )
    project.write(
        "syncs/often.yml",
        {
            "model": "users",
            "destination": "hook",
            "mappings": [{"column": "id", "field": "id"}],
            "schedule": {"every": "1m"},
            "alerts": {"rules": {"stale": {"grace_minutes": 1}}},
        },
    )
    queued = project.cli("scheduler", "--once")  # queues the due run; no worker is running
    assert queued.returncode == 0, queued.stderr
    assert "started often" in queued.stderr
    loaded = project.load()
    assert 'backhaul_queue_jobs{status="todo"} 1.0' in _metrics(project)
    with api.open_store(loaded) as store:
        assert queue_depth(store) == {"todo": 1}
        now = datetime.now(UTC)
        with AlertSink.open(loaded, store, next_run=Timetable(loaded, store).expected) as alerts:
            assert alerts.tick(now) == []
            late = alerts.tick(now + timedelta(minutes=3))
            assert [(c.sync, c.rule, c.raised) for c in late] == [("often", "stale", True)]
            assert alerts.tick(now + timedelta(minutes=10)) == []
        states = {s.rule: s.state for s in AlertStore(store).states("often")}
    assert states["stale"] == "firing"
    again = project.cli("scheduler", "--once")  # the run already waits: not queued twice
    assert "started often" not in again.stderr
    with api.open_store(loaded) as store:
        assert queue_depth(store) == {"todo": 1}


def test_a_dead_workers_job_is_ended_when_its_sync_already_waits_in_the_queue(
    project: Builder, pg_db: str, receiver: WebhookReceiver
) -> None:
    # A worker died holding a run of `a` while the scheduler had already queued a's next
    # run: the dead job cannot go back to the queue (one waiting run per sync), so recovery
    # ends it, marks its run interrupted, and leaves the waiting run to cover it.
    _project(project, pg_db, receiver)
    loaded = project.load()
    with api.open_store(loaded) as store:
        with QueueLauncher.open(loaded, store) as queue:
            dead = queue.defer("a", "test", trigger="queue")
        with store.engine.begin() as conn:  # taken by a worker that no longer exists
            conn.execute(
                text("UPDATE procrastinate_jobs SET status = 'doing' WHERE id = :id"),
                {"id": dead},
            )
        store.start_run("deadrun1", "a", full_resync=False, trigger="queue")
        with QueueLauncher.open(loaded, store) as queue:
            waiting = queue.defer("a", "test", trigger="schedule")

        async def recover() -> list[str]:
            app = new_app(loaded)
            async with app.open_async():
                return await recover_stalled(app, store, stalled_after=10)

        assert asyncio.run(recover()) == ["a"]
        run = store.run("deadrun1")
        assert run is not None and run.status is RunStatus.FAILED and run.error == INTERRUPTED
        with store.engine.connect() as conn:
            statuses = dict(
                conn.execute(
                    text("SELECT id, status::text FROM procrastinate_jobs WHERE id IN (:a, :b)"),
                    {"a": dead, "b": waiting},
                ).all()
            )
        assert statuses == {dead: "failed", waiting: "todo"}
