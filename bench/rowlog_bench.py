"""Row logs at size: write a run's outcomes, look a row up by key, and what each row costs.

Usage::

    python bench/rowlog_bench.py                   # 10M rows, batches of 10,000
    python bench/rowlog_bench.py --rows 1000000 --table-rows 200000

It writes the outcomes of one all-ok run of ``--rows`` rows through the run store exactly as
the engine does (``RunStore.add_row_table`` once per checkpointed batch, then
``finish_run``, which turns the run's stream into Parquet), and times:

* ``append``: every batch appended to the run's stream;
* ``compact``: ``finish_run``, the stream sorted by key into one zstd Parquet file;
* ``lookup``: ``RunStore.rows(run_id, key=...)`` for keys spread over the run (the run
  page's "find a row", ``backhaul run-show --key`` and the Python API all call it), cold
  (first query) and warm (median of the next ones);
* bytes per row: of the Parquet file, and how much the SQLite run store grew.

``--table-rows`` also writes that many rows the way runs did before row logs (every row
into ``run_rows``), to compare the run store's growth per row. ``--engine-rows`` runs a
real sync of that many rows (DuckDB model into a DuckDB table) twice, the second time with
``--full-resync`` so every row is sent and acknowledged again, and prints how much the
SQLite run store and the row logs grew per row of that all-ok run. Prints a table;
nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from datetime import UTC
from datetime import datetime
from pathlib import Path

import pyarrow as pa

from backhaul.state.rowlog import PARQUET
from backhaul.state.rowlog import RowLogs
from backhaul.state.store import RunStore
from backhaul.summary import Counts
from backhaul.summary import RunStatus
from backhaul.summary import RunSummary


def key_of(i: int) -> str:
    """A 12-digit id, unique per ``i`` and in no useful order (like a warehouse's ids)."""
    return str(100_000_000_000 + (i * 2_654_435_761) % 900_000_000_000)


def outcomes(start: int, n: int) -> pa.Table:
    """One batch of all-ok outcomes with keys like the engine's (text of a BIGINT id)."""
    keys = pa.array([key_of(i) for i in range(start, start + n)], pa.string())
    return pa.table(
        {
            "key": keys,
            "op": pa.array(["add"] * n, pa.string()),
            "status": pa.array(["ok"] * n, pa.string()),
            "error": pa.nulls(n, pa.string()),
            "operation": pa.array(["upsert"] * n, pa.string()),
            "call_id": pa.nulls(n, pa.string()),
        }
    )


def store_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("backhaul.db*"))


def write_run(store: RunStore, run_id: str, rows: int, batch: int) -> tuple[float, float]:
    store.start_run(run_id, "bench", full_resync=False)
    t0 = time.perf_counter()
    for start in range(0, rows, batch):
        store.add_row_table(run_id, outcomes(start, min(batch, rows - start)))
    appended = time.perf_counter() - t0
    t0 = time.perf_counter()
    store.finish_run(
        RunSummary(run_id, "bench", RunStatus.SUCCEEDED, counts=Counts(succeeded=rows))
    )
    return appended, time.perf_counter() - t0


