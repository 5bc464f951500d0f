"""Web benchmark: latency of the overview page and the API under 50 concurrent clients.

Usage::

    python bench/web_bench.py                      # 200 syncs, 10k runs, 50 clients, 60 s each
    python bench/web_bench.py --duration 10        # a quicker look
    python bench/web_bench.py --pin                # server on core 1, load tool on core 0

Builds a project with ``--syncs`` sync files and a run store holding ``--runs`` runs
(inserted directly with SQLAlchemy), serves it with uvicorn in a separate process on
127.0.0.1 (``--workers`` processes), signs in once for a session cookie, then loads each
endpoint with ``--clients`` concurrent connections for ``--duration`` seconds. The load
tool is wrk (Debian package ``wrk``) when it is installed, else an asyncio httpx loop
(which costs far more CPU on the same cores). Pages are requested with the session cookie
as a browser would; the API with an API token. Prints p50/p95/p99 latency, throughput and
errors per endpoint and writes ``bench/out/web_bench.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
ENDPOINTS = ["/", "/api/v1/syncs", "/api/v1/runs?limit=50"]
STATUSES = ["succeeded"] * 8 + ["partial", "failed"]
PASSWORD = "bench-password"

# The server is `backhaul serve` itself, so the bench measures the settings users get.
SERVER = "from backhaul.cli.app import main; main()"


def write_project(root: Path, syncs: int) -> None:
    for folder in ("sources", "models", "destinations", "syncs"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "backhaul.yml").write_text("name: web_bench\nversion: 1\n")
    (root / "sources" / "warehouse.yml").write_text("type: duckdb\npath: ':memory:'\n")
    (root / "models" / "people.yml").write_text(
        "source: warehouse\nprimary_key: id\n"
        "sql: SELECT range AS id, 'p' || range AS name FROM range(100)\n"
    )
    (root / "destinations" / "crm.yml").write_text(
        "type: sqlite\npath: crm.sqlite\ntable: people\ncreate_table: true\n"
    )
    for i in range(syncs):
        (root / "syncs" / f"sync_{i:03d}.yml").write_text(
            "model: people\ndestination: crm\nmode: upsert\nmappings:\n"
            "  - {column: id, field: id}\n  - {column: name, field: name}\n"
        )


def fill_store(root: Path, syncs: int, runs: int) -> tuple[str, str]:
    """Insert ``runs`` runs spread over the syncs; returns (admin username, API token)."""
    from sqlalchemy import insert

    from backhaul import api
    from backhaul.state.tables import COUNT_COLUMNS
    from backhaul.state.tables import runs as runs_table
    from backhaul.web.auth import Role
    from backhaul.web.users import UserStore

    project = api.load_project(root)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    values = []
    for n in range(runs):
        began = start + timedelta(minutes=10 * n)
        values.append(
            {
                "id": f"{n:016x}",
                "sync": f"sync_{n % syncs:03d}",
                "status": STATUSES[n % len(STATUSES)],
                "trigger": "bench",
                "full_resync": False,
                "dry_run": False,
                "git_commit": None,
                "started_at": began,
                "finished_at": began + timedelta(seconds=5 + n % 50),
                "error": None,
                **{c: (n * 7 + i) % 1000 for i, c in enumerate(COUNT_COLUMNS)},
            }
        )
    with api.open_store(project) as store:
        with store.engine.begin() as conn:
            for lo in range(0, len(values), 2000):
                conn.execute(insert(runs_table), values[lo : lo + 2000])
        users = UserStore(store)
        users.add("bench", PASSWORD, Role.VIEWER)
        token, _ = users.create_token("bench", "bench")
    return "bench", token


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def load(
    url: str,
    headers: dict[str, str],
    path: str,
    clients: int,
    duration: float,
    max_requests: int,
    think: float = 0.0,
) -> dict[str, object]:
    latencies: list[float] = []
    errors = 0
    kinds: dict[str, int] = {}
    deadline = time.perf_counter() + duration
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=limits, timeout=30
    ) as client:

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline and len(latencies) + errors < max_requests:
                t = time.perf_counter()
                try:
                    answer = await client.get(path)
                    await answer.aread()
                    kind = "" if answer.status_code == 200 else str(answer.status_code)
                except httpx.HTTPError as exc:
                    kind = type(exc).__name__
                if not kind:
                    latencies.append((time.perf_counter() - t) * 1000)
                else:
                    errors += 1
                    kinds[kind] = kinds.get(kind, 0) + 1
                if think:
                    await asyncio.sleep(think)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - began
    return {
        "endpoint": path,
        "tool": "httpx",
        "requests": len(latencies) + errors,
        "errors": errors,
        "error_kinds": kinds,
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(pct(latencies, 0.50), 1),
        "p95_ms": round(pct(latencies, 0.95), 1),
        "p99_ms": round(pct(latencies, 0.99), 1),
        "mean_ms": round(statistics.fmean(latencies), 1) if latencies else float("nan"),
    }


WRK_SCRIPT = """
-- Per-request delay (think time) and a JSON summary line for the bench to parse.
local think_ms = %d
function delay() return think_ms end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %%d, "duration_us": %%d, "connect": %%d, "read": %%d, ' ..
    '"write": %%d, "status": %%d, "timeout": %%d, "p50_us": %%d, "p95_us": %%d, ' ..
    '"p99_us": %%d, "max_us": %%d, "mean_us": %%.1f}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max,
    latency.mean))
