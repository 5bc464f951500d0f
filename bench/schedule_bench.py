"""Unattended operation at scale: a scheduler and N workers on the real Postgres queue run
many syncs on mixed schedules for a while; one worker is killed with SIGKILL mid-run.

Usage::

    python bench/schedule_bench.py                          # 200 syncs, 3 workers, 10 min
    python bench/schedule_bench.py --syncs 20 --workers 2 --minutes 2 --kill-after 30

Builds a project in ``bench/out/schedule/`` (a Postgres warehouse table with one group of
rows per sync and a destination table per sync in a fresh database, the metadata store and
queue in another), starts ``backhaul scheduler`` (queue mode) and the workers as real processes,
changes rows in the warehouse while they run, kills the first worker while it holds a run,
stops changing rows ``--settle`` seconds before the end, then stops everything with SIGTERM
and checks, from the run store and the destination tables:

- no sync ran twice at once (no two runs of one sync overlap in time);
- no schedule slot was missed (no `stale` alert was raised; the largest gap between two
  starts of an interval sync, against its interval);
- the killed worker's run was marked interrupted and the sync ran successfully after it;
- every destination table equals its model;
- the ``--hubspot-syncs`` syncs, which write to one HubSpot account (the emulator, served
  by this script, with a small rolling window) through one destination file, never went
  over the account's window together: the emulator refused no call (their workers share
  one rate-limit budget in the Postgres store), and its contacts equal their models.

Prints the numbers and writes them to ``bench/out/schedule/schedule_bench.json``. The
databases are dropped at the end.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.hubspot import DEFAULT_TOKEN
from backhaul.testing.emulators.hubspot import HubSpotEmulator

HERE = Path(__file__).resolve().parent
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
ROWS_PER_SYNC = 200
HUB_LIMIT, HUB_WINDOW = 10, 2.0  # the emulated account's rolling window (calls, seconds)
MIXES: dict[str, list[dict[str, Any]]] = {
    # Every sync due every 30 to 90 s: more runs than a small machine can do (a stress test).
    "fast": [
        {"every": "30s"},
        {"every": "1m"},
        {"cron": "* * * * *", "timezone": "Europe/Berlin"},
        {"every": "90s"},
    ],
    # Every 2 to 5 minutes: as often as a 10-minute bench can check (the slowest sync runs
    # at least once after the changes stop, with `--settle 330`).
    "steady": [
        {"every": "2m"},
        {"every": "3m"},
        {"cron": "*/4 * * * *", "timezone": "Europe/Berlin"},
        {"every": "5m"},
    ],
    # Intervals teams use for CRM syncs: what the workers must keep up with.
    "realistic": [
        {"every": "5m"},
        {"every": "10m"},
        {"cron": "*/5 * * * *", "timezone": "Europe/Berlin"},
        {"every": "15m"},
    ],
}
SCHEDULES = MIXES["fast"]


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def build_project(
    root: Path,
    syncs: int,
    meta_url: str,
    dest_url: str,
    tick: float,
    extract_s: float,
    hub_syncs: int = 0,
    hub_url: str = "",
) -> None:
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    write(
        root / "backhaul.yml",
        f"""name: schedule_bench
state:
  metadata_url: {meta_url}
scheduler:
  queue: true
  tick_seconds: {tick}
  heartbeat_seconds: 2
  stalled_after_seconds: 8
alerts:
  rules:
    stale: {{grace_minutes: 1}}
