"""Check a sync, then run it: the one entry point for every caller that runs syncs.

``backhaul run``, the web app's Run now, the Python API and a scheduler all call
:func:`run_checked` (or :func:`run_many`). A sync is first checked exactly as
``backhaul validate`` checks it (:func:`backhaul.config.checks.check_syncs`); a sync that
fails its checks is recorded as a ``failed`` run carrying the first error line, and
nothing is read, planned or sent for it. Each sync fails alone: the others still run.

With ``approval: {required: true}``, :func:`backhaul.engine.runner.run_sync` refuses to
start from a commit no admin approved, or from a tree with uncommitted changes
(:func:`backhaul.approval.check`, before anything is opened); that refusal is recorded
the same way.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC
from datetime import datetime
from typing import TYPE_CHECKING

from backhaul.config.checks import check_syncs
from backhaul.config.project import Project
from backhaul.engine.runner import new_run_id
from backhaul.engine.runner import run_sync
from backhaul.errors import ApprovalRequired
from backhaul.errors import BackhaulError
from backhaul.errors import ConfigError
from backhaul.errors import ConfigErrors
from backhaul.observe.events import EventSink
from backhaul.observe.events import RunFinished
from backhaul.observe.events import RunStarted
from backhaul.observe.events import ignore
from backhaul.observe.events import tee
from backhaul.observe.traces import trace_sink
from backhaul.summary import RunStatus
from backhaul.summary import RunSummary

if TYPE_CHECKING:
    from backhaul.state.store import RunStore


def problems_of(exc: ConfigError) -> list[ConfigError]:
    """The single errors inside ``exc`` (a :class:`ConfigErrors` holds several)."""
    return list(exc.errors) if isinstance(exc, ConfigErrors) else [exc]


def run_checked(
    project: Project,
    name: str,
    *,
    store: RunStore,
    full_resync: bool = False,
    force: bool = False,
    events: EventSink = ignore,
    trigger: str = "cli",
    cancel: threading.Event | None = None,
    problems: Sequence[ConfigError] | None = None,
) -> RunSummary:
    """Check ``name`` as ``validate`` does; run it when sound, else record it as failed.

    Args:
        problems: The sync's check results when the caller already has them (checking
            many syncs at once opens each warehouse once); checked here when None.

    Returns:
        The run's summary. A refused run (its checks failed, or its commit is not approved)
        has ``problems`` set, status ``failed`` and exit code 2; its state is untouched.
    """
    if not project.broken_errors("syncs", name):
        project.sync(name)  # an unknown name is the caller's mistake, not a run
    if (traces := trace_sink()) is not None:  # OTEL_TRACES_EXPORTER=otlp
        events = tee(events, traces)
    found = list(problems) if problems is not None else check_syncs(project, [name])[name]
    if not found:
        try:
            return run_sync(
                project,
                name,
                store=store,
                full_resync=full_resync,
                force=force,
                events=events,
                trigger=trigger,
                cancel=cancel,
            )
        except ConfigError as exc:  # found only while opening (a connector's own check)
            found = problems_of(exc)
        except ApprovalRequired as exc:  # the gate at the top of run_sync
            lines = [exc.message]
            return record_failed(
                project,
                name,
                exc.message,
                store=store,
                events=events,
                trigger=trigger,
                problems=lines,
            )
    return record_refused(project, name, found, store=store, events=events, trigger=trigger)


def run_many(
    project: Project,
    names: Sequence[str],
    *,
    store: RunStore,
    full_resync: bool = False,
    force: bool = False,
    events: EventSink = ignore,
    trigger: str = "cli",
) -> list[RunSummary]:
    """Check every sync in ``names`` (each warehouse opened once), then run them in order.

    A sync that fails its checks, or cannot start (a damaged snapshot, say), is recorded
    as failed and the others still run.
    """
    trace_sink()  # a wrong OTEL_TRACES_EXPORTER stops the command before any run
    checked = check_syncs(project, names)
    results: list[RunSummary] = []
    for name in names:
        try:
            summary = run_checked(
                project,
                name,
                store=store,
                full_resync=full_resync,
                force=force,
                events=events,
                trigger=trigger,
                problems=checked[name],
            )
        except BackhaulError as exc:  # its state is broken (say): this sync fails alone
            summary = record_failed(
                project, name, exc.message, store=store, events=events, trigger=trigger
            )
        results.append(summary)
    return results


def record_failed(
    project: Project,
    name: str,
    error: str,
    *,
    store: RunStore,
    events: EventSink = ignore,
    trigger: str = "cli",
    problems: Sequence[str] = (),
) -> RunSummary:
    """Record a run of ``name`` that failed before it started (nothing was sent)."""
    now = datetime.now(UTC)
    summary = RunSummary(
        new_run_id(),
        name,
        RunStatus.FAILED,
        started_at=now,
        finished_at=now,
        error=error,
        problems=list(problems),
    )
    store.start_run(summary.run_id, name, full_resync=False, trigger=trigger, started_at=now)
    store.finish_run(summary)
    events(RunStarted(summary.run_id, name, refused=bool(problems)))
    events(RunFinished(summary))
    return summary


def record_refused(
    project: Project,
    name: str,
    problems: Sequence[ConfigError],
    *,
    store: RunStore,
    events: EventSink = ignore,
    trigger: str = "cli",
) -> RunSummary:
    """Record a run of ``name`` that its configuration errors kept from starting."""
    lines = [p.message for p in problems]
    error = lines[0]
    if len(lines) > 1:
        error += f" (and {len(lines) - 1} more: run `backhaul validate`)"
    return record_failed(
        project, name, error, store=store, events=events, trigger=trigger, problems=lines
    )


def worst_exit_code(summaries: Sequence[RunSummary]) -> int:
    """The exit code of several runs: the worst of theirs (2 > 1 > 3 > 0)."""
    order = {0: 0, 3: 1, 1: 2, 2: 3}
    codes = [s.exit_code for s in summaries]
    return max(codes, key=lambda c: order.get(c, 2), default=0)


__all__ = ["record_failed", "record_refused", "run_checked", "run_many", "worst_exit_code"]
