"""Local vs in-warehouse planning on a Postgres model after 1% of its rows changed.

For each size (default 1M and 5M rows) the script builds a ``people`` table in a throwaway
Postgres database, runs two syncs once to fill their snapshots (one with ``planner: local``,
one with ``planner: warehouse``, both to DuckDB destination files), changes 1% of the rows
(updates, deletes and inserts), and then times the second run of each sync in its own
subprocess. Printed per run: wall time, rows and bytes that left the warehouse, and the
peak RSS of the Backhaul process.

    python bench/warehouse_plan_bench.py            # 1M and 5M rows
    python bench/warehouse_plan_bench.py --rows 1000000

Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth). Not a test: nothing is
asserted; the numbers go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import psycopg

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
COLUMNS = ("id", "email", "name", "score", "active", "signup")

CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    from backhaul import api
    from backhaul.observe.events import Notice
    notes = []
    project = api.load_project(sys.argv[1])
    started = time.perf_counter()
    summary = api.run(project, sys.argv[2],
                      events=lambda e: notes.append(e.message) if isinstance(e, Notice) else None)
    elapsed = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"status": summary.status.value, "seconds": elapsed, "rss": rss,
                      "counts": summary.counts.as_dict(), "notes": notes}))
    """
)


def build(url: str, rows: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f"""CREATE TABLE people AS SELECT i::bigint AS id, 'user' || i || '@example.com'
            AS email, 'Name ' || (i % 977) AS name, ((i * 7919) % 100003)::float8 / 7 AS score,
            i % 3 = 0 AS active, DATE '2020-01-01' + (i % 1500)::int AS signup
            FROM generate_series(1::bigint, {rows}) AS t(i)""".encode()
        )
        conn.execute(b"ALTER TABLE people ADD PRIMARY KEY (id)")


def change_one_percent(url: str, rows: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(b"UPDATE people SET email = 'changed' || email WHERE id % 300 = 1")
        conn.execute(b"DELETE FROM people WHERE id % 300 = 2")
        conn.execute(
            f"""INSERT INTO people SELECT i, 'new' || i || '@example.com', 'New', 1.0, true,
            DATE '2024-01-01' FROM generate_series({rows + 1}, {rows + rows // 300}) AS t(i)
            """.encode()
        )


def write_project(root: Path, url: str) -> None:
    maps = "".join(f"  - column: {c}\n    field: {c}\n" for c in COLUMNS)
    files = {
        "backhaul.yml": "name: whbench\nstate:\n  memory_limit: 4GB\n",
        "sources/wh.yml": f"type: postgres\nurl: {url}\n",
        "models/people.yml": "source: wh\nprimary_key: id\n",
        "models/people.sql": "SELECT * FROM people\n",
        "destinations/local_out.yml": "type: duckdb\npath: local_out.duckdb\ntable: people\n"
        "create_table: true\n",
        "destinations/wh_out.yml": "type: duckdb\npath: wh_out.duckdb\ntable: people\n"
        "create_table: true\n",
        "syncs/local.yml": f"model: people\ndestination: local_out\nmode: mirror\n"
        f"batch_size: 50000\nmappings:\n{maps}",
        "syncs/inwh.yml": f"model: people\ndestination: wh_out\nmode: mirror\nbatch_size: 50000\n"
        f"planner: warehouse\nmappings:\n{maps}",
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def run(root: Path, sync: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(root), sync], capture_output=True, text=True, check=True
    )
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def model_bytes(root: Path) -> tuple[int, int]:
    """Rows and Arrow bytes of the whole model as the local planner streams it."""
    from backhaul import api

    project = api.load_project(root)
    src = project.sources["wh"]
    source = project.registry.source(src.config.type)(src.config, root)
    try:
        rows = size = 0
        for batch in source.stream("SELECT * FROM people"):
            rows += batch.num_rows
            size += batch.nbytes
        return rows, size
    finally:
        source.close()


def bench(rows: int) -> None:
    name = f"bh_whbench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    try:
        with tempfile.TemporaryDirectory() as folder:
            root = Path(folder)
            t0 = time.perf_counter()
            build(url, rows)
            write_project(root, url)
            for sync in ("local", "inwh"):
                first = run(root, sync)
                print(f"{rows:>9,} first run {sync:<5}: {first['seconds']:.1f} s", flush=True)
            change_one_percent(url, rows)
            full_rows, full_bytes = model_bytes(root)
            print(f"{rows:>9,} rows (setup {time.perf_counter() - t0:.0f} s)")
            for sync in ("local", "inwh"):
                r = run(root, sync)
                counts = r["counts"]
                assert isinstance(counts, dict)
                if sync == "local":
                    moved, size = full_rows, full_bytes
                else:
                    notes = [n for n in r["notes"] if "planned in the warehouse" in str(n)]  # type: ignore[attr-defined]
                    text = str(notes[0])
                    moved = int(text.split(": ", 1)[1].split(" ", 1)[0])
                    size = int(float(text.split("(", 1)[1].split(" ", 1)[0]) * 1e6)
                print(
                    f"  {sync:<5} {r['status']:<9} {r['seconds']:7.1f} s  "
                    f"planned {counts['added'] + counts['changed'] + counts['removed']:>7,}  "
                    f"left the warehouse {moved:>10,} rows {size / 1e6:9.1f} MB  "
                    f"peak RSS {int(r['rss']) / 1e6:7.0f} MB",  # type: ignore[call-overload]
                    flush=True,
                )
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, action="append")
    args = parser.parse_args()
    for rows in args.rows or [1_000_000, 5_000_000]:
        bench(rows)


if __name__ == "__main__":
    main()