end
"""


def session_cookie(url: str, username: str, password: str) -> str:
    """Sign in through the login form, as a browser does; returns the Cookie header value."""
    with httpx.Client(base_url=url, follow_redirects=False) as client:
        form = client.get("/login").text
        found = re.search(r'name="csrf_token" value="([^"]+)"', form)
        if found is None:
            raise SystemExit("the login form has no CSRF token")
        answer = client.post(
            "/login",
            data={"username": username, "password": password, "csrf_token": found.group(1)},
        )
        if answer.status_code != 303:
            raise SystemExit(f"sign-in failed with {answer.status_code}")
        return "; ".join(f"{k}={v}" for k, v in client.cookies.items())


def wrk_load(
    wrk: str,
    url: str,
    headers: dict[str, str],
    path: str,
    clients: int,
    duration: float,
    think: float,
    pin: str | None,
    threads: int,
) -> dict[str, object]:
    """One wrk run; every error kind wrk knows (socket, non-2xx/3xx, timeout) is counted."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % int(think * 1000))
    command = [
        wrk,
        f"-t{threads}",
        f"-c{clients}",
        f"-d{duration:g}s",
        "--latency",
        "--timeout",
        "30s",  # wrk's 2 s default would hide slow answers as "timeouts"
        "-s",
        script.name,
    ]
    for key, value in headers.items():
        command += ["-H", f"{key}: {value}"]
    command.append(url + path)
    if pin is not None:
        command = ["taskset", "-c", pin, *command]
    try:
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(script.name)
    line = next(x for x in out.splitlines() if x.startswith("WRK_JSON "))
    data = json.loads(line.removeprefix("WRK_JSON "))
    kinds = {k: data[k] for k in ("connect", "read", "write", "status", "timeout") if data[k]}
    errors = sum(kinds.values())
    seconds = data["duration_us"] / 1e6
    return {
        "endpoint": path,
        "tool": "wrk",
        "requests": data["requests"],
        "errors": errors,
        "error_kinds": kinds,
        "rps": round((data["requests"] - data["status"]) / seconds, 1),
        "p50_ms": round(data["p50_us"] / 1000, 1),
        "p95_ms": round(data["p95_us"] / 1000, 1),
        "p99_ms": round(data["p99_us"] / 1000, 1),
        "max_ms": round(data["max_us"] / 1000, 1),
        "mean_ms": round(data["mean_us"] / 1000, 1),
        "command": " ".join(
            c if not c.startswith(("Cookie:", "Authorization:")) else c.split(":")[0] + ": ..."
            for c in command
        ),
    }


