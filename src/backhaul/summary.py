"""Typed values a run produces: counts, per-row outcomes and the summary."""

from __future__ import annotations

from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from enum import StrEnum
from typing import Any


class RunStatus(StrEnum):
    """How a run ended; docs/runs.md describes each with its exit code.

    ``succeeded`` (0): every row that needed the destination was delivered, or there was
    nothing to do. ``partial`` (3): finished, and some rows were delivered or already in
    step while others were invalid or rejected. ``failed`` (1, or 2 when the sync's
    configuration kept it from starting): stopped by an error, or nothing valid could be
    delivered (every row it touched was invalid or rejected). ``guarded`` (1): a safety
    guard stopped it before anything was sent. ``cancelled`` (1): stopped on request;
    what was acknowledged stays, the rest stays pending.
    """

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    FAILED = "failed"
    GUARDED = "guarded"
    CANCELLED = "cancelled"


class RowOp(StrEnum):
    ADD = "add"
    CHANGE = "change"
    REMOVE = "remove"
    RETRY = "retry"
    INVALID = "invalid"


class RowStatus(StrEnum):
    """What happened to one row in one run."""

    OK = "ok"  # the destination acknowledged it
    REJECTED = "rejected"  # the destination refused it; it is retried by the next run
    INVALID = "invalid"  # never sent (null or duplicate key, failed cast, template error...)
    SKIPPED = "skipped"  # needed no call (the reason says why); the snapshot moves on


# Why a row needed no call, recorded as the row's reason.
SKIP_INSERT = "insert mode: the record already exists and changes are not sent"
SKIP_REMOVE = "on_remove is `nothing`: the row left the model; nothing is sent and it is forgotten"


@dataclass
class Counts:
    """Rows of one run: what the plan found, then what became of them.

    ``added``/``changed``/``removed``/``retried`` are planned; ``delivered_*`` are the
    rows of each kind the destination acknowledged (``succeeded`` is their sum).
    ``skipped`` rows needed no call (insert-mode changes, removals with
    ``on_remove: nothing``) and are never counted as sent.
    """

    queried: int = 0
    added: int = 0
    changed: int = 0
    removed: int = 0
    retried: int = 0
    unchanged: int = 0
    invalid: int = 0
    succeeded: int = 0
    rejected: int = 0
    skipped: int = 0
    delivered_added: int = 0
    delivered_changed: int = 0
    delivered_removed: int = 0
    delivered_retried: int = 0

    @property
    def planned(self) -> int:
        return self.added + self.changed + self.removed + self.retried

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def final_status(counts: Counts, run_id: str) -> tuple[RunStatus, str | None]:
    """The status of a run that finished without an error, and why when not succeeded."""
    unsent = counts.invalid + counts.rejected
    if not unsent:
        return RunStatus.SUCCEEDED, None
    if counts.succeeded or counts.skipped or counts.unchanged:
        return RunStatus.PARTIAL, None
    parts = []
    if counts.invalid:
        parts.append(f"{counts.invalid:,} invalid")
    if counts.rejected:
        parts.append(f"{counts.rejected:,} rejected by the destination")
    return RunStatus.FAILED, (
        f"nothing valid could be delivered: every row was {' or '.join(parts)}; "
        f"see the reasons with `backhaul run-show {run_id}`"
    )


@dataclass(frozen=True, slots=True)
class RowOutcome:
    """What happened to one row in one run."""

    key: str
    op: RowOp
    status: RowStatus
    error: str | None = None  # why it was rejected, invalid or skipped
    operation: str | None = None  # the destination operation (upsert, delete, ...)
    call_id: str | None = None


@dataclass
class RunSummary:
    """The result of one run of one sync."""

    run_id: str
    sync: str
    status: RunStatus
    counts: Counts = field(default_factory=Counts)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    full_resync: bool = False
    dry_run: bool = False
    samples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    invalid_samples: list[dict[str, Any]] = field(default_factory=list)
    wait_s: float = 0.0  # time at least one call waited (rate limits, retries, throttling)
    # Configuration errors that kept the sync from running (`file:line: key: message`);
    # a refused run is `failed` and nothing was read or sent.
    problems: list[str] = field(default_factory=list)
    # Lines a plan says before anything is sent (a daily quota the run would exceed).
    warnings: list[str] = field(default_factory=list)
    # What a plan says of itself: a model column new on every run, hooks a dry run skips.
    notes: list[str] = field(default_factory=list)

    @property
    def refused(self) -> bool:
        return bool(self.problems)

    @property
    def duration_s(self) -> float:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return 0.0

    @property
    def exit_code(self) -> int:
        if self.problems:
            return 2
        if self.status in (RunStatus.FAILED, RunStatus.GUARDED, RunStatus.CANCELLED):
            return 1
        if self.status is RunStatus.PARTIAL:
            return 3
        return 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "sync": self.sync,
            "status": self.status.value,
            "counts": self.counts.as_dict(),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "duration_s": round(self.duration_s, 3),
            "error": self.error,
            "full_resync": self.full_resync,
            "dry_run": self.dry_run,
            "wait_s": round(self.wait_s, 3),
            "problems": list(self.problems),
        }

    def plan_dict(self) -> dict[str, Any]:
        """A dry run as `backhaul plan --json` and the web app's API give it: the summary,
        the sampled rows of each kind of change, sampled invalid rows, warnings and notes."""
        return self.as_dict() | {
            "samples": self.samples,
            "invalid": self.invalid_samples,
            "warnings": self.warnings,
            "notes": self.notes,
        }
