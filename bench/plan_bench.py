"""Planner benchmark: diff time, run time and peak memory on DuckDB models of N rows.

Usage::

    python bench/plan_bench.py --rows 1000000 --rows 10000000

For each size it builds a ``customers`` model (11 mixed-type columns), runs a first full
sync to a DuckDB table, changes 1% / adds 1% / removes 1% of rows, then measures:

* ``plan``: a dry run's change detection (extract + fingerprint + diff), in its own process;
* ``run (1% changed)``: the whole run that sends those changes;
* ``run (no change)``: a whole run when nothing changed.

Each phase runs in a fresh process so its peak RSS is its own. Prints a table and writes
``bench/out/plan_bench.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from datetime import UTC
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from datasets import COLUMNS  # noqa: E402
from datasets import build_bench_model  # noqa: E402
from datasets import mutate  # noqa: E402

PHASE = r"""
import json, resource, sys, time
from backhaul import api
from backhaul.engine.plan import backend_for, compute
from backhaul.engine.runner import open_planning, settings_for
project = api.load_project(sys.argv[2])
t = time.perf_counter()
if sys.argv[1] == "plan":
    sync = project.sync("customers_sync")
    settings = settings_for(project, sync)
    ws = open_planning(project, sync, settings, read_only=True)
    plan = compute(ws, backend_for(ws), settings, full_resync=False, force=True)
    ws.close()
    counts = plan.counts
else:
    counts = api.run(project, "customers_sync", force=True).counts
elapsed = time.perf_counter() - t
print(json.dumps({"seconds": elapsed, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "counts": counts.as_dict()}))
"""


def write_project(root: Path) -> None:
    for folder in ("sources", "models", "destinations", "syncs"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "backhaul.yml").write_text("name: plan_bench\n")
    (root / "sources/warehouse.yml").write_text("type: duckdb\npath: warehouse.duckdb\n")
    (root / "models/customers.yml").write_text(
        "source: warehouse\nprimary_key: id\ntable: customers\n"
    )
    (root / "destinations/copy.yml").write_text(
        "type: duckdb\npath: destination.duckdb\ntable: customers\ncreate_table: true\n"
    )
    mappings = "\n".join(f"  - {{column: {c}, field: {c}}}" for c in COLUMNS)
    (root / "syncs/customers_sync.yml").write_text(
        "model: customers\ndestination: copy\nmode: mirror\nbatch_size: 50000\n"
        f"mappings:\n{mappings}\n"
    )


def phase(kind: str, root: Path) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", PHASE, kind, str(root)], capture_output=True, text=True, check=True
    )
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def bench(rows: int, out_dir: Path) -> dict[str, object]:
    root = out_dir / f"plan-{rows}"
    if root.exists():
        subprocess.run(["rm", "-rf", str(root)], check=True)
    write_project(root)
    t = time.perf_counter()
    build_bench_model(root / "warehouse.duckdb", rows)
    built = time.perf_counter() - t
    first = phase("run", root)
    plan_nochange = phase("plan", root)
    mutation = mutate(root / "warehouse.duckdb", change_pct=1.0, add_pct=1.0, remove_pct=1.0)
    plan_changed = phase("plan", root)
    run_changed = phase("run", root)
    run_nochange = phase("run", root)
    return {
        "rows": rows,
        "build_seconds": built,
        "mutation": mutation,
        "first_run": first,
        "plan_no_change": plan_nochange,
        "plan_1pct": plan_changed,
        "run_1pct": run_changed,
        "run_no_change": run_nochange,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, action="append", help="model size (repeatable)")
    parser.add_argument("--out", type=Path, default=HERE / "out")
    args = parser.parse_args()
    sizes = args.rows or [1_000_000]
    args.out.mkdir(parents=True, exist_ok=True)
    results = [bench(n, args.out) for n in sizes]
    meta = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor() or ''} cores={__import__('os').cpu_count()}",
        "python": platform.python_version(),
        "duckdb": __import__("duckdb").__version__,
    }
    (args.out / "plan_bench.json").write_text(
        json.dumps({"meta": meta, "results": results}, indent=2)
    )
    print(f"{meta}")
    header = f"{'rows':>11} {'phase':<18} {'seconds':>8} {'rows/s':>12} {'peak RSS MB':>12}"
    print(header)
    for r in results:
        n = int(r["rows"])  # type: ignore[call-overload]
        for name in ("first_run", "plan_no_change", "plan_1pct", "run_1pct", "run_no_change"):
            p = r[name]
            assert isinstance(p, dict)
            secs = float(p["seconds"])
            print(
                f"{n:>11,} {name:<18} {secs:>8.2f} {n / secs:>12,.0f} {float(p['peak_rss_mb']):>12.0f}"
            )
    _ = resource  # peak RSS is measured inside each phase's process


if __name__ == "__main__":
    main()
