"""Where a sync's snapshot lives and where its diff runs.

The runner talks to a :class:`PlanBackend`; it never touches snapshot tables itself.
:class:`LocalBackend` keeps the snapshot in the sync's local DuckDB file (the default).
A backend that plans inside the warehouse implements the same five methods.

Contract for :meth:`PlanBackend.compute`: afterwards the workspace connection holds
``work.plan`` (k.., n, fp, op, reason), ``ws.model_sql`` names a relation that yields the
model rows of at least the planned keys, and ``ws.snapshot_rel`` a relation with the
snapshot rows (k.., fp, m..) of at least the removed keys, so that
:func:`backhaul.engine.plan.local.build_outbox` can build what to send.
"""

from __future__ import annotations

from typing import Protocol

import pyarrow as pa

from backhaul.engine.failures import Phase
from backhaul.engine.plan import local as planner
from backhaul.engine.plan.local import Plan
from backhaul.engine.workspace import Workspace
from backhaul.errors import ConfigError
from backhaul.state import snapshots


class PlanBackend(Protocol):
    def compute(self, ws: Workspace, *, full_resync: bool) -> Plan:
        """Classify every model row against the snapshot (see the module docs)."""
        ...

    def drop_resolved_rejections(self, ws: Workspace) -> None:
        """Forget pending rejections of keys the plan no longer sends."""
        ...

    def commit_batch(
        self, ws: Workspace, run_id: str, acked: pa.Table | None, rejected: pa.Table | None
    ) -> None:
        """Checkpoint one acknowledged batch (durable before it returns)."""
        ...

    def finish(self, ws: Workspace, *, adopt_fingerprint: bool) -> None:
        """End of a run: fold checkpoints into the snapshot; adopt a new fingerprint canary."""
        ...


class LocalBackend:
    """The snapshot in ``.backhaul/syncs/<sync>.duckdb``; the diff runs in local DuckDB."""

    def compute(self, ws: Workspace, *, full_resync: bool) -> Plan:
        with ws.guard(Phase.PLAN):
            return planner.compute_plan(ws, full_resync=full_resync)

    def drop_resolved_rejections(self, ws: Workspace) -> None:
        with ws.guard(Phase.PLAN):
            snapshots.drop_resolved_rejections(ws.con, ws.layout)

    def commit_batch(
        self, ws: Workspace, run_id: str, acked: pa.Table | None, rejected: pa.Table | None
    ) -> None:
        with ws.guard(Phase.CHECKPOINT):
            snapshots.commit_batch(ws.con, ws.layout, run_id, acked, rejected)

    def finish(self, ws: Workspace, *, adopt_fingerprint: bool) -> None:
        with ws.guard(Phase.FINISH):
            snapshots.fold_acks(ws.con, ws.layout)
            if adopt_fingerprint:
                snapshots.set_meta(ws.con, "fp_canary", snapshots.canary(ws.con))


def backend_for(ws: Workspace) -> PlanBackend:
    """The backend a sync is configured for (local unless told otherwise)."""
    if ws.config.planner == "warehouse":
        from backhaul.engine.plan import warehouse as warehouse_backend

        if warehouse_backend.supports(ws):
            return warehouse_backend.open_backend(ws)
        raise ConfigError(
            f"`planner: warehouse` is not supported for {ws.source.config.type} sources "
            f"(supported: {', '.join(warehouse_backend.SUPPORTED)} files and servers); "
            "use `planner: local`",
            file=str(ws.sync.positions.file),
            line=ws.sync.positions.line("planner"),
            key="planner",
        )
    return LocalBackend()
