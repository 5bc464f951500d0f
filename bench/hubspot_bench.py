"""HubSpot rate-limit benchmark: a large sync against the emulator's rolling burst window.

Usage::

    python bench/hubspot_bench.py                       # 50,000 rows, 100 calls / 10 s
    python bench/hubspot_bench.py --rows 2000 --limit 10 --interval 1

Scenario 1 upserts ``--rows`` contacts in batches of 100 to an emulator limited to
``--limit`` calls per ``--interval`` seconds (rolling, as HubSpot counts), and reports the
run's wall time against the least time the window allows for the calls the run made. It
checks the limit was never exceeded (the emulator refused nothing and logged no 429).

Scenario 2 does the same with ``--failure-rate`` of calls failing transiently (503) and
checks that the emulator's final records equal the model. Results go to stdout and
``bench/out/hubspot_bench.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb

from backhaul import api
from backhaul.summary import RunStatus
from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.hubspot import HubSpotEmulator

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import least_seconds  # noqa: E402
from common import write_yaml  # noqa: E402

OUT = HERE / "out" / "hubspot_bench.json"


def build_project(root: Path, url: str, rows: int, limit: int, interval: float) -> None:
    write_yaml(root / "backhaul.yml", {"name": "hubspot-bench"})
    write_yaml(root / "sources/wh.yml", {"type": "duckdb", "path": "wh.duckdb"})
    write_yaml(root / "models/people.yml", {"source": "wh", "primary_key": "id"})
    (root / "models/people.sql").write_text("SELECT * FROM people\n", encoding="utf-8")
    con = duckdb.connect(str(root / "wh.duckdb"))
    con.execute(
        "CREATE TABLE people AS SELECT i::BIGINT AS id, 'p' || i || '@bench.example' AS email, "
        f"'Person ' || i AS name, (i % 97)::INTEGER AS score FROM range(1, {rows + 1}) t(i)"
    )
    con.close()
    write_yaml(
        root / "destinations/crm.yml",
        {
            "type": "hubspot",
            "token": "${env:HUBSPOT_TOKEN}",
            "base_url": url,
            "rate_limit": {"requests": limit, "per_seconds": interval},
            "retry": {"max_attempts": 8, "base_delay": 0.05, "max_delay": 1.0},
        },
    )
    write_yaml(
        root / "syncs/people.yml",
        {
            "model": "people",
            "destination": "crm",
            "object": "contacts",
            "match": {"fields": ["email"]},
            "batch_size": 100,
            "mappings": [
                {"column": "email", "field": "email"},
                {"column": "name", "field": "firstname"},
                {"column": "score", "field": "score"},
            ],
        },
    )


def scenario(rows: int, limit: int, interval: float, failure_rate: float) -> dict[str, Any]:
    hub = HubSpotEmulator(burst_limit=limit, burst_seconds=interval, daily_limit=None, seed=3)
    hub.add_property("contacts", "score", type="number", field_type="number")
    if failure_rate:
        hub.faults.fail_randomly(failure_rate, seed=5)
    os.environ["HUBSPOT_TOKEN"] = hub.token
    with (
        tempfile.TemporaryDirectory(prefix="hubspot-bench-") as folder,
        EmulatorServer(hub) as server,
    ):
        root = Path(folder)
        build_project(root, server.url, rows, limit, interval)
        runs: list[dict[str, Any]] = []
        started = time.perf_counter()
        for _ in range(5):  # at-least-once: a run that gave up is completed by the next
            t0 = time.perf_counter()
            summary = api.run(api.load_project(root), "people")
            runs.append(
                {
                    "status": summary.status.value,
                    "seconds": round(time.perf_counter() - t0, 3),
                    "succeeded": summary.counts.succeeded,
                    "error": summary.error,
                }
            )
            if summary.status is RunStatus.SUCCEEDED:
                break
        wall = time.perf_counter() - started
    calls = list(hub.calls)
    statuses = [c.status for c in calls]
    state = {
        e: (c.get("firstname"), c.get("score"))
        for e, c in hub.records("contacts", key="email").items()
    }
    model = {f"p{i}@bench.example": (f"Person {i}", str(i % 97)) for i in range(1, rows + 1)}
    least = least_seconds(len(calls), limit, interval)
    return {
        "rows": rows,
        "limit": f"{limit} calls / {interval:g} s",
        "failure_rate": failure_rate,
        "runs": runs,
        "calls": len(calls),
        "data_calls": sum(c.path.endswith("/batch/upsert") for c in calls),
        "status_counts": {str(s): statuses.count(s) for s in sorted(set(statuses))},
        "wall_seconds": round(wall, 3),
        "send_span_seconds": round(calls[-1].at - calls[0].at, 3) if calls else 0.0,
        "least_seconds": least,
        "ratio_to_least": round(wall / least, 3) if least else None,
        "window_refused": hub.window.refused,
        "never_exceeded": hub.window.refused == 0 and 429 not in statuses,
        "state_equals_model": state == model,
    }


def report(name: str, r: dict[str, Any]) -> None:
    print(
        f"\n== {name}: {r['rows']:,} rows, limit {r['limit']}, "
        f"{r['failure_rate']:.0%} transient failures"
    )
    for i, run in enumerate(r["runs"], 1):
        print(
            f"   run {i}: {run['status']} in {run['seconds']:.2f} s "
            f"({run['succeeded']:,} rows acknowledged){' - ' + run['error'] if run['error'] else ''}"
        )
    print(
        f"   calls made: {r['calls']} ({r['data_calls']} batch upserts); "
        f"statuses {r['status_counts']}"
    )
    print(
        f"   least time the rolling window allows for {r['calls']} calls: "
        f"{r['least_seconds']:.1f} s"
    )
    print(
        f"   wall time: {r['wall_seconds']:.2f} s (first to last call "
        f"{r['send_span_seconds']:.2f} s); ratio to the least: {r['ratio_to_least']}"
    )
    print(
        f"   never exceeded the limit (refused={r['window_refused']}, no 429): "
        f"{'YES' if r['never_exceeded'] else 'NO'}"
    )
    print(f"   emulator records equal the model: {'YES' if r['state_equals_model'] else 'NO'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--limit", type=int, default=100, help="calls per window")
    parser.add_argument("--interval", type=float, default=10.0, help="window length, seconds")
    parser.add_argument("--failure-rate", type=float, default=0.2)
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    clean = scenario(args.rows, args.limit, args.interval, 0.0)
    report("clean", clean)
    flaky = scenario(args.rows, args.limit, args.interval, args.failure_rate)
    report("transient failures", flaky)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"clean": clean, "failures": flaky}, indent=2), encoding="utf-8")
    ok = clean["never_exceeded"] and flaky["never_exceeded"] and flaky["state_equals_model"]
    within = clean["ratio_to_least"] is not None and clean["ratio_to_least"] <= 1.10
    print(
        f"\nchecks: limit never exceeded and final state equal: {'PASS' if ok else 'FAIL'}; "
        f"clean run within 10% of the least time: {'PASS' if within else 'FAIL'}"
    )
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
