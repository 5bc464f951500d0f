"""Prometheus metrics, read from the metadata store when scraped.

Every process that runs syncs (the CLI, the web app, the scheduler, any number of workers
on other machines) writes its runs and HTTP calls to the one metadata store; reading the
metrics from there means one ``/metrics`` endpoint sees all of them, and no process keeps
counters that vanish when it restarts. Counters are totals over what the store holds.

Nothing here puts a value from a project file into a label except names (syncs,
destinations) and numbers (HTTP status codes): no URL, header or error text, so no secret
can reach the metrics.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from sqlalchemy import case
from sqlalchemy import false
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import text

from backhaul.config.project import Project
from backhaul.state.store import RunStore
from backhaul.state.tables import http_calls
from backhaul.state.tables import runs

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ROW_KINDS = ("queried", "added", "changed", "removed", "invalid", "succeeded", "rejected")
LATENCY_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
MEMO_S = 5.0  # scrapes within this time share one reading of the store


class StoreCollector(Collector):
    """Collects Backhaul's metrics from the run store (and the queue, when there is one).

    Args:
        project: The loaded project (maps syncs to destinations; schedules).
        store: Its run store.
    """

    def __init__(self, project: Project, store: RunStore) -> None:
        self.project = project
        self.store = store
        self._lock = threading.Lock()
        self._memo: tuple[float, list[Metric]] | None = None

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            if self._memo is None or time.monotonic() - self._memo[0] > MEMO_S:
                self._memo = (time.monotonic(), list(self._read()))
            found = self._memo[1]
        yield from found

    def _destination(self, sync: str) -> str:
        definition = self.project.syncs.get(sync)
        return definition.config.destination if definition is not None else ""

    def _read(self) -> Iterator[Metric]:
        yield from self._runs()
        yield from self._calls()
        yield from self._schedules()
        if self.store.engine.dialect.name == "postgresql":
            yield from self._queue()

    def _runs(self) -> Iterator[Metric]:
        by_status = CounterMetricFamily(
            "backhaul_runs", "Runs by sync and final status.", labels=["sync", "status"]
        )
        rows = CounterMetricFamily(
            "backhaul_rows",
            "Rows by sync and kind: queried (the model returned), added, changed, removed, "
            "invalid, succeeded (acknowledged), rejected (refused by the destination).",
            labels=["sync", "kind"],
        )
        waits = CounterMetricFamily(
            "backhaul_wait_seconds",
            "Seconds runs spent waiting on their destination (rate limits, retries, throttling).",
            labels=["sync"],
        )
        real = runs.c.dry_run == false()
        status_query = (
            select(runs.c.sync, runs.c.status, func.count().label("n"))
            .where(real)
            .group_by(runs.c.sync, runs.c.status)
        )
        sums = [func.coalesce(func.sum(runs.c[k]), 0).label(k) for k in ROW_KINDS]
        rows_query = (
            select(runs.c.sync, *sums, func.coalesce(func.sum(runs.c.wait_s), 0.0).label("wait"))
            .where(real)
            .group_by(runs.c.sync)
        )
        with self.store.engine.connect() as conn:
            for row in conn.execute(status_query):
                by_status.add_metric([row.sync, row.status], float(row.n))
            for row in conn.execute(rows_query):
                for kind in ROW_KINDS:
                    rows.add_metric([row.sync, kind], float(getattr(row, kind)))
                waits.add_metric([row.sync], float(row.wait))
        yield by_status
        yield rows
        yield waits

    def _calls(self) -> Iterator[Metric]:
        total = CounterMetricFamily(
            "backhaul_http_requests",
            "HTTP calls to destinations by destination and status (0: no response).",
            labels=["destination", "status"],
        )
        latency = HistogramMetricFamily(
            "backhaul_http_request_duration_seconds",
            "Latency of HTTP calls to destinations.",
            labels=["destination"],
        )
        waited = CounterMetricFamily(
            "backhaul_http_wait_seconds",
            "Seconds calls were held back before they were sent, by destination.",
            labels=["destination"],
        )
        joined = http_calls.join(runs, http_calls.c.run_id == runs.c.id)
        status = func.coalesce(http_calls.c.status, 0)
        counts_query = (
            select(runs.c.sync, status.label("status"), func.count().label("n"))
            .select_from(joined)
            .group_by(runs.c.sync, status)
        )
        buckets = [
            func.sum(case((http_calls.c.latency_ms <= b * 1000, 1), else_=0)).label(f"b{i}")
            for i, b in enumerate(LATENCY_BUCKETS_S)
        ]
        latency_query = (
            select(
                runs.c.sync,
                func.count().label("n"),
                func.coalesce(func.sum(http_calls.c.latency_ms), 0.0).label("total_ms"),
                func.coalesce(func.sum(http_calls.c.wait_ms), 0.0).label("wait_ms"),
                *buckets,
            )
            .select_from(joined)
            .group_by(runs.c.sync)
        )
        by_status: dict[tuple[str, str], float] = {}
        by_destination: dict[str, list[float]] = {}
        with self.store.engine.connect() as conn:
            for row in conn.execute(counts_query):
                key = (self._destination(row.sync), str(int(row.status)))
                by_status[key] = by_status.get(key, 0.0) + float(row.n)
            for row in conn.execute(latency_query):
                values = [float(row.n), float(row.total_ms), float(row.wait_ms)]
                values += [float(getattr(row, f"b{i}") or 0) for i in range(len(LATENCY_BUCKETS_S))]
                dest = self._destination(row.sync)
                have = by_destination.get(dest)
                by_destination[dest] = (
                    values if have is None else [a + b for a, b in zip(have, values, strict=True)]
                )
        for (dest, code), n in sorted(by_status.items()):
            total.add_metric([dest, code], n)
        for dest, values in sorted(by_destination.items()):
            n, total_ms, wait_ms, *cumulative = values
            points = [(_le(b), c) for b, c in zip(LATENCY_BUCKETS_S, cumulative, strict=True)]
            points.append(("+Inf", n))
            latency.add_metric([dest], points, total_ms / 1000.0)
            waited.add_metric([dest], wait_ms / 1000.0)
        yield total
        yield latency
        yield waited

    def _schedules(self) -> Iterator[Metric]:
        from backhaul.schedule.timetable import Timetable

        next_run = GaugeMetricFamily(
            "backhaul_sync_next_run_timestamp_seconds",
            "Expected next run of each interval or cron schedule (Unix time).",
            labels=["sync"],
        )
        paused = GaugeMetricFamily(
            "backhaul_sync_paused", "1 when the sync's schedule is paused.", labels=["sync"]
        )
        for name, found in Timetable(self.project, self.store).next_runs().items():
            if found.at is not None:
                next_run.add_metric([name], found.at.timestamp())
            if found.kind != "manual":
                paused.add_metric([name], 1.0 if found.paused else 0.0)
        yield next_run
        yield paused

    def _queue(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "backhaul_queue_jobs", "Jobs in the run queue by status.", labels=["status"]
        )
        beats = GaugeMetricFamily(
            "backhaul_worker_last_heartbeat_timestamp_seconds",
            "When each registered worker last recorded that it lives (Unix time).",
            labels=["worker"],
        )
        alive = GaugeMetricFamily(
            "backhaul_workers",
            "Workers whose heartbeat is younger than scheduler.stalled_after_seconds.",
        )
        with self.store.engine.connect() as conn:
            if conn.execute(text("SELECT to_regclass('procrastinate_jobs')")).scalar() is None:
                return
            from backhaul.schedule.queue import QUEUE

            statuses = {"todo": 0.0, "doing": 0.0}
            found = conn.execute(
                text(
                    "SELECT status::text AS status, count(*) AS n FROM procrastinate_jobs "
                    "WHERE queue_name = :queue GROUP BY status"
                ),
                {"queue": QUEUE},
            )
            for row in found:
                statuses[row.status] = float(row.n)
            heartbeats = conn.execute(
                text("SELECT id, last_heartbeat FROM procrastinate_workers ORDER BY id")
            ).all()
        for status, n in sorted(statuses.items()):
            depth.add_metric([status], n)
        limit = self.project.config.scheduler.stalled_after_seconds
        now = datetime.now(UTC)
        living = 0
        for row in heartbeats:
            at = _aware(row.last_heartbeat)
            beats.add_metric([str(row.id)], at.timestamp())
            living += (now - at).total_seconds() <= limit
        alive.add_metric([], float(living))
        yield depth
        yield beats
        yield alive


def _le(bound: float) -> str:
    return repr(float(bound))


def _aware(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value
    return datetime.fromisoformat(str(value))


def registry_for(project: Project, store: RunStore) -> CollectorRegistry:
    """A registry (not the library's global one) holding Backhaul's collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(project, store))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """The metrics in Prometheus' text format."""
    return generate_latest(registry)


__all__ = ["CONTENT_TYPE", "StoreCollector", "exposition", "registry_for"]
