"""The Python API: load a project, plan and run syncs, read their history.

Example::

    from backhaul import api

    project = api.load_project("my-project")
    print(api.plan(project, "pql_to_crm").counts)
    summary = api.run(project, "pql_to_crm")
    assert summary.status.value == "succeeded"
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from backhaul.config.project import Project
from backhaul.observe.events import EventSink
from backhaul.observe.events import ignore
from backhaul.summary import RunStatus
from backhaul.summary import RunSummary

if TYPE_CHECKING:
    from backhaul.state.store import RunRecord
    from backhaul.state.store import RunStore


def load_project(
    path: str | Path = ".", *, isolate: bool = False, target: str | None = None
) -> Project:
    """Load and validate the project files in ``path`` (raises ConfigError on problems).

    With ``isolate``, invalid source, model, destination and sync files are set aside in
    ``Project.broken`` instead of raising, so the syncs that do not use them can run.
    ``target`` chooses the environment of ``targets:`` (default: ``BACKHAUL_TARGET``, else
    ``default_target``).
    """
    from backhaul.config.loader import load_project as _load

    return _load(path, isolate=isolate, target=target)


@contextmanager
def open_store(project: Project) -> Iterator[RunStore]:
    """The project's run store (created and migrated on first use)."""
    from backhaul.state.store import RunStore

    store = RunStore.open(project.metadata_url, project.row_logs)
    try:
        yield store
    finally:
        store.close()


def plan(project: Project, sync: str, *, full_resync: bool = False, sample: int = 5) -> RunSummary:
    """What a run would do, with samples; nothing is sent and no state changes.

    Raises:
        ConfigError: the sync fails the checks ``validate`` makes (all of them listed).
    """
    from backhaul.config.checks import check_syncs
    from backhaul.engine.runner import plan_sync
    from backhaul.errors import ConfigErrors

    if not project.broken_errors("syncs", sync):
        project.sync(sync)
    problems = check_syncs(project, [sync])[sync]
    if problems:
        raise ConfigErrors(problems)
    return plan_sync(project, sync, full_resync=full_resync, sample=sample)


def run(
    project: Project,
    sync: str,
    *,
    full_resync: bool = False,
    force: bool = False,
    events: EventSink = ignore,
    trigger: str = "api",
    cancel: threading.Event | None = None,
    alerts: bool = False,
) -> RunSummary:
    """Check one sync as ``validate`` does, run it, and return its summary.

    A sync that fails its checks is not run: it is recorded as a failed run whose summary
    lists the errors in ``problems`` (exit code 2). ``cancel`` stops a run between batches.

    With ``alerts`` the run is judged by the project's alert rules and notifications are
    sent (and waited for) before this returns; see docs/alerts.md.
    """
    from backhaul.engine.launch import run_checked

    with open_store(project) as store, ExitStack() as stack:
        if alerts:
            from backhaul.alerts import AlertSink
            from backhaul.observe.events import tee
            from backhaul.schedule.timetable import Timetable

            sink = AlertSink.open(project, store, next_run=Timetable(project, store).expected)
            events = tee(events, stack.enter_context(sink))
        return run_checked(
            project,
            sync,
            store=store,
            full_resync=full_resync,
            force=force,
            events=events,
            trigger=trigger,
            cancel=cancel,
        )


def pause(project: Project, sync: str, *, store: RunStore, by: str | None = None) -> bool:
    """Pause ``sync``'s schedule (False when it was paused already)."""
    from backhaul.schedule.state import ScheduleStore

    project.sync(sync)
    return ScheduleStore(store).pause(sync, by)


def resume(project: Project, sync: str, *, store: RunStore) -> bool:
    """Resume ``sync``'s schedule, counting its next run from now (False if not paused)."""
    from backhaul.schedule.state import ScheduleStore

    project.sync(sync)
    return ScheduleStore(store).resume(sync)


def reset(project: Project, sync: str) -> bool:
    """Forget a sync's snapshot and pending rejections; the next run sends every row."""
    from backhaul.state import snapshots

    project.sync(sync)
    return snapshots.reset(project.state_dir, sync)


@dataclass(frozen=True)
class SyncStatus:
    name: str
    model: str
    destination: str
    mode: str
    enabled: bool
    last_run: RunRecord | None
    snapshot_rows: int  # snapshots.BUSY or snapshots.DAMAGED when it cannot be counted
    pending_rejections: int
    config_error: str | None = None  # the sync's file (or one it uses) is invalid


def status(project: Project) -> list[SyncStatus]:
    """Each sync with its last run and what is in its snapshot."""
    from backhaul.state import snapshots

    out = []
    with open_store(project) as store:
        for name, sync in sorted(project.syncs.items()):
            rows, pending = snapshots.read_counts(project.state_dir, name)
            out.append(
                SyncStatus(
                    name,
                    sync.config.model,
                    sync.config.destination,
                    sync.config.mode.value,
                    sync.config.enabled,
                    store.last_run(name),
                    rows,
                    pending,
                )
            )
        for name in project.broken_syncs:  # loaded with isolate=True
            rows, pending = snapshots.read_counts(project.state_dir, name)
            error = project.broken_errors("syncs", name)[0]
            last = store.last_run(name)
            out.append(SyncStatus(name, "?", "?", "?", True, last, rows, pending, str(error)))
    return sorted(out, key=lambda s: s.name)


__all__ = [
    "Project",
    "RunStatus",
    "RunSummary",
    "SyncStatus",
    "load_project",
    "open_store",
    "pause",
    "plan",
    "reset",
    "resume",
    "run",
    "status",
]