""",
    )
    write(root / "sources/wh.yml", f"type: postgres\nurl: {dest_url}\n")
    write(
        root / "destinations/pg.yml",
        f"type: postgres\nurl: {dest_url}\ncreate_table: true\n",
    )
    with psycopg.connect(dest_url, autocommit=True) as con:
        con.execute(
            "CREATE TABLE items AS SELECT g, i AS id, 'v' || i AS v "
            f"FROM generate_series(0, {syncs + hub_syncs - 1}) g, "
            f"generate_series(0, {ROWS_PER_SYNC - 1}) i"
        )
    for n in range(syncs):
        name = f"s{n:03d}"
        write(root / f"models/m{n:03d}.yml", "source: wh\nprimary_key: id\n")
        # pg_sleep holds each run in its extract for a while, so that a worker killed at a
        # moment when every worker is busy is certain to die holding a run.
        sleep = f" CROSS JOIN pg_sleep({extract_s})" if extract_s > 0 else ""
        write(root / f"models/m{n:03d}.sql", f"SELECT id, v FROM items{sleep} WHERE g = {n}\n")
        if n % 10 == 9:
            schedule = f"schedule:\n  after: [s{n - 1:03d}]\n"  # a sequence
        else:
            spec = SCHEDULES[n % len(SCHEDULES)]
            body = "".join(f"  {k}: {json.dumps(v)}\n" for k, v in spec.items())
            schedule = "schedule:\n" + body
        write(
            root / f"syncs/{name}.yml",
            f"model: m{n:03d}\ndestination: pg\nobject: t_{name}\nbatch_size: 10\n"
            + "mappings:\n  - {column: id, field: id}\n  - {column: v, field: v}\n"
            + schedule,
        )

    if hub_syncs:
        write(
            root / "destinations/hub.yml",
            f"type: hubspot\ntoken: ${{env:HUBSPOT_TOKEN}}\nbase_url: {hub_url}\n"
            f"account: bench\nrate_limit: {{requests: {HUB_LIMIT}, per_seconds: {HUB_WINDOW}}}\n",
        )
    for k in range(hub_syncs):
        write(root / f"models/h{k:03d}.yml", "source: wh\nprimary_key: id\n")
        write(
            root / f"models/h{k:03d}.sql",
            f"SELECT id, 'u' || id || '@h{k}.example.com' AS email, v FROM items "
            f"WHERE g = {syncs + k}\n",
        )
        write(
            root / f"syncs/h{k:03d}.yml",
            f"model: h{k:03d}\ndestination: hub\nobject: contacts\nbatch_size: 25\n"
            "match: {fields: [email]}\n"
            "mappings:\n  - {column: email, field: email}\n  - {column: v, field: firstname}\n"
            'schedule: {every: "30s"}\n',
        )


def start(root: Path, logs: Path, *args: str) -> tuple[subprocess.Popen[bytes], Any]:
    log = (logs / f"{args[0]}-{len(list(logs.iterdir()))}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "backhaul.cli.app", *args, "-C", str(root)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "NO_COLOR": "1"},
    )
    return proc, log


def worker_ids(meta_url: str) -> set[int]:
    """The ids of the procrastinate workers registered so far."""
    with psycopg.connect(meta_url) as conn:
        try:
            rows = conn.execute("SELECT id FROM procrastinate_workers").fetchall()
        except psycopg.errors.UndefinedTable:
            return set()  # no worker has created the queue's tables yet
    return {int(r[0]) for r in rows}


def holds_running_run(meta_url: str, worker_id: int) -> bool:
    """Whether the worker is executing a job whose sync has a run in progress."""
    with psycopg.connect(meta_url) as conn:
        try:
            row = conn.execute(
                "SELECT count(*) FROM procrastinate_jobs j JOIN runs r "
                "ON r.sync = j.args->>'sync' AND r.status = 'running' "
                "WHERE j.status = 'doing' AND j.worker_id = %s",
                (worker_id,),
            ).fetchone()
        except psycopg.errors.UndefinedTable:
            return False
    return bool(row and row[0])


def interrupted_runs(meta_url: str) -> int:
    with psycopg.connect(meta_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM runs WHERE error LIKE '%%interrupted%%'"
        ).fetchone()
    return int(row[0]) if row else 0


def mutate(dest_url: str, groups: int, rng: random.Random) -> None:
    """Change one row in each of a few groups of the warehouse table."""
    with psycopg.connect(dest_url, autocommit=True) as con:
        for g in rng.sample(range(groups), k=min(groups, 10)):
            con.execute(
                "UPDATE items SET v = v || '+' WHERE g = %s AND id = %s",
                [g, rng.randrange(ROWS_PER_SYNC)],
            )


def check_hub(hub: HubSpotEmulator, syncs: int, hub_syncs: int, dest_url: str) -> dict[str, Any]:
    """The emulated account's refusals, and how many HubSpot syncs match their models."""
    contacts = hub.records("contacts", key="email")
    equal = 0
    with psycopg.connect(dest_url) as dest:
        for k in range(hub_syncs):
            rows = dest.execute("SELECT id, v FROM items WHERE g = %s", [syncs + k]).fetchall()
            model = {(f"u{i}@h{k}.example.com", v) for i, v in rows}
            got = {
                (email, props.get("firstname"))
                for email, props in contacts.items()
                if email.endswith(f"@h{k}.example.com")
            }
            equal += got == model
    return {
        "hubspot_syncs": hub_syncs,
        "hubspot_calls": len(hub.calls),
        "hubspot_refused": hub.window.refused,
        "hubspot_window": f"{HUB_LIMIT} calls / {HUB_WINDOW:g} s",
        "hubspot_syncs_equal_to_model": equal,
    }


