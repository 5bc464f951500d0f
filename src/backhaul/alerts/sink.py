"""The event sink that turns run events into alerts, without ever failing or slowing a run.

Judging a finished run is a few small queries on the run's thread; every message to a
channel goes through one background thread, in order (a raise always leaves before its
recovery). Close the sink before the process ends so queued messages are sent.

Example::

    from backhaul import api
    from backhaul.alerts import AlertSink

    project = api.load_project(".")
    with api.open_store(project) as store, AlertSink.open(project, store) as alerts:
        api.run(project, "pql_to_crm", events=alerts)
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Awaitable
from collections.abc import Callable
from datetime import datetime
from typing import Any

from backhaul.alerts.channels import RunNotice
from backhaul.alerts.engine import AlertEngine
from backhaul.alerts.engine import run_notice
from backhaul.alerts.rules import NextRun
from backhaul.alerts.store import Transition
from backhaul.clock import Clock
from backhaul.clock import utc_now
from backhaul.closing import ClosesOnExit
from backhaul.config.project import Project
from backhaul.observe.events import RunEvent
from backhaul.observe.events import RunFinished
from backhaul.observe.events import RunStarted
from backhaul.state.store import RunStore

log = logging.getLogger("backhaul.alerts")
Job = Callable[[], Awaitable[Any]]
_STOP = object()


class AlertSink(ClosesOnExit):
    """An :data:`~backhaul.observe.events.EventSink` that judges runs and sends alerts.

    Args:
        engine: The project's rules, state and channels.
    """

    def __init__(self, engine: AlertEngine) -> None:
        self.engine = engine
        self._queue: queue.Queue[object] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        for problem in engine.problems:
            log.warning("alerts: %s", problem.message)

    @classmethod
    def open(
        cls,
        project: Project,
        store: RunStore,
        *,
        next_run: NextRun | None = None,
        clock: Clock = utc_now,
    ) -> AlertSink:
        """A sink for ``project`` whose alert state lives in ``store``."""
        return cls(AlertEngine(project, store, next_run=next_run, clock=clock))

    # -- the event sink -------------------------------------------------------------------

    def __call__(self, event: RunEvent) -> None:
        try:
            if isinstance(event, RunStarted):
                self._run_started(event)
            elif isinstance(event, RunFinished):
                self._run_finished(event)
        except Exception:  # the boundary: an alerting bug must not end the run
            log.exception("alerts: could not handle %s", type(event).__name__)

    def _wants_runs(self, sync: str) -> bool:
        return sync in self.engine.project.syncs and bool(self.engine.rules(sync).channels)

    def _run_started(self, event: RunStarted) -> None:
        engine = self.engine
        if not self._wants_runs(event.sync):
            return
        notice = RunNotice(
            what="run.started",
            project=engine.project.config.name,
            sync=event.sync,
            run_id=event.run_id,
            status="running",
            at=engine.clock(),
            run_url=engine.run_url(event.run_id),
        )
        self._submit(lambda: engine.run_event(notice))

    def _run_finished(self, event: RunFinished) -> None:
        engine = self.engine
        changes = engine.judge_run(event.summary)
        self._send(changes)
        if self._wants_runs(event.summary.sync) and not event.summary.dry_run:
            notice = run_notice(engine.project, event.summary, engine.web_url, engine.redactor)
            self._submit(lambda: engine.run_event(notice))

    def tick(self, now: datetime | None = None) -> list[Transition]:
        """Judge the clock rules (stale, runs past their SLA); the scheduler calls this."""
        changes = self.engine.judge_stale(now) + self.engine.judge_hung(now)
        self._send(changes)
        return changes

    def _send(self, changes: list[Transition]) -> None:
        for change in changes:
            self._submit(lambda c=change: self.engine.deliver(c))  # type: ignore[misc]

    # -- the delivery thread --------------------------------------------------------------

    def _submit(self, job: Job) -> None:
        with self._lock:
            if self._closed:
                log.warning("alerts: a message came after the sink was closed; not sent")
                return
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._work, name="backhaul-alerts", daemon=True
                )
                self._thread.start()
        self._queue.put(job)

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is _STOP:
                    return
                asyncio.run(job())  # type: ignore[operator]
            except Exception:  # one failed delivery must not stop the ones after it
                log.exception("alerts: a delivery failed")
            finally:
                self._queue.task_done()

    def flush(self) -> None:
        """Wait until every queued message was sent (or failed)."""
        self._queue.join()

    def close(self, timeout: float = 60.0) -> None:
        """Send what is queued (waiting at most ``timeout`` seconds) and stop the thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        if thread is None:
            return
        self._queue.put(_STOP)
        thread.join(timeout)
        if thread.is_alive():
            log.warning("alerts: messages still being sent after %.0f s were abandoned", timeout)


__all__ = ["AlertSink"]
