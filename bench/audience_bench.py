"""Audience size-estimate latency on DuckDB: a 5-condition audience (one event condition) on
a 1M-person parent with 20M events.

Usage::

    python bench/audience_bench.py                      # 1M people, 20M events, 20 runs
    python bench/audience_bench.py --people 100000 --events 2000000 --runs 10

Builds (once; reused when the sizes match) a DuckDB warehouse in ``bench/out/audiences/``
with ``people`` (1 row per person) and ``page_views`` (events in time order over 180 days),
a project with an audience schema and the audience below, then times
:meth:`backhaul.audiences.explore.Explorer.size` (compile, render and run the one query that
counts the audience, each condition alone and cumulated, and the split groups) through the
project's DuckDB source. Prints p50/p95 and writes ``bench/out/audience_bench.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from datetime import UTC
from datetime import datetime
from pathlib import Path

import duckdb

HERE = Path(__file__).resolve().parent
NOW = datetime(2024, 7, 1)

SCHEMA = """\
parent:
  model: people
  key: id
  columns:
    email: {type: string, personal: true}
    country: string
    plan: string
    age: number
    lifetime_value: number
    signup_at: timestamp
events:
  page_views:
    model: page_views
    key: person_id
    timestamp: viewed_at
    columns: {page: string}
"""
AUDIENCE = """\
schema: people
columns: [email, country, plan]
conditions:
  - {column: country, op: in, value: [FR, DE, ES, IT]}
  - {column: plan, op: not_equals, value: free}
  - {column: age, op: between, value: [25, 54]}
  - {column: lifetime_value, op: gte, value: 100}
  - {event: page_views, at_least: 3, within_last_days: 30, where: [{column: page, op: starts_with, value: /pricing}]}
splits:
  holdout: 10
  groups:
    - {name: a, percent: 45}
    - {name: b, percent: 45}
"""


def build_warehouse(path: Path, people: int, events: int) -> None:
    """``people`` and ``page_views`` tables, deterministic (hash-based) values."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    con = duckdb.connect(str(path))
    try:
        con.execute(
            f"""
            CREATE TABLE people AS
            SELECT i::BIGINT AS id,
                   'user' || i || '@example.com' AS email,
                   ['FR','DE','ES','IT','US','GB','BR','IN','JP','CA'][(1 + hash(i, 1) % 10)::BIGINT]
                       AS country,
                   ['free','starter','pro','enterprise'][(1 + hash(i, 2) % 4)::BIGINT] AS plan,
                   (18 + hash(i, 3) % 60)::INTEGER AS age,
                   (hash(i, 4) % 100000)::BIGINT / 100.0 AS lifetime_value,
                   TIMESTAMP '2022-01-01' + INTERVAL ((hash(i, 5) % 900)::BIGINT) DAY AS signup_at
            FROM range(1, {people + 1}) t(i)
            """
        )
        # Events in time order over the 180 days before NOW, as an append-only log is.
        span = 180 * 86400
        con.execute(
            f"""
            CREATE TABLE page_views AS
            SELECT (1 + hash(i, 6) % {people})::BIGINT AS person_id,
                   TIMESTAMP '{NOW.isoformat(sep=" ")}' - INTERVAL {span} SECOND
                       + INTERVAL (i * {span} // {events}) SECOND AS viewed_at,
                   ['/pricing','/pricing/teams','/docs','/blog','/home','/signup','/login',
                    '/features','/about','/careers'][(1 + hash(i, 7) % 10)::BIGINT] AS page
            FROM range(0, {events}) t(i)
            """
        )
    finally:
        con.close()


def write_project(root: Path) -> None:
    files = {
        "backhaul.yml": "name: audience_bench\n",
        "sources/wh.yml": "type: duckdb\npath: wh.duckdb\n",
        "models/people.yml": "source: wh\nprimary_key: id\ntable: people\n",
        "models/page_views.yml": "source: wh\nprimary_key: [person_id, viewed_at]\n"
        "table: page_views\n",
        "audience_schemas/people.yml": SCHEMA,
        "audiences/bench.yml": AUDIENCE,
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=20_000_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()

    from backhaul import api
    from backhaul.audiences.explore import open_explorer

    root = HERE / "out" / "audiences"
    stamp = root / "sizes.json"
    sizes = {"people": args.people, "events": args.events}
    warehouse = root / "wh.duckdb"
    if not warehouse.exists() or not stamp.exists() or json.loads(stamp.read_text()) != sizes:
        started = time.perf_counter()
        build_warehouse(warehouse, args.people, args.events)
        stamp.write_text(json.dumps(sizes))
        print(f"built the warehouse in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    write_project(root)

    project = api.load_project(root)
    config = project.audiences["bench"].config
    timings: list[float] = []
    with open_explorer(project, "people", now=NOW) as ex:
        for i in range(args.warmup + args.runs):
            started = time.perf_counter()
            size = ex.size("bench", config)
            elapsed = time.perf_counter() - started
            if i >= args.warmup:
                timings.append(elapsed)
    p50, p95 = statistics.median(timings), percentile(timings, 0.95)
    result = {
        "people": args.people,
        "events": args.events,
        "runs": args.runs,
        "p50_s": round(p50, 4),
        "p95_s": round(p95, 4),
        "min_s": round(min(timings), 4),
        "max_s": round(max(timings), 4),
        "matched": size.matched,
        "members": size.members,
        "holdout": size.holdout,
        "splits": size.splits,
        "conditions": [(c.label, c.alone, c.cumulative) for c in size.conditions],
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
    }
    (HERE / "out").mkdir(exist_ok=True)
    (HERE / "out" / "audience_bench.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"size estimate of a 5-condition audience: {args.people:,} people, {args.events:,} "
        f"events, {args.runs} runs"
    )
    print(f"  p50 {p50:.3f}s  p95 {p95:.3f}s  (min {min(timings):.3f}s, max {max(timings):.3f}s)")
    print(
        f"  matched {size.matched:,}, members {size.members:,}, holdout {size.holdout:,}, "
        f"splits {size.splits}"
    )
    for label, alone, cumulative in result["conditions"]:
        print(f"  {label}: alone {alone:,}, cumulative {cumulative:,}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