def check(root: Path, syncs: int, meta_url: str, dest_url: str) -> dict[str, Any]:
    with psycopg.connect(meta_url) as conn:
        runs = conn.execute(
            "SELECT sync, started_at, finished_at, status, error FROM runs "
            "WHERE NOT dry_run ORDER BY sync, started_at"
        ).fetchall()
        stale = conn.execute(
            "SELECT count(*) FROM alert_events WHERE rule = 'stale' AND kind = 'raised'"
        ).fetchone()
    by_sync: dict[str, list[tuple[Any, ...]]] = {}
    for row in runs:
        by_sync.setdefault(row[0], []).append(row)
    overlaps = 0
    for rows in by_sync.values():
        for a, b in itertools.pairwise(rows):
            if a[2] is not None and b[1] < a[2]:
                overlaps += 1
    interrupted = [r for r in runs if r[4] and "interrupted" in r[4]]
    recovered = all(
        any(
            later[1] > r[1] and later[3] in ("succeeded", "partial")
            for later in by_sync.get(r[0], [])
        )
        for r in interrupted
    )
    gaps: list[float] = []
    for n in range(syncs):
        spec = SCHEDULES[n % len(SCHEDULES)]
        if n % 10 == 9 or "every" not in spec:
            continue
        starts = [r[1] for r in by_sync.get(f"s{n:03d}", [])]
        for a, b in itertools.pairwise(starts):
            every = int(spec["every"].rstrip("sm")) * (60 if spec["every"].endswith("m") else 1)
            gaps.append((b - a).total_seconds() / every)
    equal = 0
    with psycopg.connect(dest_url) as dest:
        for n in range(syncs):
            model = sorted(
                (str(i), v)
                for i, v in dest.execute("SELECT id, v FROM items WHERE g = %s", [n]).fetchall()
            )
            try:
                got = sorted(
                    (str(i), v)
                    for i, v in dest.execute(f'SELECT id, v FROM "t_s{n:03d}"').fetchall()
                )
            except psycopg.errors.UndefinedTable:
                dest.rollback()
                got = []
            equal += got == model
    return {
        "runs": len(runs),
        "runs_succeeded": sum(r[3] == "succeeded" for r in runs),
        "overlapping_runs": overlaps,
        "stale_alerts_raised": int(stale[0]) if stale else 0,
        "largest_interval_gap_ratio": round(max(gaps), 2) if gaps else None,
        "interrupted_runs": len(interrupted),
        "interrupted_syncs": sorted({r[0] for r in interrupted}),
        "interrupted_runs_recovered": recovered,
        "destinations_equal_to_model": equal,
        "syncs": syncs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--syncs", type=int, default=200)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--kill-after", type=float, default=120.0, help="seconds")
    parser.add_argument("--settle", type=float, default=150.0, help="seconds without changes")
    parser.add_argument("--tick", type=float, default=2.0)
    parser.add_argument(
        "--mix", choices=sorted(MIXES), default="fast", help="the syncs' schedules (see MIXES)"
    )
    parser.add_argument(
        "--extract-seconds", type=float, default=0.0, help="each model's query sleeps this long"
    )
    parser.add_argument(
        "--hubspot-syncs", type=int, default=10, help="syncs sharing one HubSpot account"
    )
    parser.add_argument("--out", type=Path, default=HERE / "out" / "schedule")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    global SCHEDULES
    SCHEDULES = MIXES[args.mix]
    suffix = uuid.uuid4().hex[:10]
    meta_db, dest_db = f"bh_bench_meta_{suffix}", f"bh_bench_dest_{suffix}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{meta_db}"')
        conn.execute(f'CREATE DATABASE "{dest_db}"')
    meta_url = f"postgresql://postgres@127.0.0.1:5432/{meta_db}"
    dest_url = f"postgresql://postgres@127.0.0.1:5432/{dest_db}"
    root = args.out / "project"
    logs = args.out / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    procs: list[tuple[subprocess.Popen[bytes], Any]] = []
    rng = random.Random(args.seed)
    os.environ["HUBSPOT_TOKEN"] = DEFAULT_TOKEN  # inherited by the scheduler and workers
    hub = HubSpotEmulator(burst_limit=HUB_LIMIT, burst_seconds=HUB_WINDOW, daily_limit=None)
    hub_server = EmulatorServer(hub).start()
    try:
        build_project(
            root,
            args.syncs,
            meta_url,
            dest_url,
            args.tick,
            args.extract_seconds,
            args.hubspot_syncs,
            hub_server.url,
        )
        # The worker to kill starts alone first, so that its id in the queue is known: the
        # kill can then wait for a moment when that very worker holds a run in progress.
        victim = start(root, logs, "worker", "--no-tick")
        procs.append(victim)
        known = worker_ids(meta_url)
        registered_by = time.monotonic() + 120.0
        while not known and time.monotonic() < registered_by and victim[0].poll() is None:
            time.sleep(0.2)
            known = worker_ids(meta_url)
        if not known:
            raise SystemExit("the first worker did not register with the queue; see its log")
        victim_id = max(known)
        began = time.monotonic()
        procs.append(start(root, logs, "scheduler"))
        workers = [victim] + [
            start(root, logs, "worker", "--no-tick") for _ in range(args.workers - 1)
        ]
        procs += workers[1:]
        end = began + args.minutes * 60
        killed = False
        next_change = began
        # After the kill, go on until the killed run has been found and marked interrupted
        # (a heartbeat timeout and a recovery pass later), however loaded the machine is.
        recovery_deadline = end
        while time.monotonic() < end or (
            killed and time.monotonic() < recovery_deadline and interrupted_runs(meta_url) == 0
        ):
            elapsed = time.monotonic() - began
            # Mid-run: the first worker is killed while it executes a job whose run is in
            # progress, so that its run is certain to be left behind.
            if not killed and elapsed >= args.kill_after and holds_running_run(meta_url, victim_id):
                victim[0].send_signal(signal.SIGKILL)
                killed = True
                recovery_deadline = time.monotonic() + 120.0
                print(f"{elapsed:6.0f} s: killed worker pid {victim[0].pid} (SIGKILL)", flush=True)
            if end - time.monotonic() > args.settle and time.monotonic() >= next_change:
                mutate(dest_url, args.syncs + args.hubspot_syncs, rng)
                next_change = time.monotonic() + 2.0
            # Look often while waiting for the moment to kill: runs are short.
            time.sleep(0.25 if not killed and elapsed >= args.kill_after else 2.0)
        for proc, _ in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, _ in procs:
            try:
                proc.wait(180)
            except subprocess.TimeoutExpired:
                proc.kill()
        result = check(root, args.syncs, meta_url, dest_url)
        result.update(check_hub(hub, args.syncs, args.hubspot_syncs, dest_url))
        result.update(
            minutes=args.minutes,
            mix=args.mix,
            workers=args.workers,
            worker_killed=killed,
            cpu_count=os.cpu_count(),
            python=platform.python_version(),
            elapsed_s=round(time.monotonic() - began, 1),
        )
        print(json.dumps(result, indent=2))
        (args.out / "schedule_bench.json").write_text(json.dumps(result, indent=2) + "\n")
    finally:
        hub_server.stop()
        for proc, log in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
            log.close()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{meta_db}" WITH (FORCE)')
            conn.execute(f'DROP DATABASE IF EXISTS "{dest_db}" WITH (FORCE)')


if __name__ == "__main__":
    main()
