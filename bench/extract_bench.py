"""Postgres extraction benchmark: rows/s and peak RSS of reading a model into Arrow.

Usage::

    python bench/extract_bench.py              # 1M rows
    python bench/extract_bench.py --rows 5000000 --repeat 3

Builds a table of N rows and 10 mixed-type columns in a fresh Postgres database on
127.0.0.1:5432 (dropped at the end), then measures, each in its own process so peak RSS is
its own:

* ``source (CSV COPY)``: ``PostgresSource.stream`` read to the end (what the engine uses);
* ``named cursor``: psycopg's server-side cursor with ``fetchmany`` turned into Arrow, the
  obvious alternative, for comparison;
* ``ADBC``: ``adbc-driver-postgresql`` when it is installed (not a dependency of Backhaul);
* ``plan``: a whole dry run of a sync on a model of the table (load project, extract into
  DuckDB, fingerprint, diff against an empty snapshot).

Prints a table and writes ``bench/out/extract_bench.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import uuid
from datetime import UTC
from datetime import datetime
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
QUERY = "SELECT * FROM events"

TABLE = """
CREATE TABLE events AS
SELECT i::bigint AS id,
       'user' || i || '@example.com' AS email,
       'Name ' || (i % 50000) AS name,
       (i % 1000)::int AS score,
       (i * 1.25)::numeric(14,2) AS amount,
       (i % 997) / 997.0::float8 AS ratio,
       (i % 3 = 0) AS active,
       timestamptz '2024-01-01 00:00:00+00' + i * interval '1 second' AS created_at,
       date '2020-01-01' + (i % 2000) AS signup_date,
       (ARRAY['free', 'pro', 'enterprise'])[1 + i % 3] AS plan
FROM generate_series(1, {rows}) AS i
"""

# Each phase runs in a fresh interpreter: argv = phase, database URL, project folder.
PHASE = r"""
import json, resource, sys, time
from pathlib import Path
import pyarrow as pa
kind, url, root = sys.argv[1:4]
query = "SELECT * FROM events"
t = time.perf_counter()
rows = 0
if kind == "source":
    from backhaul.sources.postgres import PostgresSource, PostgresSourceConfig
    src = PostgresSource(PostgresSourceConfig(type="postgres", url=url), Path("."))
    for batch in src.stream(query):
        rows += batch.num_rows
    src.close()
elif kind == "named_cursor":
    import psycopg
    with psycopg.connect(url) as conn, conn.cursor(name="bench") as cur:
        cur.execute(query)
        names = [d.name for d in cur.description]
        while chunk := cur.fetchmany(100_000):
            cols = list(zip(*chunk))
            batch = pa.RecordBatch.from_arrays([pa.array(c) for c in cols], names=names)
            rows += batch.num_rows
elif kind == "adbc":
    import adbc_driver_postgresql.dbapi as adbc
    with adbc.connect(url) as conn, conn.cursor() as cur:
        cur.execute(query)
        for batch in cur.fetch_record_batch():
            rows += batch.num_rows
else:
    from backhaul import api
    summary = api.plan(api.load_project(root), "events_sync")
    rows = summary.counts.queried
seconds = time.perf_counter() - t
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"rows": rows, "seconds": seconds, "peak_rss_mb": rss}))
"""

COLUMNS = [
    "id",
    "email",
    "name",
    "score",
    "amount",
    "ratio",
    "active",
    "created_at",
    "signup_date",
    "plan",
]


def write_project(root: Path, url: str) -> None:
    for folder in ("sources", "models", "destinations", "syncs"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "backhaul.yml").write_text("name: extract_bench\n")
    (root / "sources/pg.yml").write_text(f"type: postgres\nurl: {url}\n")
    (root / "models/events.yml").write_text("source: pg\nprimary_key: id\ntable: events\n")
    (root / "destinations/copy.yml").write_text(
        "type: duckdb\npath: destination.duckdb\ntable: events\ncreate_table: true\n"
    )
    mappings = "\n".join(f"  - {{column: {c}, field: {c}}}" for c in COLUMNS)
    (root / "syncs/events_sync.yml").write_text(
        f"model: events\ndestination: copy\nmappings:\n{mappings}\n"
    )


def phase(kind: str, url: str, root: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", PHASE, kind, url, str(root)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def has_adbc() -> bool:
    try:
        import adbc_driver_postgresql  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2, help="runs per phase; best is kept")
    parser.add_argument("--out", type=Path, default=HERE / "out")
    args = parser.parse_args()
    name = f"bh_bench_extract_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    root = Path(tempfile.mkdtemp(prefix="extract-bench-"))
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(TABLE.format(rows=int(args.rows)))  # type: ignore[arg-type]
            conn.execute("VACUUM ANALYZE events")
        write_project(root, url)
        kinds = ["source", "named_cursor", *(["adbc"] if has_adbc() else []), "plan"]
        results: dict[str, dict[str, float]] = {}
        for kind in kinds:
            runs = [phase(kind, url, root) for _ in range(args.repeat)]
            results[kind] = min(runs, key=lambda r: r["seconds"])
            shutil.rmtree(root / ".backhaul", ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    meta = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} cores={os.cpu_count()}",
        "python": platform.python_version(),
        "postgres": "127.0.0.1:5432",
        "rows": args.rows,
        "load_average": os.getloadavg(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "extract_bench.json").write_text(
        json.dumps({"meta": meta, "results": results}, indent=2)
    )
    print(meta)
    print(f"{'phase':<14} {'rows':>10} {'seconds':>8} {'rows/s':>12} {'peak RSS MB':>12}")
    for kind, r in results.items():
        print(
            f"{kind:<14} {int(r['rows']):>10,} {r['seconds']:>8.2f} "
            f"{r['rows'] / r['seconds']:>12,.0f} {r['peak_rss_mb']:>12.0f}"
        )


if __name__ == "__main__":
    main()
