"""Planning a sync: what to add, change and remove compared with its snapshot.

:func:`compute` returns a frozen :class:`SyncPlan` for either backend (the local DuckDB
snapshot in :mod:`.local`, or the warehouse's own in :mod:`.warehouse`); :mod:`.outbox`
turns a plan into the rows to send, and :mod:`.first_load` sends a plan that only adds rows
in one statement when the destination can take it.
"""

from __future__ import annotations

from backhaul.engine.guards import Verdict
from backhaul.engine.plan.backend import PlanBackend
from backhaul.engine.plan.backend import backend_for
from backhaul.engine.plan.compute import compute
from backhaul.engine.plan.first_load import FirstLoad
from backhaul.engine.plan.first_load import first_load
from backhaul.engine.plan.local import LocalBackend
from backhaul.engine.plan.local import invalid_rows
from backhaul.engine.plan.outbox import SEQ
from backhaul.engine.plan.outbox import Identity
from backhaul.engine.plan.outbox import build_outbox
from backhaul.engine.plan.outbox import samples
from backhaul.engine.plan.values import Diff
from backhaul.engine.plan.values import Relations
from backhaul.engine.plan.values import SyncPlan

__all__ = [
    "SEQ",
    "Diff",
    "FirstLoad",
    "Identity",
    "LocalBackend",
    "PlanBackend",
    "Relations",
    "SyncPlan",
    "Verdict",
    "backend_for",
    "build_outbox",
    "compute",
    "first_load",
    "invalid_rows",
    "samples",
]
