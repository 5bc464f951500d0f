"""Typed values a run produces: counts, per-row outcomes and the summary."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class RunStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"  # everything planned was acknowledged
    PARTIAL = "partial"  # finished, some rows rejected (exit code 3)
    FAILED = "failed"  # stopped by an error (exit code 1)
    GUARDED = "guarded"  # stopped by a guard before sending anything
    CANCELLED = "cancelled"


class RowOp(StrEnum):
    ADD = "add"
    CHANGE = "change"
    REMOVE = "remove"
    RETRY = "retry"
    INVALID = "invalid"


@dataclass
class Counts:
    queried: int = 0
    added: int = 0
    changed: int = 0
    removed: int = 0
    retried: int = 0
    unchanged: int = 0
    invalid: int = 0
    succeeded: int = 0
    rejected: int = 0

    @property
    def planned(self) -> int:
        return self.added + self.changed + self.removed + self.retried

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class RowOutcome:
    """What happened to one row in one run."""

    key: str
    op: RowOp
    status: str  # "ok" | "rejected" | "invalid" | "skipped"
    error: str | None = None
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
        if self.status is RunStatus.PARTIAL or self.counts.invalid:
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
