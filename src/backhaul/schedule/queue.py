"""Runs through a queue on the Postgres metadata store, built on procrastinate.

- :class:`QueueLauncher` (the scheduler's side) defers a ``backhaul.run_sync`` job per due
  slot, with a *queueing lock* per sync (at most one waiting job of a sync) and a *lock*
  per sync (procrastinate starts a job only when no other job with its lock is running:
  a sync never runs twice at once, however many workers there are).
- :func:`build_app` (the workers' side) registers the tasks: ``backhaul.run_sync`` runs
  one sync through :func:`backhaul.schedule.local.run_one`; the periodic
  ``backhaul.schedule_tick`` lets the workers run the scheduler's tick themselves
  (procrastinate defers each periodic slot once, whichever worker sees it first).
- :func:`recover_stalled` finds jobs whose worker stopped sending heartbeats (killed,
  machine lost), marks their run interrupted and queues them again.

procrastinate keeps its tables (``procrastinate_*``) in the same database as the run store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url

from backhaul.config.project import Project
from backhaul.errors import ConfigError
from backhaul.state.store import RunStore

if TYPE_CHECKING:
    import procrastinate

log = logging.getLogger("backhaul.schedule")

QUEUE = "backhaul"
RUN_TASK = "backhaul.run_sync"
TICK_TASK = "backhaul.schedule_tick"
_SCHEMA_LOCK = 0x62686C71  # pg_advisory_xact_lock key: one process installs the queue tables


def sync_lock(sync: str) -> str:
    """The procrastinate lock (and queueing lock) of one sync."""
    return f"backhaul-sync:{sync}"


def conninfo(project: Project) -> str:
    """The libpq connection string of the project's Postgres metadata store.

    Raises:
        ConfigError: the store is not Postgres, or procrastinate is not installed.
    """
    url = make_url(project.metadata_url)
    if url.get_backend_name() != "postgresql":
        raise ConfigError(
            "the run queue needs the Postgres metadata store: set state.metadata_url in "
            "backhaul.yml to a postgresql:// URL",
            key="state.metadata_url",
        )
    try:
        import procrastinate  # noqa: F401
    except ModuleNotFoundError:
        raise ConfigError(
            "the run queue needs procrastinate: pip install 'backhaul[workers]'"
        ) from None
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def new_app(project: Project) -> procrastinate.App:
    """A procrastinate app on the project's store, without tasks (enough to defer jobs)."""
    import procrastinate

    return procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo(project)))


def ensure_schema(store: RunStore, app: procrastinate.App) -> None:
    """Install procrastinate's tables once (several processes may start together)."""
    with store.engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
        found = conn.execute(text("SELECT to_regclass('procrastinate_jobs')")).scalar()
        if found is None:
            conn.exec_driver_sql(app.schema_manager.get_schema().replace("%", "%%"))


class QueueLauncher:
    """Queues runs for ``backhaul worker`` processes (the scheduler's launcher).

    Args:
        app: An opened procrastinate app on the project's store.
    """

    def __init__(self, app: procrastinate.App) -> None:
        self.app = app

    @classmethod
    @contextmanager
    def open(cls, project: Project, store: RunStore) -> Iterator[QueueLauncher]:
        """A launcher on the project's queue, closed on exit."""
        app = new_app(project)
        ensure_schema(store, app)
        with app.open():
            yield cls(app)

    def launch(self, sync: str, *, reason: str, refused: Callable[[], None]) -> bool:
        """Queue a run of ``sync``; False when one is already waiting in the queue."""
        from procrastinate.exceptions import AlreadyEnqueued

        try:
            self.defer(sync, reason)
        except AlreadyEnqueued:
            return False
        return True

    def defer(self, sync: str, reason: str = "", trigger: str = "schedule") -> int:
        """Queue one run of ``sync``; returns the job id.

        Raises:
            procrastinate.exceptions.AlreadyEnqueued: a run of it waits in the queue.
        """
        lock = sync_lock(sync)
        job = self.app.configure_task(RUN_TASK, queue=QUEUE, lock=lock, queueing_lock=lock)
        return job.defer(sync=sync, reason=reason, trigger=trigger)


def queue_depth(store: RunStore) -> dict[str, int]:
    """Jobs of the run queue by status (todo, doing, ...)."""
    query = text(
        "SELECT status::text AS status, count(*) AS n FROM procrastinate_jobs "
        "WHERE queue_name = :queue GROUP BY status"
    )
    with store.engine.connect() as conn:
        return {row.status: int(row.n) for row in conn.execute(query, {"queue": QUEUE})}


async def recover_stalled(
    app: procrastinate.App, store: RunStore, *, stalled_after: float
) -> list[str]:
    """Queue again the runs whose worker stopped sending heartbeats; return their syncs.

    Each such run is marked interrupted in the run store first (its worker died holding
    it). The retried run replans from the model, so at most the batches that were in
    flight are sent again.
    """
    from procrastinate.exceptions import UniqueViolation
    from procrastinate.jobs import Status

    found: list[str] = []
    stalled = await app.job_manager.get_stalled_jobs(
        queue=QUEUE, task_name=RUN_TASK, seconds_since_heartbeat=stalled_after
    )
    for job in stalled:
        sync = str(job.task_kwargs.get("sync", ""))
        try:
            await app.job_manager.retry_job(job)
        except UniqueViolation:
            # The sync already has a run waiting in the queue (its next scheduled slot):
            # that run replans from the model and covers this one, so this job ends here.
            await app.job_manager.finish_job(job, status=Status.FAILED, delete_job=False)
        except Exception as exc:  # another worker recovered it first
            log.info("worker: job %s was recovered elsewhere (%s)", job.id, exc)
            continue
        if sync:
            marked = store.mark_abandoned(sync)
            log.warning(
                "worker: the run of %s on a worker that stopped responding was interrupted "
                "(%d run marked) and is queued again",
                sync,
                marked,
            )
            found.append(sync)
    return found


def build_app(
    project: Project,
    run: Callable[[str, str, Any], None],
    tick: Callable[[], None] | None = None,
) -> procrastinate.App:
    """The workers' app: ``run(sync, trigger, context)`` runs one sync; ``tick`` (if given)
    runs the scheduler's tick as a periodic task every ``scheduler.tick_seconds``."""
    import procrastinate

    app = new_app(project)
    settings = project.config.scheduler
    retry = procrastinate.RetryStrategy(
        max_attempts=settings.retries, wait=2, retry_exceptions={Interrupted}
    )

    @app.task(name=RUN_TASK, queue=QUEUE, pass_context=True, retry=retry)
    def run_sync_job(
        context: procrastinate.JobContext, sync: str, reason: str = "", trigger: str = "schedule"
    ) -> None:
        run(sync, trigger, context)

    if tick is not None:
        every = max(1, round(settings.tick_seconds))
        cron = f"* * * * * */{every}" if every < 60 else "* * * * *"

        @app.periodic(cron=cron, periodic_id="tick")
        @app.task(name=TICK_TASK, queue=QUEUE, queueing_lock=TICK_TASK)
        def schedule_tick(timestamp: int) -> None:
            tick()

    del run_sync_job
    return app


class Interrupted(Exception):
    """A run stopped before it finished (the worker is shutting down): queue it again."""


__all__ = [
    "QUEUE",
    "RUN_TASK",
    "TICK_TASK",
    "Interrupted",
    "QueueLauncher",
    "build_app",
    "conninfo",
    "ensure_schema",
    "new_app",
    "queue_depth",
    "recover_stalled",
    "sync_lock",
]
