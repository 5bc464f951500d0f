"""Bulk loads side by side: the raw engine path against Backhaul's runs on the same data.

Usage::

    python bench/bulk_bench.py                       # 1M rows x 10 columns, DuckDB + Postgres
    python bench/bulk_bench.py --rows 200000 --target duckdb --target mysql
    python bench/bulk_bench.py --profile first_run    # also write a cProfile of that phase
    python bench/bulk_bench.py --target duckdb --repeat 5   # medians of 5 interleaved pairs

For each target it builds ``bench/datasets.py``'s ``customers`` model, then times:

* ``raw``: the database's own bulk path for the same 10 columns, with no Backhaul code.
  DuckDB: ``CREATE TABLE ... AS SELECT`` from the attached model. Postgres: DuckDB's
  postgres extension ``INSERT INTO pg.t SELECT ...`` when the extension can be loaded,
  otherwise (no network to fetch it) DuckDB exports CSV and psycopg streams it with
  ``COPY ... FROM STDIN``; the output says which. MySQL: DuckDB exports CSV and PyMySQL
  sends it with ``LOAD DATA LOCAL INFILE`` when the server allows it, otherwise multi-row
  ``INSERT`` statements of 5,000 rows. Files: DuckDB ``COPY ... TO`` Parquet.
  For DuckDB it also times the same rows into a table with a primary key, as the table
  Backhaul creates has (``raw, keyed``: not the baseline of the ratios, shown beside it).
* ``first_run``: ``backhaul run`` into an empty table (every row is new; the MySQL
  destination has ``local_infile: true``, the file destination writes Parquet in
  ``current`` layout);
* ``run_1pct``: after changing 1%, adding 1% and removing 1% of rows;
* ``run_no_change``: a run when nothing changed.

Each Backhaul phase runs in its own process, so its peak RSS is its own; the raw paths run
in one child process each as well. As with the raw path (whose ``import duckdb`` is outside
its timing), a phase's seconds start once the project is loaded and the modules a run
imports on first use (the engine, the connector) are imported; the ``+imports`` columns add
that import time back, which a one-off ``backhaul run`` also pays. Prints a table with the ratio of each phase to the raw
path and writes ``bench/out/bulk_bench.json``.

With ``--repeat N`` the raw path and the first run are timed N times each, one after the
other (raw, first run, raw, first run, ...; every first run into an empty table with no
state), and the table shows the median of each with every pair's ratio beside it: on a
2-core machine one pair can be a fifth off either way, and the median of interleaved pairs
is what the recorded ratios use.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import uuid
from datetime import UTC
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from datasets import COLUMNS  # noqa: E402
from datasets import build_bench_model  # noqa: E402
from datasets import mutate  # noqa: E402

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
MYSQL_ADMIN = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
TARGETS = ("duckdb", "postgres", "mysql", "file")

# One Backhaul run (or a profiled run) in a fresh process; prints JSON on its last line.
RUN_PHASE = r"""
import cProfile, importlib, json, pstats, resource, sys, time
from backhaul import api
project = api.load_project(sys.argv[1])
# The modules a run imports on first use, timed apart (the raw path's `import duckdb`
# and `import psycopg` are outside its timing too).
t = time.perf_counter()
importlib.import_module("backhaul.engine.launch")
for dest in project.destinations.values():
    project.registry.destination(dest.config.type)
imports = time.perf_counter() - t
profile = cProfile.Profile() if sys.argv[2] else None
t = time.perf_counter()
if profile:
    profile.enable()
summary = api.run(project, "customers_sync", force=True)
if profile:
    profile.disable()
    profile.dump_stats(sys.argv[2])
