"""What a shared rate-limit budget costs per call, in Postgres and in Redis.

Usage::

    python bench/budget_bench.py                      # 4 threads x 500 calls, both stores
    python bench/budget_bench.py --threads 8 --calls 1000 --store redis

Each thread takes a call from one account's budget and hands it back at once (the two
store changes every HTTP call makes with a shared budget), with a window large enough
never to wait, so the numbers are the store's own cost. Uses a fresh Postgres database
(dropped at the end) and a Redis key prefix of its own (deleted at the end). Prints calls
per second and the median and 99th-percentile time of one take + release.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import redis
from sqlalchemy import create_engine

from backhaul.destinations.http.budget import BudgetStore
from backhaul.destinations.http.budget import Granted
from backhaul.destinations.http.budget import Window
from backhaul.state.budgets import PostgresBudgets
from backhaul.state.budgets import RedisBudgets
from backhaul.state.store import RunStore

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"


@contextmanager
def postgres() -> Iterator[BudgetStore]:
    name = f"bh_budget_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    try:
        RunStore.open(url).close()
        engine = create_engine(url, pool_size=16)
        try:
            yield PostgresBudgets(engine)
        finally:
            engine.dispose()
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def in_redis() -> Iterator[BudgetStore]:
    prefix = f"backhaul-bench:{uuid.uuid4().hex[:8]}:"
    client = redis.Redis.from_url(REDIS_URL)
    try:
        yield RedisBudgets(client, prefix)
    finally:
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)
        client.close()


def measure(store: BudgetStore, threads: int, calls: int) -> dict[str, float]:
    window = Window(limit=threads * 10, seconds=0.001)
    times: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        mine = []
        for _ in range(calls):
            start = time.perf_counter()
            decision = store.take("bench:account", 1, window, None)
            assert isinstance(decision, Granted) and decision.grant is not None
            store.release("bench:account", decision.grant, window)
            mine.append(time.perf_counter() - start)
        with lock:
            times.extend(mine)

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    began = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - began
    times.sort()
    return {
        "calls_per_s": len(times) / elapsed,
        "median_ms": statistics.median(times) * 1000,
        "p99_ms": times[int(len(times) * 0.99) - 1] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--calls", type=int, default=500, help="per thread")
    parser.add_argument("--store", choices=["postgres", "redis", "both"], default="both")
    args = parser.parse_args()
    stores = {"postgres": postgres, "redis": in_redis}
    names = list(stores) if args.store == "both" else [args.store]
    print(f"{args.threads} threads x {args.calls} calls (take + release each)")
    for name in names:
        with stores[name]() as store:
            found = measure(store, args.threads, args.calls)
        print(
            f"{name:8} {found['calls_per_s']:8.0f} calls/s   median {found['median_ms']:.2f} ms"
            f"   p99 {found['p99_ms']:.2f} ms"
        )


if __name__ == "__main__":
    main()
