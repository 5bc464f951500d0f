"""`backhaul scheduler`, `backhaul schedules`, `backhaul pause` and `backhaul resume`."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Annotated
from typing import Any

import typer
from rich.table import Table

from backhaul.cli.common import JsonOption
from backhaul.cli.common import LogFormatOption
from backhaul.cli.common import ProjectDir
from backhaul.cli.common import _console
from backhaul.cli.common import _load
from backhaul.cli.common import handles_errors
from backhaul.cli.common import log_format
from backhaul.cli.common import print_json
from backhaul.errors import ConfigErrors

if TYPE_CHECKING:
    from backhaul.config.project import Project
    from backhaul.schedule.scheduler import Launcher
    from backhaul.schedule.scheduler import Scheduler
    from backhaul.state.store import RunStore


def check_schedules(project: Project) -> None:
    """Refuse to schedule a project whose schedules are wrong (unknown parents, cycles)."""
    from backhaul.config.checks import schedule_errors

    problems = schedule_errors(project)
    if problems:
        raise ConfigErrors(problems)


@contextmanager
def open_scheduler(
    project: Project, store: RunStore, *, launcher: Launcher | None = None, events: Any = None
) -> Iterator[Scheduler]:
    """A scheduler for ``project`` with its alert sink and launcher; closes both on exit.

    Without ``launcher`` the project's ``scheduler:`` settings choose one: the Postgres
    queue (``queue: true``) or runs in this process.
    """
    from backhaul.alerts import AlertSink
    from backhaul.observe.events import tee
    from backhaul.schedule.local import LocalLauncher
    from backhaul.schedule.scheduler import Scheduler
    from backhaul.schedule.timetable import Timetable

    check_schedules(project)
    with ExitStack() as stack:
        timetable = Timetable(project, store)
        alerts = stack.enter_context(AlertSink.open(project, store, next_run=timetable.expected))
        if launcher is None:
            settings = project.config.scheduler
            if settings.queue:
                from backhaul.schedule.queue import QueueLauncher

                launcher = stack.enter_context(QueueLauncher.open(project, store))
            else:
                sink = tee(alerts, events) if events is not None else alerts
                local = LocalLauncher(
                    project, store, events=sink, max_parallel=settings.max_parallel
                )
                stack.callback(local.close)
                launcher = local
        record_broken(project, store, events=alerts)
        yield Scheduler(project, store, launcher, alerts=alerts)


def record_broken(project: Project, store: RunStore, *, events: Any) -> None:
    """Record a failed run for each sync whose file is invalid, once as the scheduler
    starts: nothing can schedule it, and a failed run is where people look (and alert)."""
    from backhaul.engine.launch import record_refused

    for name in project.broken_syncs:
        problems = project.broken_errors("syncs", name)
        summary = record_refused(
            project, name, problems, store=store, events=events, trigger="schedule"
        )
        logging.getLogger("backhaul.schedule").error("%s is not scheduled: %s", name, summary.error)


def stop_on_signals(stop: threading.Event) -> None:
    """Set ``stop`` on SIGTERM and SIGINT (in the main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, frame: Any) -> None:
        logging.getLogger("backhaul.schedule").info(
            "received %s: stopping", signal.Signals(signum).name
        )
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


@handles_errors
def scheduler_command(
    project_dir: ProjectDir = Path("."),
    once: Annotated[
        bool, typer.Option("--once", help="Start what is due now, wait for it, and exit.")
    ] = False,
    log_fmt: LogFormatOption = "text",
) -> None:
    """Run the scheduler alone: start scheduled syncs when they are due (Ctrl-C stops)."""
    from backhaul.api import open_store
    from backhaul.observe.logs import LogSink
    from backhaul.observe.logs import setup_logging

    setup_logging(log_format(log_fmt))
    project = _load(project_dir, isolate=True)  # a broken sync fails alone
    with (
        open_store(project) as store,
        open_scheduler(project, store, events=LogSink()) as scheduler,
    ):
        if once:
            for launch in scheduler.tick():
                _console(stderr=True).print(f"started {launch.sync} ({launch.reason})")
            wait = getattr(scheduler.launcher, "wait", None)
            if wait is not None:
                wait()
            return
        stop = threading.Event()
        stop_on_signals(stop)
        mode = "queue for `backhaul worker`" if project.config.scheduler.queue else "in-process"
        _console(stderr=True).print(
            f"scheduler running ({mode}, {len(project.syncs)} syncs); Ctrl-C stops"
        )
        scheduler.run_forever(stop)


