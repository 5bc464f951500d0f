"""Where a sync's snapshot lives and where its diff runs.

The runner talks to a :class:`PlanBackend`; it never touches snapshot tables itself.
:class:`~backhaul.engine.plan.local.LocalBackend` keeps the snapshot in the sync's local
DuckDB file (the default); :class:`~backhaul.engine.plan.warehouse.WarehouseBackend` plans
inside the warehouse (``planner: warehouse``). Both implement the same four methods.

Contract for :meth:`PlanBackend.compute`: afterwards the workspace connection holds the
relations the returned :class:`Diff` names: ``work.plan`` (k.., n, fp, op, reason), a
relation that yields the model rows of at least the planned keys, and one with the
snapshot rows (k.., fp, m.., rid) of at least the removed keys, so that
:func:`~backhaul.engine.plan.outbox.build_outbox` can build what to send. A backend reports
only through the :class:`Diff`; it changes nothing on the workspace object.
"""

from __future__ import annotations

from typing import Protocol

import pyarrow as pa

from backhaul.engine.plan.local import LocalBackend
from backhaul.engine.plan.values import Diff
from backhaul.engine.workspace import Workspace
from backhaul.errors import ConfigError


class PlanBackend(Protocol):
    def compute(self, ws: Workspace, *, full_resync: bool) -> Diff:
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


def backend_for(ws: Workspace) -> PlanBackend:
    """The backend a sync is configured for (local unless told otherwise)."""
    if ws.config.planner == "warehouse":
        from backhaul.engine.plan import warehouse

        if warehouse.supports(ws):
            return warehouse.open_backend(ws)
        raise ConfigError(
            f"`planner: warehouse` is not supported for {ws.source.config.type} sources "
            f"(supported: {', '.join(warehouse.SUPPORTED)} files and servers); "
            "use `planner: local`",
            file=str(ws.sync.positions.file),
            line=ws.sync.positions.line("planner"),
            key="planner",
        )
    return LocalBackend()