elapsed = time.perf_counter() - t
print(json.dumps({"seconds": elapsed, "imports_s": imports, "status": str(summary.status),
                  "error": summary.error, "counts": summary.counts.as_dict(),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

# The raw engine paths, each in a fresh process.
RAW_PHASE = r"""
import json, resource, sys, time
import duckdb
kind, warehouse, target, columns = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
cols = columns.split(",")
select = ", ".join(cols)
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
con.execute(f"ATTACH '{warehouse}' AS wh (READ_ONLY)")
method = ""
extra = {}
t = time.perf_counter()
if kind == "duckdb":
    con.execute(f"ATTACH '{target}' AS dest")
    con.execute(f"CREATE TABLE dest.customers AS SELECT {select} FROM wh.customers")
    method = "DuckDB CREATE TABLE AS SELECT"
    # The same rows into a table keyed like the one Backhaul creates (a primary key).
    keyed = time.perf_counter()
    con.execute(f"CREATE TABLE dest.keyed AS SELECT {select} FROM wh.customers LIMIT 0")
    con.execute("ALTER TABLE dest.keyed ADD PRIMARY KEY (id)")
    con.execute(f"INSERT INTO dest.keyed SELECT {select} FROM wh.customers")
    extra["keyed_seconds"] = time.perf_counter() - keyed
    t += extra["keyed_seconds"]  # not part of the raw path's own time
elif kind == "file":
    con.execute(f"COPY (SELECT {select} FROM wh.customers) TO '{target}' (FORMAT parquet)")
    method = "DuckDB COPY TO parquet"
elif kind == "postgres":
    ddl = ("CREATE TABLE customers (id BIGINT, email TEXT, name TEXT, score INTEGER, "
           "ltv NUMERIC(12,2), balance DOUBLE PRECISION, active BOOLEAN, plan TEXT, "
           "signed_up DATE, updated_at TIMESTAMP)")
    try:
        con.execute("LOAD postgres")
        loaded = True
    except duckdb.Error:
        try:
            con.execute("INSTALL postgres")
            con.execute("LOAD postgres")
            loaded = True
        except duckdb.Error:
            loaded = False
    import psycopg
    with psycopg.connect(target, autocommit=True) as pg:
        pg.execute(ddl)
    t = time.perf_counter()
    if loaded:
        con.execute(f"ATTACH '{target}' AS pg (TYPE postgres)")
        con.execute(f"INSERT INTO pg.public.customers SELECT {select} FROM wh.customers")
        method = "DuckDB postgres extension INSERT ... SELECT"
    else:
        import tempfile, os
        fd, csv = tempfile.mkstemp(suffix=".csv")
        os.close(fd)
        con.execute(f"COPY (SELECT {select} FROM wh.customers) TO '{csv}' (FORMAT csv, HEADER false)")
        with psycopg.connect(target) as pg, pg.cursor() as cur:
            with cur.copy("COPY customers FROM STDIN (FORMAT csv)") as copy, open(csv, "rb") as f:
                while block := f.read(1 << 20):
                    copy.write(block)
        os.unlink(csv)
        method = ("DuckDB CSV export + psycopg COPY FROM STDIN "
                  "(the postgres extension cannot be installed here)")
elif kind == "mysql":
    import pymysql, tempfile, os
    params = json.loads(target)
    ddl = ("CREATE TABLE customers (id BIGINT, email LONGTEXT, name LONGTEXT, score INTEGER, "
           "ltv DECIMAL(12,2), balance DOUBLE, active BOOLEAN, plan LONGTEXT, "
           "signed_up DATE, updated_at DATETIME(6))")
    conn = pymysql.connect(**params, local_infile=True, autocommit=False)
    cur = conn.cursor()
    cur.execute(ddl)
    cur.execute("SELECT @@local_infile")
    allowed = bool(cur.fetchone()[0])
    t = time.perf_counter()
    if allowed:
        fd, csv = tempfile.mkstemp(suffix=".csv")
        os.close(fd)
        con.execute(f"COPY (SELECT {select} FROM wh.customers) TO '{csv}' "
                    "(FORMAT csv, HEADER false, NULLSTR '\\N')")
        cur.execute(f"LOAD DATA LOCAL INFILE '{csv}' INTO TABLE customers "
                    "FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '' "
                    "LINES TERMINATED BY '\\n'")
        os.unlink(csv)
        method = "DuckDB CSV export + LOAD DATA LOCAL INFILE"
    else:
        rows = con.execute(f"SELECT {select} FROM wh.customers").fetchall()
        marks = ", ".join(["%s"] * len(cols))
        for i in range(0, len(rows), 5000):
            cur.executemany(f"INSERT INTO customers VALUES ({marks})", rows[i:i + 5000])
        method = "multi-row INSERT (LOAD DATA LOCAL is off on this server)"
    conn.commit()
    conn.close()
elapsed = time.perf_counter() - t
print(json.dumps({"seconds": elapsed, "method": method, **extra,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _child(code: str, *args: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"benchmark phase failed:\n{out.stderr[-3000:]}")
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def write_project(root: Path, target: str, dest_yaml: str, batch_size: int | None) -> None:
    for folder in ("sources", "models", "destinations", "syncs"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "backhaul.yml").write_text("name: bulk_bench\n")
    (root / "sources/warehouse.yml").write_text("type: duckdb\npath: warehouse.duckdb\n")
    (root / "models/customers.yml").write_text(
        "source: warehouse\nprimary_key: id\ntable: customers\n"
    )
    (root / "destinations/dest.yml").write_text(dest_yaml)
    mappings = "\n".join(f"  - {{column: {c}, field: {c}}}" for c in COLUMNS)
    size = f"batch_size: {batch_size}\n" if batch_size else ""
    (root / "syncs/customers_sync.yml").write_text(
        f"model: customers\ndestination: dest\nmode: mirror\n{size}mappings:\n{mappings}\n"
    )


class Databases:
    """Creates uniquely named Postgres and MySQL databases and drops them at the end."""

    def __init__(self) -> None:
        self.pg: list[str] = []
        self.my: list[str] = []

    def postgres(self) -> str:
        import psycopg

        name = f"bulk_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as con:
            con.execute(f"CREATE DATABASE {name}")
        self.pg.append(name)
        return f"postgresql://postgres@127.0.0.1:5432/{name}"

    def mysql(self) -> str:
        import pymysql

        name = f"bulk_bench_{uuid.uuid4().hex[:8]}"
        con = pymysql.connect(**MYSQL_ADMIN)  # type: ignore[arg-type]
        con.cursor().execute(f"CREATE DATABASE {name}")
        con.close()
        self.my.append(name)
        return name

    def drop(self) -> None:
        if self.pg:
            import psycopg

            with psycopg.connect(PG_ADMIN, autocommit=True) as con:
                for name in self.pg:
                    con.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        if self.my:
            import pymysql

            con = pymysql.connect(**MYSQL_ADMIN)  # type: ignore[arg-type]
            for name in self.my:
                con.cursor().execute(f"DROP DATABASE IF EXISTS {name}")
            con.close()


def raw(target: str, root: Path, dbs: Databases) -> dict[str, object]:
    warehouse = str(root / "warehouse.duckdb")
    cols = ",".join(COLUMNS)
    if target == "duckdb":
        dest = root / "raw.duckdb"
        dest.unlink(missing_ok=True)
        return _child(RAW_PHASE, "duckdb", warehouse, str(dest), cols)
    if target == "file":
        return _child(RAW_PHASE, "file", warehouse, str(root / "raw.parquet"), cols)
    if target == "postgres":
        return _child(RAW_PHASE, "postgres", warehouse, dbs.postgres(), cols)
    params = dict(MYSQL_ADMIN, database=dbs.mysql())
    return _child(RAW_PHASE, "mysql", warehouse, json.dumps(params), cols)


def destination_yaml(target: str, dbs: Databases) -> str:
    if target == "duckdb":
        return "type: duckdb\npath: destination.duckdb\ntable: customers\ncreate_table: true\n"
    if target == "file":
        return "type: file\nformat: parquet\npath: out/customers.parquet\nlayout: current\n"
    if target == "postgres":
        return f"type: postgres\nurl: {dbs.postgres()}\ntable: customers\ncreate_table: true\n"
    return (
        f"type: mysql\nurl: mysql://root@127.0.0.1:3306/{dbs.mysql()}\n"
        "table: customers\ncreate_table: true\nlocal_infile: true\n"
    )


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _start_over(root: Path, target: str, dbs: Databases) -> None:
    """An empty destination and no state, for one more first run."""
    subprocess.run(["rm", "-rf", str(root / ".backhaul"), str(root / "out")], check=True)
    (root / "destination.duckdb").unlink(missing_ok=True)
    if target in ("postgres", "mysql"):  # a new database for each first run
        (root / "destinations/dest.yml").write_text(destination_yaml(target, dbs))


def bench(
    target: str,
    rows: int,
    out_dir: Path,
    batch_size: int | None,
    profile: str | None,
    dbs: Databases,
    repeat: int = 1,
) -> dict[str, object]:
    root = out_dir / f"bulk-{target}-{rows}"
    if root.exists():
        subprocess.run(["rm", "-rf", str(root)], check=True)
    write_project(root, target, destination_yaml(target, dbs), batch_size)
    build_bench_model(root / "warehouse.duckdb", rows)

    def run(name: str) -> dict[str, object]:
        prof = str(out_dir / f"bulk-{target}-{name}.prof") if profile == name else ""
        out = _child(RUN_PHASE, str(root), prof)
        if out["status"] not in ("succeeded", "RunStatus.SUCCEEDED"):
            raise SystemExit(f"{target} {name} did not succeed: {out}")
        return out

    pairs: list[tuple[dict[str, object], dict[str, object]]] = []
    for i in range(repeat):
        if i:
            _start_over(root, target, dbs)
        pairs.append((raw(target, root, dbs), run("first_run")))
    result: dict[str, object] = {"target": target, "rows": rows}
    if repeat == 1:
        result["raw"], result["first_run"] = pairs[0]
    else:
        # Seconds are the medians; the other fields (peak RSS, imports, method) are the
        # first pair's.
        raw_s = [float(str(r["seconds"])) for r, _ in pairs]
        run_s = [float(str(f["seconds"])) for _, f in pairs]
        result["raw"] = dict(pairs[0][0], seconds=_median(raw_s))
        if "keyed_seconds" in pairs[0][0]:
            keyed = [float(str(r["keyed_seconds"])) for r, _ in pairs]
            result["raw"]["keyed_seconds"] = _median(keyed)  # type: ignore[index]
        result["first_run"] = dict(pairs[0][1], seconds=_median(run_s))
        result["pairs"] = [
            {"raw_s": r, "first_run_s": f, "ratio": f / r}
            for r, f in zip(raw_s, run_s, strict=True)
        ]
    result["mutation"] = mutate(
        root / "warehouse.duckdb", change_pct=1.0, add_pct=1.0, remove_pct=1.0
    )
    result["run_1pct"] = run("run_1pct")
    result["run_no_change"] = run("run_no_change")
    return result


def machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.machine()}, {os.cpu_count()} cores, {mem:.0f} GiB RAM"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="model size")
    parser.add_argument(
        "--target",
        action="append",
        choices=TARGETS,
        help="destination (repeatable); default: duckdb and postgres",
    )
    parser.add_argument(
        "--batch-size", type=int, help="the sync's batch_size (default: the destination's default)"
    )
    parser.add_argument(
        "--profile",
        choices=("first_run", "run_1pct", "run_no_change"),
        help="write a cProfile of this phase to bench/out/",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="time the raw path and the first run this many times, interleaved; report medians",
    )
    parser.add_argument("--out", type=Path, default=HERE / "out")
    args = parser.parse_args()
    targets = args.target or ["duckdb", "postgres"]
    args.out.mkdir(parents=True, exist_ok=True)
    dbs = Databases()
    try:
        results = [
            bench(t, args.rows, args.out, args.batch_size, args.profile, dbs, max(1, args.repeat))
            for t in targets
        ]
    finally:
        dbs.drop()
    import duckdb

    meta = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
    }
    (args.out / "bulk_bench.json").write_text(
        json.dumps({"meta": meta, "results": results}, indent=2)
    )
    print(meta)
    print(
        f"{'target':<9} {'phase':<14} {'seconds':>8} {'x raw':>7} {'+imports':>8} {'x raw':>7} "
        f"{'peak RSS MB':>12}  note"
    )
    for r in results:
        base = r["raw"]
        assert isinstance(base, dict)
        raw_s = float(base["seconds"])
        print(
            f"{r['target']:<9} {'raw':<14} {raw_s:>8.2f} {1:>7.2f} {'':>8} {'':>7} "
            f"{float(base['peak_rss_mb']):>12.0f}  {base['method']}"
        )
        if "keyed_seconds" in base:
            keyed = float(base["keyed_seconds"])
            print(
                f"{r['target']:<9} {'raw, keyed':<14} {keyed:>8.2f} {keyed / raw_s:>7.2f} "
                f"{'':>8} {'':>7} {'':>12}  the same into a table with a primary key"
            )
        for name in ("first_run", "run_1pct", "run_no_change"):
            p = r[name]
            assert isinstance(p, dict)
            secs = float(p["seconds"])
            whole = secs + float(p["imports_s"])
            counts = p["counts"]
            assert isinstance(counts, dict)
            sent = sum(int(counts.get(k, 0)) for k in ("added", "changed", "removed"))
            print(
                f"{r['target']:<9} {name:<14} {secs:>8.2f} {secs / raw_s:>7.2f} "
                f"{whole:>8.2f} {whole / raw_s:>7.2f} "
                f"{float(p['peak_rss_mb']):>12.0f}  {sent:,} rows planned to send"
            )
        pairs = r.get("pairs")
        if isinstance(pairs, list):
            ratios = ", ".join(f"{float(q['ratio']):.2f}" for q in pairs)
            print(
                f"{r['target']:<9} medians of {len(pairs)} interleaved pairs (raw, first run); "
                f"each pair's first_run / raw: {ratios}"
            )


if __name__ == "__main__":
    main()
