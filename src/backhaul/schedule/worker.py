"""``backhaul worker``: take runs from the Postgres queue until told to stop.

Each worker process registers with procrastinate (which records its heartbeat), runs
``backhaul.run_sync`` jobs through the same entry point as ``backhaul run``, runs the
scheduler's periodic tick, and every few seconds queues again the runs of workers whose
heartbeat stopped (killed or lost; their run is marked interrupted).

On SIGTERM (or SIGINT) the worker takes no new job, asks its runs to stop after the
batches in flight (what the destination acknowledged stays committed; the rest is handed
back), queues those runs again for another worker, and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from typing import Any

from backhaul.config.project import Project
from backhaul.errors import StateLocked
from backhaul.observe.events import EventSink
from backhaul.observe.events import ignore
from backhaul.schedule.local import run_one
from backhaul.schedule.queue import QUEUE
from backhaul.schedule.queue import Interrupted
from backhaul.schedule.queue import QueueLauncher
from backhaul.schedule.queue import build_app
from backhaul.schedule.queue import ensure_schema
from backhaul.schedule.queue import recover_stalled
from backhaul.state.store import RunStore
from backhaul.summary import RunStatus

log = logging.getLogger("backhaul.schedule")


class Worker:
    """One worker process's loop.

    Args:
        project: The loaded project (its store must be Postgres).
        store: The run store.
        events: Every run's events (the alert sink, metrics).
        name: The worker's name in logs.
        concurrency: Runs of different syncs at once in this process.
        tick: Also run the scheduler's tick as a periodic task (queueing through this
            worker's app).
        alerts: The alert sink the tick judges the clock rules with.
    """

    def __init__(
        self,
        project: Project,
        store: RunStore,
        *,
        events: EventSink = ignore,
        name: str = "worker",
        concurrency: int = 1,
        tick: bool = True,
        alerts: Any = None,
    ) -> None:
        self.project = project
        self.store = store
        self.events = events
        self.name = name
        self.concurrency = concurrency
        self.alerts = alerts
        self.stopping = threading.Event()  # runs stop after their batches in flight
        self._stop: asyncio.Event | None = None
        self.app = build_app(project, self._run, self._tick if tick else None)

    # -- tasks ------------------------------------------------------------------------------

    def _run(self, sync: str, trigger: str, context: Any) -> None:
        if self.stopping.is_set():
            raise Interrupted(f"worker {self.name} is stopping")
        try:
            summary = run_one(
                self.project,
                sync,
                store=self.store,
                events=self.events,
                trigger=trigger,
                cancel=self.stopping,
            )
        except StateLocked as exc:  # a run of it outside the queue (`backhaul run`)
            raise Interrupted(exc.message) from None
        if summary.status is RunStatus.CANCELLED and self.stopping.is_set():
            raise Interrupted(f"worker {self.name} stopped; run {summary.run_id} handed back")

    def _tick(self) -> None:
        from backhaul.schedule.scheduler import Scheduler

        Scheduler(self.project, self.store, QueueLauncher(self.app), alerts=self.alerts).tick()

    # -- the loop ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop taking jobs; runs end after their batches in flight (thread-safe)."""
        self.stopping.set()
        if self._stop is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    async def run(self, *, install_signals: bool = True) -> None:
        """Work until :meth:`stop` (or SIGTERM/SIGINT with ``install_signals``)."""
        settings = self.project.config.scheduler
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._loop.add_signal_handler(sig, self._on_signal, sig)
        ensure_schema(self.store, self.app)
        async with self.app.open_async():
            work = asyncio.create_task(
                self.app.run_worker_async(
                    queues=[QUEUE],
                    name=self.name,
                    concurrency=self.concurrency,
                    install_signal_handlers=False,
                    update_heartbeat_interval=settings.heartbeat_seconds,
                    stalled_worker_timeout=settings.stalled_after_seconds,
                    delete_jobs="successful",
                ),
                name="backhaul-worker",
            )
            recovery = asyncio.create_task(self._recover(), name="backhaul-recovery")
            log.info("worker %s: taking runs from the queue", self.name)
            stop_wait = asyncio.create_task(self._stop.wait())
            await asyncio.wait({work, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            self.stopping.set()
            recovery.cancel()
            stop_wait.cancel()
            if not work.done():
                work.cancel()  # procrastinate waits for the jobs in progress
            for task in (work, recovery):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        log.info("worker %s: stopped", self.name)

    def _on_signal(self, sig: signal.Signals) -> None:
        log.info("worker %s: %s received: finishing the batches in flight", self.name, sig.name)
        self.stop()

    async def _recover(self) -> None:
        settings = self.project.config.scheduler
        while True:
            try:
                await recover_stalled(
                    self.app, self.store, stalled_after=settings.stalled_after_seconds
                )
            except Exception:
                log.exception("worker %s: could not look for stalled runs", self.name)
            await asyncio.sleep(settings.heartbeat_seconds)

    _loop: asyncio.AbstractEventLoop | None = None


__all__ = ["Worker"]
