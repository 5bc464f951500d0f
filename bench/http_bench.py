"""The HTTP send loop side by side with drt: a DuckDB table to a webhook on loopback.

Usage::

    python bench/http_bench.py                         # 100k rows, 0 and 20 ms, median of 2
    python bench/http_bench.py --rows 20000 --latency 0 --repeat 1
    python bench/http_bench.py --profile bench/out/http.prof   # cProfile Backhaul's 0 ms run
    python bench/http_bench.py --no-drt                # Backhaul only
    python bench/http_bench.py --baseline-src /tmp/old/src  # also an older Backhaul, A/B

One process run does everything:

* builds ``bench/datasets.py``'s ``customers`` table (``--rows``) in a DuckDB file;
* serves a webhook receiver on loopback in a child process (``LoopbackServer``, the
  server the emulators use: uvicorn + Starlette). It parses each JSON body, counts the
  records, waits ``--latency`` milliseconds (asyncio, so calls in flight overlap as they
  would at a real vendor) and answers ``200 {"ok": true}``;
* installs drt-core from PyPI into a venv of its own (``bench/out/drt-venv``, reused on
  later runs); when that fails, drt is skipped with the reason;
* for each latency, ``--repeat`` rounds, interleaved: Backhaul with its defaults,
  drt, Backhaul with ``concurrency: 1``, then Backhaul again with nothing changed.

Both tools get the same job: the same 10 columns, batches of ``--batch`` records per
request as ``{"operation": "upsert", "records": [...]}``. drt uses its ``rest_api``
destination in ``body_mode: batch`` with a Jinja ``batch_template`` and a rate limit
raised out of the way (its default is 10 requests per second). Each run is a fresh
process (the CLI of each tool) timed from outside, start-up included; Backhaul's first
run starts from empty state. Every run is checked against the receiver's record count.
Prints a table and JSON and writes ``bench/out/http_bench.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from datetime import UTC
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from datasets import COLUMNS  # noqa: E402
from datasets import build_bench_model  # noqa: E402

DRT_VERSION = "1.2.1"
BACKHAUL = Path(sys.executable).parent / "backhaul"  # the CLI's script in this venv
VARIANTS = ("backhaul", "drt", "backhaul_c1", "backhaul_no_change")

# The receiver, in a child process: prints its port, serves until stdin closes.
RECEIVER = r"""
import asyncio, json, sys
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from backhaul.testing.server import LoopbackServer

state = {"latency": 0.0, "calls": 0, "records": 0}

async def hook(request: Request) -> Response:
    body = json.loads(await request.body())
    state["calls"] += 1
    state["records"] += len(body["records"]) if "records" in body else 1
    if state["latency"]:
        await asyncio.sleep(state["latency"])
    return Response(b'{"ok":true}', media_type="application/json")

async def control(request: Request) -> Response:
    if request.method == "POST":
        asked = json.loads(await request.body())
        state["latency"] = float(asked.get("latency_ms", 0)) / 1000
        if asked.get("reset"):
            state["calls"] = state["records"] = 0
    return JSONResponse(state)

app = Starlette(routes=[Route("/hook", hook, methods=["POST"]),
                        Route("/control", control, methods=["GET", "POST"])])
server = LoopbackServer(app, name="bench-receiver").start()
print(server.port, flush=True)
sys.stdin.read()
server.stop()
"""


class Receiver:
    """The receiver child process and its control endpoint."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", RECEIVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        self.url = f"http://127.0.0.1:{self.port}/hook"

    def control(self, **asked: object) -> dict[str, float]:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/control",
            data=json.dumps(asked).encode() if asked else None,
            method="POST" if asked else "GET",
        )
        with urllib.request.urlopen(req, timeout=10) as answer:
            result: dict[str, float] = json.loads(answer.read())
            return result

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=20)