def wait_up(url: str, token: str, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit("the server exited during start-up")
        try:
            if (
                httpx.get(
                    url + "/api/v1/me", headers={"Authorization": f"Bearer {token}"}
                ).status_code
                == 200
            ):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit("the server did not start")


def headers_for(path: str, token: str, cookie: str) -> dict[str, str]:
    """Pages as a signed-in browser asks for them; the API with an API token."""
    if path.startswith("/api/"):
        return {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    return {"Cookie": cookie, "Accept": "text/html"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--syncs", type=int, default=200)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--max-requests", type=int, default=500_000, help="httpx loop only")
    parser.add_argument("--endpoint", action="append", help="paths to load (default: 3)")
    parser.add_argument(
        "--think",
        type=float,
        default=0.0,
        help="seconds each client waits between requests (0: closed loop)",
    )
    parser.add_argument("--workers", type=int, default=1, help="server processes")
    parser.add_argument(
        "--no-access-log",
        dest="access_log",
        action="store_false",
        help="serve without the access log (on by default, as in `backhaul serve`)",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="pin the server to core 1 and the load tool to core 0 (taskset)",
    )
    parser.add_argument("--tool", choices=["auto", "wrk", "httpx"], default="auto")
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="result file name under bench/out/")
    args = parser.parse_args()
    endpoints = args.endpoint or ENDPOINTS
    wrk = shutil.which("wrk") if args.tool != "httpx" else None
    if args.tool == "wrk" and wrk is None:
        raise SystemExit("wrk is not installed: apt-get install wrk (or use --tool httpx)")
    pin = args.pin and shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
    with tempfile.TemporaryDirectory(prefix="backhaul-web-bench-") as tmp:
        root = Path(tmp)
        write_project(root, args.syncs)
        username, token = fill_store(root, args.syncs, args.runs)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = [
            *(sys.executable, "-c", SERVER, "serve", "--project-dir", str(root)),
            *("--port", str(port), "--workers", str(args.workers)),
            *(() if args.access_log else ("--no-access-log",)),
        ]
        if pin:
            server = ["taskset", "-c", "1", *server]
        # The server's log (an access line per request) goes to a file, as it would in
        # production, not to this terminal.
        log = open(root / "server.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            server, stdout=log, stderr=log, env={**os.environ, "PYTHONWARNINGS": "ignore"}
        )
        try:
            try:
                wait_up(url, token, proc)
            except SystemExit:
                sys.stderr.write((root / "server.log").read_text(errors="replace")[-4000:])
                raise
            cookie = session_cookie(url, username, PASSWORD)
            results = []
            for path in endpoints:
                headers = headers_for(path, token, cookie)
                asyncio.run(load(url, headers, path, 5, 2.0, 1000))  # warm-up
                if wrk is not None:
                    result = wrk_load(
                        wrk,
                        url,
                        headers,
                        path,
                        args.clients,
                        args.duration,
                        args.think,
                        "0" if pin else None,
                        args.wrk_threads,
                    )
                else:
                    result = asyncio.run(
                        load(
                            url,
                            headers,
                            path,
                            args.clients,
                            args.duration,
                            args.max_requests,
                            args.think,
                        )
                    )
                results.append(result)
                print(json.dumps(result), flush=True)
        finally:
            proc.terminate()
            proc.wait(10)
            log.close()
    tool = "wrk" if wrk is not None else "httpx"
    print(
        f"\n{args.syncs} syncs, {args.runs} runs, {args.clients} clients, "
        f"{args.duration:.0f} s per endpoint, think time {args.think:g} s, "
        f"{args.workers} worker(s), load tool {tool}{', pinned' if pin else ''}"
    )
    print(
        f"{'endpoint':<26}{'requests':>10}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}"
        f"{'p99 ms':>9}{'errors':>8}"
    )
    for r in results:
        print(
            f"{r['endpoint']!s:<26}{r['requests']:>10}{r['rps']:>9}{r['p50_ms']:>9}"
            f"{r['p95_ms']:>9}{r['p99_ms']:>9}{r['errors']:>8}"
        )
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    name = args.out or ("web_bench.json" if not args.think else "web_bench_think.json")
    (out / name).write_text(
        json.dumps(
            {
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
                f"{platform.python_version()}",
                "load_average_after": os.getloadavg(),
                "syncs": args.syncs,
                "runs": args.runs,
                "clients": args.clients,
                "duration_s": args.duration,
                "think_s": args.think,
                "workers": args.workers,
                "access_log": args.access_log,
                "tool": tool,
                "pinned": pin,
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
