"""Running scheduled syncs in this process: the embedded default (SQLite store, no queue).

:class:`LocalLauncher` runs each launched sync in a thread, at most ``max_parallel`` at
once and never two runs of one sync (the sync's state file lock also keeps a CLI run in
another process apart: such a run is refused and its slot tried again later).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as futures_wait

from backhaul.config.project import Project
from backhaul.errors import BackhaulError
from backhaul.errors import StateLocked
from backhaul.observe.events import EventSink
from backhaul.observe.events import ignore
from backhaul.state.store import RunStore
from backhaul.summary import RunSummary

log = logging.getLogger("backhaul.schedule")


def run_one(
    project: Project,
    sync: str,
    *,
    store: RunStore,
    events: EventSink = ignore,
    trigger: str = "schedule",
    full_resync: bool = False,
    cancel: threading.Event | None = None,
) -> RunSummary:
    """Check and run one sync the way ``backhaul run`` does (a sync that fails its checks
    is recorded as a failed run): the scheduler, the workers and the web app's run buttons
    all start runs here."""
    from backhaul.engine.launch import run_checked

    return run_checked(
        project,
        sync,
        store=store,
        full_resync=full_resync,
        events=events,
        trigger=trigger,
        cancel=cancel,
    )


class LocalLauncher:
    """Runs launched syncs in threads of this process.

    Args:
        project: The loaded project.
        store: Its run store.
        events: Every run's events (the alert sink, metrics).
        max_parallel: Runs at once.
    """

    def __init__(
        self,
        project: Project,
        store: RunStore,
        *,
        events: EventSink = ignore,
        max_parallel: int = 4,
    ) -> None:
        self.project = project
        self.store = store
        self.events = events
        self._pool = ThreadPoolExecutor(max_parallel, thread_name_prefix="backhaul-run")
        self._lock = threading.Lock()
        self._running: set[str] = set()
        self._cancel = threading.Event()
        self._futures: list[Future[None]] = []
        self.finished: list[RunSummary] = []

    def launch(self, sync: str, *, reason: str, refused: Callable[[], None]) -> bool:
        with self._lock:
            if sync in self._running or self._cancel.is_set():
                return False
            self._running.add(sync)
        future = self._pool.submit(self._run, sync, refused)
        with self._lock:
            self._futures = [f for f in self._futures if not f.done()] + [future]
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every launched run ended; False if some still run after ``timeout``."""
        with self._lock:
            pending = list(self._futures)
        _, not_done = futures_wait(pending, timeout)
        return not not_done

    def running(self) -> set[str]:
        with self._lock:
            return set(self._running)

    def _run(self, sync: str, refused: Callable[[], None]) -> None:
        try:
            summary = run_one(
                self.project, sync, store=self.store, events=self.events, cancel=self._cancel
            )
            with self._lock:
                self.finished.append(summary)
                del self.finished[:-100]
        except StateLocked as exc:
            log.info("scheduler: %s is busy (%s); trying again later", sync, exc.message)
            refused()
        except BackhaulError as exc:
            log.error("scheduler: %s could not run: %s", sync, exc.message)
        except Exception:
            log.exception("scheduler: %s failed unexpectedly", sync)
        finally:
            with self._lock:
                self._running.discard(sync)

    def close(self, *, wait: bool = True) -> None:
        """Stop runs in progress after their current batch (cancelled) and wait for them."""
        self._cancel.set()
        self._pool.shutdown(wait=wait)


__all__ = ["LocalLauncher", "run_one"]