def write_backhaul(root: Path, warehouse: Path, url: str, concurrency: int | None) -> None:
    if root.exists():
        shutil.rmtree(root)
    for folder in ("sources", "models", "destinations", "syncs"):
        (root / folder).mkdir(parents=True)
    (root / "backhaul.yml").write_text("name: http_bench\n")
    (root / "sources/warehouse.yml").write_text(f"type: duckdb\npath: {warehouse}\n")
    (root / "models/customers.yml").write_text(
        "source: warehouse\nprimary_key: id\ntable: customers\n"
    )
    conc = f"concurrency: {concurrency}\n" if concurrency else ""
    (root / "destinations/hook.yml").write_text(f"type: webhook\nurl: {url}\nmode: batch\n{conc}")
    mappings = "\n".join(f"  - {{column: {c}, field: {c}}}" for c in COLUMNS)
    (root / "syncs/customers_sync.yml").write_text(
        f"model: customers\ndestination: hook\nmode: upsert\n{conc}mappings:\n{mappings}\n"
    )


def write_drt(root: Path, warehouse: Path, url: str, batch: int) -> None:
    if root.exists():
        shutil.rmtree(root)
    (root / "home/.drt").mkdir(parents=True)
    (root / "project/syncs").mkdir(parents=True)
    (root / "home/.drt/profiles.yml").write_text(
        f"local:\n  type: duckdb\n  database: {warehouse}\n"
    )
    (root / "project/drt_project.yml").write_text("name: http_bench\nprofile: local\n")
    template = '{"operation": "upsert", "records": {{ rows | tojson_safe }}}'
    (root / "project/syncs/customers_sync.yml").write_text(
        "name: customers_sync\n"
        f"model: SELECT {', '.join(COLUMNS)} FROM customers\n"
        "destination:\n"
        "  type: rest_api\n"
        f"  url: {url}\n"
        "  method: POST\n"
        "  headers: {Content-Type: application/json}\n"
        "  body_mode: batch\n"
        f"  batch_template: '{template}'\n"
        "sync:\n"
        "  mode: full\n"
        f"  batch_size: {batch}\n"
        "  rate_limit: {requests_per_second: 1000000}\n"
    )