@handles_errors
def worker_command(
    project_dir: ProjectDir = Path("."),
    name: Annotated[str | None, typer.Option(help="Name in logs (default: host:pid).")] = None,
    concurrency: Annotated[
        int, typer.Option(min=1, max=64, help="Runs of different syncs at once.")
    ] = 1,
    tick: Annotated[
        bool,
        typer.Option(
            "--tick/--no-tick",
            help="Also run the scheduler's tick as a periodic task (default on).",
        ),
    ] = True,
    log_fmt: LogFormatOption = "text",
) -> None:
    """Take runs from the Postgres queue (`scheduler.queue: true`) until SIGTERM."""
    import asyncio
    import os
    import socket

    from backhaul.alerts import AlertSink
    from backhaul.api import open_store
    from backhaul.observe.events import tee
    from backhaul.observe.logs import LogSink
    from backhaul.observe.logs import setup_logging
    from backhaul.observe.traces import trace_sink
    from backhaul.schedule.queue import conninfo
    from backhaul.schedule.timetable import Timetable
    from backhaul.schedule.worker import Worker

    setup_logging(log_format(log_fmt))
    project = _load(project_dir, isolate=True)  # a queued run of a broken sync fails alone
    conninfo(project)  # a clear error before anything starts when the store is not Postgres
    trace_sink()  # and when OTEL_TRACES_EXPORTER names an exporter that is not shipped
    check_schedules(project)
    label = name or f"{socket.gethostname()}:{os.getpid()}"
    with (
        open_store(project) as store,
        AlertSink.open(project, store, next_run=Timetable(project, store).expected) as alerts,
    ):
        worker = Worker(
            project,
            store,
            events=tee(alerts, LogSink()),
            name=label,
            concurrency=concurrency,
            tick=tick,
            alerts=alerts,
        )
        _console(stderr=True).print(f"worker {label} started; SIGTERM stops it gracefully")
        asyncio.run(worker.run())


@handles_errors
def schedules_command(project_dir: ProjectDir = Path("."), as_json: JsonOption = False) -> None:
    """Every sync with its schedule and next run."""
    from backhaul.api import open_store
    from backhaul.schedule.timetable import Timetable

    project = _load(project_dir)
    table = Table("sync", "schedule", "state", "next run")
    with open_store(project) as store:
        found = Timetable(project, store).next_runs()
    if as_json:
        print_json(
            [
                {
                    "sync": name,
                    "schedule": nxt.schedule,
                    "kind": nxt.kind,
                    "paused": nxt.paused,
                    "next_run": nxt.at,
                    "label": nxt.label(),
                }
                for name, nxt in found.items()
            ]
        )
        return
    for name, nxt in found.items():
        table.add_row(name, nxt.schedule, "paused" if nxt.paused else "", nxt.label())
    _console().print(table)


@handles_errors
def pause_command(
    sync: Annotated[str, typer.Argument(help="The sync to pause.")],
    project_dir: ProjectDir = Path("."),
) -> None:
    """Pause a sync's schedule: the scheduler starts no run of it until it is resumed."""
    _set_paused(sync, project_dir, paused=True)


@handles_errors
def resume_command(
    sync: Annotated[str, typer.Argument(help="The sync to resume.")],
    project_dir: ProjectDir = Path("."),
) -> None:
    """Resume a paused sync; its next run is counted from now."""
    _set_paused(sync, project_dir, paused=False)


def _set_paused(sync: str, project_dir: Path, *, paused: bool) -> None:
    from backhaul.api import open_store
    from backhaul.api import pause
    from backhaul.api import resume

    project = _load(project_dir)
    with open_store(project) as store:
        if paused:
            said = "paused" if pause(project, sync, store=store, by="cli") else "was already paused"
        else:
            said = "resumed" if resume(project, sync, store=store) else "was not paused"
    _console().print(f"{sync}: {said}")


__all__ = [
    "open_scheduler",
    "pause_command",
    "resume_command",
    "scheduler_command",
    "schedules_command",
    "stop_on_signals",
    "worker_command",
]