def engine_growth(folder: Path, rows: int) -> tuple[float, float]:
    """Run store and row-log bytes per row of one all-ok run of a real sync."""
    import duckdb

    from backhaul import api

    root = folder / "project"
    for rel, text in {
        "backhaul.yml": "name: bench\n",
        "sources/wh.yml": "type: duckdb\npath: wh.duckdb\n",
        "models/users.yml": "source: wh\nprimary_key: id\n",
        "models/users.sql": "SELECT * FROM users\n",
        "destinations/db.yml": "type: duckdb\npath: dest.duckdb\ntable: users\n"
        "create_table: true\n",
        "syncs/users.yml": "model: users\ndestination: db\nmappings:\n"
        "  - {column: id, field: id}\n  - {column: email, field: email}\n",
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    con = duckdb.connect(str(root / "wh.duckdb"))
    con.execute(
        f"CREATE TABLE users AS SELECT i AS id, 'u' || i || '@example.com' AS email "
        f"FROM range({rows}) t(i)"
    )
    con.close()
    project = api.load_project(root)
    api.run(project, "users")
    state = root / ".backhaul"
    logs = state / "row_logs"

    def log_bytes() -> int:
        return sum(p.stat().st_size for p in logs.rglob("*") if p.is_file())

    before, logged = store_bytes(state), log_bytes()
    again = api.run(project, "users", full_resync=True)
    assert again.counts.succeeded == rows, again
    return (store_bytes(state) - before) / rows, (log_bytes() - logged) / rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--batch", type=int, default=10_000, help="rows per checkpoint")
    parser.add_argument("--lookups", type=int, default=20)
    parser.add_argument("--table-rows", type=int, default=0, help="also the old run_rows path")
    parser.add_argument("--engine-rows", type=int, default=0, help="also a real sync's growth")
    parser.add_argument("--dir", type=Path, default=None, help="scratch folder (default: temp)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        url = f"sqlite:///{folder / 'backhaul.db'}"
        logs = RowLogs(folder / "row_logs")
        with RunStore.open(url, logs) as store:
            store.start_run("warm-up", "bench", full_resync=False)  # schema, WAL, pages
            store.finish_run(RunSummary("warm-up", "bench", RunStatus.SUCCEEDED))
            before = store_bytes(folder)
            appended, compacted = write_run(store, "big", args.rows, args.batch)
            grown = store_bytes(folder) - before
            parquet = (logs.folder("big") / PARQUET).stat().st_size

            step = max(1, args.rows // args.lookups)
            keys = [key_of(i) for i in range(step // 2, args.rows, step)]
            times = []
            for key in keys:
                t0 = time.perf_counter()
                [found] = store.rows("big", key=key)
                times.append(time.perf_counter() - t0)
                assert found.key == key
            t0 = time.perf_counter()
            missing = store.rows("big", key="no-such-key")
            miss = time.perf_counter() - t0
            assert missing == []

        table_growth = None
        if args.table_rows:
            with RunStore.open(f"sqlite:///{folder / 'old' / 'backhaul.db'}") as old:
                old.start_run("warm-up", "bench", full_resync=False)
                base = store_bytes(folder / "old")
                t0 = time.perf_counter()
                write_run(old, "old", args.table_rows, args.batch)
                table_s = time.perf_counter() - t0
                table_growth = (store_bytes(folder / "old") - base) / args.table_rows
        engine = engine_growth(folder, args.engine_rows) if args.engine_rows else None

    print(
        f"rowlog_bench {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load {os.getloadavg()[0]:.1f}"
    )
    print(f"rows: {args.rows:,} in batches of {args.batch:,}")
    print(f"append (all batches):   {appended:8.2f} s  ({args.rows / appended:,.0f} rows/s)")
    print(f"compact (finish_run):   {compacted:8.2f} s")
    print(f"lookup by key, cold:    {times[0] * 1000:8.1f} ms")
    print(f"lookup by key, warm:    {statistics.median(times[1:]) * 1000:8.1f} ms (median)")
    print(f"lookup by key, worst:   {max(times) * 1000:8.1f} ms")
    print(f"lookup of a missing key:{miss * 1000:8.1f} ms")
    print(f"Parquet row log:        {parquet / args.rows:8.2f} bytes/row ({parquet:,} bytes)")
    print(f"run store growth:       {grown / args.rows:8.4f} bytes/row ({grown:,} bytes)")
    if table_growth is not None:
        print(
            f"before row logs (run_rows, {args.table_rows:,} rows): "
            f"{table_growth:.1f} bytes/row, {table_s:.2f} s"
        )
    if engine is not None:
        print(
            f"a real all-ok run of {args.engine_rows:,} rows: run store "
            f"{engine[0]:.3f} bytes/row, row log {engine[1]:.2f} bytes/row"
        )


if __name__ == "__main__":
    main()