def drt_venv(out: Path) -> tuple[Path | None, str]:
    """drt's ``drt`` command in its own venv, installing it when needed; or why not."""
    venv = out / "drt-venv"
    exe = venv / "bin" / "drt"
    if exe.exists():
        return exe, "reused"
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin/pip"), "install", "-q", f"drt-core[duckdb]=={DRT_VERSION}"],
            check=True,
            capture_output=True,
            text=True,
            timeout=900,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        shutil.rmtree(venv, ignore_errors=True)
        return None, f"drt-core could not be installed: {str(detail).strip()[-300:]}"
    return exe, "installed"


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return elapsed, out.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=100, help="records per request")
    parser.add_argument(
        "--latency", type=float, action="append", help="receiver latency in ms (repeatable)"
    )
    parser.add_argument("--repeat", type=int, default=2, help="rounds; the median is shown")
    parser.add_argument("--no-drt", action="store_true", help="skip drt")
    parser.add_argument("--only", choices=VARIANTS, action="append", help="run only these")
    parser.add_argument(
        "--baseline-src",
        type=Path,
        help="another Backhaul source tree (e.g. `git archive <commit> src`): adds the run "
        "`baseline`, its defaults, interleaved with the others",
    )
    parser.add_argument(
        "--profile", type=Path, help="write a cProfile of Backhaul's first 0 ms run here"
    )
    parser.add_argument("--out", type=Path, default=HERE / "out")
    args = parser.parse_args()
    latencies = args.latency or [0.0, 20.0]
    variants = args.only or list(VARIANTS)
    if args.baseline_src:
        variants.insert(0, "baseline")
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = out / "http"
    work.mkdir(exist_ok=True)
    warehouse = work / "warehouse.duckdb"
    build_bench_model(warehouse, args.rows)

    drt_exe: Path | None = None
    drt_note = "skipped (--no-drt)"
    if not args.no_drt and "drt" in variants:
        drt_exe, drt_note = drt_venv(out)
        if drt_exe is None:
            print(f"drt skipped: {drt_note}", file=sys.stderr)
    src = HERE.parent / "src"
    env = dict(os.environ, PYTHONPATH=f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    base_env = dict(
        os.environ, PYTHONPATH=str(args.baseline_src.resolve()) if args.baseline_src else ""
    )
    drt_env = dict(os.environ, HOME=str(work / "drt/home"), DO_NOT_TRACK="1")
    drt_env.pop("PYTHONPATH", None)

    receiver = Receiver()
    times: dict[str, dict[str, list[float]]] = {}
    try:
        write_drt(work / "drt", warehouse, receiver.url, args.batch)
        for rnd in range(args.repeat):
            for latency in latencies:
                label = f"{latency:g} ms"
                per = times.setdefault(label, {v: [] for v in variants})

                def run(
                    variant: str,
                    lat: float = latency,
                    rnd: int = rnd,
                    label: str = label,
                    per: dict[str, list[float]] = per,
                ) -> None:
                    receiver.control(latency_ms=lat, reset=True)
                    if variant == "drt":
                        if drt_exe is None:
                            return
                        cmd = [str(drt_exe), "run", "--select", "customers_sync"]
                        secs, _ = timed(cmd, work / "drt/project", drt_env)
                        expected = args.rows
                    else:
                        root = work / f"bh-{variant}"
                        conc = 1 if variant == "backhaul_c1" else None
                        if variant != "backhaul_no_change":
                            write_backhaul(root, warehouse, receiver.url, conc)
                        cmd = [sys.executable, str(BACKHAUL), "run", "customers_sync"]
                        if args.profile and variant == "backhaul" and lat == 0 and rnd == 0:
                            cmd[1:1] = ["-m", "cProfile", "-o", str(args.profile.resolve())]
                        secs, _ = timed(cmd, root, base_env if variant == "baseline" else env)
                        expected = 0 if variant == "backhaul_no_change" else args.rows
                    got = int(receiver.control()["records"])
                    if got != expected:
                        raise SystemExit(f"{variant} at {label}: receiver got {got} of {expected}")
                    per[variant].append(secs)
                    print(f"round {rnd + 1} {label:>6} {variant:<19} {secs:7.2f} s", flush=True)

                for variant in variants:
                    if variant == "backhaul_no_change":
                        continue
                    run(variant)
                if "backhaul_no_change" in variants:
                    if "backhaul" not in variants:
                        run("backhaul")
                    shutil.copytree(
                        work / "bh-backhaul", work / "bh-backhaul_no_change", dirs_exist_ok=True
                    )
                    run("backhaul_no_change")
    finally:
        receiver.close()

    import duckdb

    meta = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared: numbers are noisy)",
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "rows": args.rows,
        "records_per_request": args.batch,
        "repeat": args.repeat,
        "drt": f"drt-core {DRT_VERSION}: {drt_note}" if drt_exe else drt_note,
    }
    medians = {
        label: {v: statistics.median(s) for v, s in per.items() if s}
        for label, per in times.items()
    }
    report = {"meta": meta, "seconds": times, "median_seconds": medians}
    (out / "http_bench.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(meta))
    print(
        f"\n{'latency':<8} {'run':<19} {'median s':>9} {'rows/s':>9} {'x drt':>7} {'drt / run':>9}"
    )
    for label, med in medians.items():
        base = med.get("drt")
        for variant, secs in med.items():
            rate = args.rows / secs if variant != "backhaul_no_change" else 0
            ratio = f"{secs / base:7.2f} {base / secs:9.2f}" if base else "      -         -"
            print(f"{label:<8} {variant:<19} {secs:>9.2f} {rate:>9.0f} {ratio}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
