"""The one way to plan a sync, whichever backend holds its snapshot."""

from __future__ import annotations

from backhaul.audiences.loading import dialect_of
from backhaul.engine.guards import judge
from backhaul.engine.plan.backend import PlanBackend
from backhaul.engine.plan.values import SyncPlan
from backhaul.engine.plan.volatility import volatile_notes
from backhaul.engine.settings import SyncSettings
from backhaul.engine.workspace import Workspace


def compute(
    ws: Workspace,
    backend: PlanBackend,
    settings: SyncSettings,
    *,
    full_resync: bool,
    force: bool,
) -> SyncPlan:
    """Diff the model against the snapshot and judge the result with the guards.

    A dry run (a read-only workspace) and a run call this same function; the run then
    applies the returned plan unless its verdict is guarded.
    """
    found = backend.compute(ws, full_resync=full_resync)
    verdict = judge(
        found,
        full_resync=full_resync,
        removal=settings.removal,
        max_remove_pct=settings.max_remove_pct,
        force=force,
    )
    return SyncPlan(
        counts=found.counts,
        snapshot_rows=found.snapshot_rows,
        full_resync=full_resync,
        fingerprint_drift=found.fingerprint_drift,
        relations=found.relations,
        settings=settings,
        verdict=verdict,
        notes=found.notes + _volatile(ws),
        transferred_rows=found.transferred_rows,
        transferred_bytes=found.transferred_bytes,
    )


def _volatile(ws: Workspace) -> tuple[str, ...]:
    """Notes on the key and mapped columns the model computes anew on every run."""
    project = ws.project
    dialect = dialect_of(project.sources[ws.model.config.source], project.registry)
    return volatile_notes(ws.model.sql, dialect, ws.key_columns + ws.mapper.sent_columns())
