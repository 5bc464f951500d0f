"""Runs started from the web app, and the memoised newest run of every sync.

:class:`RunManager` runs syncs in background threads (one run per sync at a time), follows
their events to report live progress, and cancels them on request.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from backhaul.config.project import Project
from backhaul.errors import RunConflict
from backhaul.observe.events import BatchDone
from backhaul.observe.events import EventSink
from backhaul.observe.events import Notice
from backhaul.observe.events import PhaseStarted
from backhaul.observe.events import Planned
from backhaul.observe.events import RunEvent
from backhaul.observe.events import RunFinished
from backhaul.observe.events import RunStarted
from backhaul.observe.events import Waiting
from backhaul.observe.events import ignore
from backhaul.observe.events import tee
from backhaul.observe.waits import wait_line
from backhaul.schedule.timetable import Timetable
from backhaul.state.reader import RunReader
from backhaul.state.reader import RunRecord
from backhaul.state.store import RunStore
from backhaul.web.auth import User
from backhaul.web.cache import AnswerCache
from backhaul.web.users import UserStore

START_TIMEOUT = 120.0  # seconds to wait for a run to open its destination and workspace
CLOSING_TIMEOUT = 30.0  # seconds a new run waits for a finished run of its sync to close
KEEP_FINISHED = 200  # finished runs whose last progress stays in memory

log = logging.getLogger(__name__)


@dataclass
class _Active:
    sync: str
    user: str
    cancel: threading.Event = field(default_factory=threading.Event)
    started: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)  # RunFinished seen
    run_id: str | None = None
    error: BaseException | None = None
    progress: dict[str, Any] = field(default_factory=dict)
    thread: threading.Thread | None = None
    again: User | None = None  # run the sync once more when this run ends (coalesced)


class RunManager:
    """Triggers, follows and cancels runs of one project.

    Args:
        project: The loaded project.
        store: The shared run store.
        users: Where trigger and cancel are recorded in the audit log.
        cache: The app's memoised answers, dropped when a run starts or ends.
        events: Also given every event of every run (the app's alert sink).
    """

    def __init__(
        self,
        project: Project,
        store: RunStore,
        users: UserStore,
        cache: AnswerCache,
        events: EventSink = ignore,
    ) -> None:
        self.project = project
        self.store = store
        self.users = users
        self.cache = cache
        self.events = events
        self._lock = threading.Lock()
        self._by_sync: dict[str, _Active] = {}
        self._by_run: dict[str, _Active] = {}
        self._finished: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._closing = False
        self.timetable = Timetable(project, store)

    def trigger(self, sync: str, *, full_resync: bool, user: User) -> str:
        """Start a run of ``sync`` in a background thread and return its run id.

        Returns once the run is recorded (its destination and workspace are open).

        Raises:
            ConfigError: unknown sync, or it cannot start (a missing variable, ...).
            RunConflict: the sync already has a run in progress.
        """
        self.project.sync(sync)
        self._await_closing(sync)
        active = _Active(sync, user.username)
        with self._lock:
            if sync in self._by_sync:
                raise RunConflict(f"sync `{sync}` is already running; wait or cancel it")
            self._by_sync[sync] = active
        thread = threading.Thread(
            target=self._run,
            args=(active, full_resync),
            name=f"backhaul-web-run-{sync}",
            daemon=True,
        )
        active.thread = thread
        thread.start()
        active.started.wait(START_TIMEOUT)
        if active.run_id is None:
            if active.error is not None:
                raise active.error
            raise RunConflict(f"sync `{sync}` did not start within {START_TIMEOUT:.0f} s")
        self.users.audit(
            user.username,
            "run_trigger",
            sync,
            {"run_id": active.run_id, "full_resync": full_resync},
        )
        return active.run_id

    def _await_closing(self, sync: str) -> None:
        """Wait for a run of ``sync`` that has finished and is only closing up.

        Its progress already says it ended (the answer a client polls), while its thread
        still closes the workspace and releases the sync: a new run asked for right then is
        not a conflict, so it waits for that, at most :data:`CLOSING_TIMEOUT` seconds.
        """
        with self._lock:
            current = self._by_sync.get(sync)
        if current is not None and current.finished.is_set() and current.thread is not None:
            current.thread.join(CLOSING_TIMEOUT)

    def trigger_coalesced(self, sync: str, *, user: User) -> tuple[str, bool]:
        """Start a run of ``sync``, or coalesce with the run in progress.

        When the sync is running, one more run is queued to start when it ends (however
        many requests arrive meanwhile), so changes made after the current run read its
        model are still sent. Returns the run id (of the new run, or of the one in
        progress) and whether the request was coalesced.

        Raises:
            ConfigError: unknown sync, or it cannot start.
        """
        while True:
            with self._lock:
                active = self._by_sync.get(sync)
                if active is not None:
                    active.again = user
            if active is None:
                try:
                    return self.trigger(sync, full_resync=False, user=user), False
                except RunConflict:
                    continue  # another request started it just now: coalesce with that run
            active.started.wait(START_TIMEOUT)
            if active.run_id is not None:
                return active.run_id, True
            raise active.error or RunConflict(
                f"sync `{sync}` did not start within {START_TIMEOUT:.0f} s"
            )

    def launch(self, sync: str, *, reason: str, refused: Callable[[], None]) -> bool:
        """Start a scheduled run of ``sync`` (the scheduler's launcher); False when it is busy.

        ``refused`` is called when the run turns out not to start: another process holds
        the sync.
        """
        self.project.sync(sync)
        active = _Active(sync, "scheduler")
        with self._lock:
            if sync in self._by_sync or self._closing:
                return False
            self._by_sync[sync] = active
        thread = threading.Thread(
            target=self._run,
            args=(active, False, "schedule", refused),
            name=f"backhaul-scheduled-run-{sync}",
            daemon=True,
        )
        active.thread = thread
        thread.start()
        return True

    def _run(
        self,
        active: _Active,
        full_resync: bool,
        trigger: str = "web",
        refused: Callable[[], None] | None = None,
    ) -> None:
        from backhaul.errors import StateLocked
        from backhaul.schedule.local import run_one

        try:
            run_one(
                self.project,
                active.sync,
                store=self.store,
                full_resync=full_resync,
                events=tee(lambda e: self._on_event(active, e), self.events),
                trigger=trigger,
                cancel=active.cancel,
            )
        except StateLocked as exc:
            active.error = exc
            if refused is not None:
                refused()
        except BaseException as exc:  # reported to trigger(), or recorded by the store
            active.error = exc
        finally:
            with self._lock:
                self._by_sync.pop(active.sync, None)
                if active.run_id is not None:
                    self._by_run.pop(active.run_id, None)
                    self._finished[active.run_id] = dict(active.progress)
                    while len(self._finished) > KEEP_FINISHED:
                        self._finished.popitem(last=False)
            # The sync is no longer running: answers that said so are stale now.
            self.cache.invalidate()
            active.started.set()
            with self._lock:
                again, closing = active.again, self._closing
            if again is not None and not closing and active.run_id is not None:
                threading.Thread(
                    target=self._follow_up,
                    args=(active.sync, again),
                    name=f"backhaul-web-again-{active.sync}",
                    daemon=True,
                ).start()

    def _follow_up(self, sync: str, user: User) -> None:
        """The run queued by :meth:`trigger_coalesced` (its failures are in the store)."""
        try:
            self.trigger_coalesced(sync, user=user)
        except Exception:  # recorded by the run store, or the sync was removed
            log.exception("the queued run of sync %s did not start", sync)

    def _on_event(self, active: _Active, event: RunEvent) -> None:
        if isinstance(event, RunStarted | RunFinished):
            self.cache.invalidate()
        p = active.progress
        if isinstance(event, RunStarted):
            p.update(
                run_id=event.run_id,
                sync=event.sync,
                status="running",
                phase="start",
                total=None,
                sent=0,
                succeeded=0,
                rejected=0,
                notices=[],
            )
            with self._lock:
                active.run_id = event.run_id
                self._by_run[event.run_id] = active
            active.started.set()
        elif isinstance(event, PhaseStarted):
            p["phase"] = event.phase
        elif isinstance(event, Planned):
            p.update(total=event.to_send, counts=event.counts.as_dict())
        elif isinstance(event, BatchDone):
            p.update(
                sent=event.sent,
                succeeded=event.succeeded,
                rejected=event.rejected,
                total=event.total,
            )
        elif isinstance(event, Notice):
            p.setdefault("notices", []).append(event.message)
        elif isinstance(event, Waiting):
            p["waiting"] = wait_line(event)
            p["wait_s"] = event.waited_s
        elif isinstance(event, RunFinished):
            s = event.summary
            p.update(
                status=s.status.value,
                phase="done",
                error=s.error,
                counts=s.counts.as_dict(),
                succeeded=s.counts.succeeded,
                rejected=s.counts.rejected,
            )
            active.finished.set()

    def cancel(self, run_id: str, *, user: User | None = None) -> bool:
        """Ask a run in progress to stop after its current batches; False if not running."""
        with self._lock:
            active = self._by_run.get(run_id)
        if active is None:
            return False
        active.cancel.set()
        if user is not None:
            self.users.audit(user.username, "run_cancel", active.sync, {"run_id": run_id})
        return True

    def progress(self, run_id: str) -> dict[str, Any] | None:
        """Live progress of a run started here (kept a while after it ends), else None."""
        with self._lock:
            active = self._by_run.get(run_id)
            if active is not None:
                return dict(active.progress)
            done = self._finished.get(run_id)
            return dict(done) if done is not None else None

    def active(self) -> list[dict[str, Any]]:
        """Progress of every run in progress."""
        with self._lock:
            return [dict(a.progress) for a in self._by_run.values()]

    def running_syncs(self) -> set[str]:
        with self._lock:
            return set(self._by_sync)

    def shutdown(self, timeout: float = 30.0) -> None:
        """Cancel every run in progress and wait for their threads."""
        with self._lock:
            self._closing = True
            actives = list(self._by_sync.values())
        for a in actives:
            a.cancel.set()
        for a in actives:
            if a.thread is not None:
                a.thread.join(timeout)


# -- queries ----------------------------------------------------------------------------


# Under load the overview asks for the same 200 rows many times a second; runs started by
# this server invalidate the memo at once, runs from other processes show within this time.
LATEST_TTL = 1.0


def latest_runs(reader: RunReader, cache: AnswerCache) -> dict[str, RunRecord]:
    """The newest run of every sync, memoised in ``cache`` for up to ``LATEST_TTL`` seconds.

    The RunManager clears the memo on run events.
    """
    found: dict[str, RunRecord] = cache.memo("latest_runs", LATEST_TTL).get(reader.latest_runs)
    return dict(found)
