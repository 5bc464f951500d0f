"""What planning produces, as frozen values: a backend's :class:`Diff`, then the
:class:`SyncPlan` a run applies and a dry run shows."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import replace

from backhaul.engine.guards import Verdict
from backhaul.engine.settings import SyncSettings
from backhaul.summary import Counts


@dataclass(frozen=True, slots=True)
class Relations:
    """Names of the relations a plan left in the workspace connection.

    Attributes:
        plan: The planned keys (k.., n, fp, op, reason); ``work.plan``.
        model: Yields the model rows of at least the planned keys.
        snapshot: Yields the snapshot rows (k.., fp, m.., rid) of at least the removed and
            changed keys.
    """

    model: str
    snapshot: str
    plan: str = "work.plan"


@dataclass(frozen=True, slots=True)
class Diff:
    """What a backend found comparing the model with the snapshot."""

    counts: Counts
    snapshot_rows: int
    fingerprint_drift: bool
    relations: Relations
    notes: tuple[str, ...] = ()
    transferred_rows: int = 0  # rows read out of the warehouse to plan (warehouse planner)
    transferred_bytes: int = 0


@dataclass(frozen=True, slots=True)
class SyncPlan:
    """One sync's plan, before anything is sent.

    Built by :func:`backhaul.engine.plan.compute` for either backend; a dry run shows it,
    a run applies it. ``counts`` is never changed: a run copies it (:meth:`planned_counts`)
    before counting deliveries.
    """

    counts: Counts
    snapshot_rows: int
    full_resync: bool
    fingerprint_drift: bool
    relations: Relations
    settings: SyncSettings
    verdict: Verdict
    notes: tuple[str, ...] = ()
    transferred_rows: int = 0
    transferred_bytes: int = 0

    def planned_counts(self) -> Counts:
        """A copy of the counts, for a run to add its deliveries to."""
        return replace(self.counts)
