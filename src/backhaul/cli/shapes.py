"""The JSON the CLI prints with ``--json``: one pydantic model per shape.

The models are the contract: ``backhaul schema --outputs`` writes their JSON Schemas, the
tests check every command's output against them, and a change to a shape is a change
here. Objects may gain keys in a later version; existing keys keep their meaning.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from typing import Literal

from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field
from pydantic import TypeAdapter


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Counts(_Shape):
    """A run's row counts (docs/runs.md#counts)."""

    queried: int
    added: int
    changed: int
    removed: int
    retried: int
    unchanged: int
    invalid: int
    rejected: int
    succeeded: int
    skipped: int
    delivered_added: int
    delivered_changed: int
    delivered_removed: int
    delivered_retried: int


class StoredRun(_Shape):
    """One run from the run store (`runs --json`, `status --json`'s `last_run`)."""

    run_id: str
    sync: str
    status: Literal["running", "succeeded", "partial", "failed", "guarded", "cancelled"]
    trigger: str
    started_at: datetime
    finished_at: datetime | None
    duration_s: float
    full_resync: bool
    git_commit: str | None
    git_dirty: bool | None  # the project's files differed from git_commit
    wait_s: float
    counts: Counts
    error: str | None


class RunResult(_Shape):
    """One run as `run --json` prints it (and `plan --json`, a dry run, with samples)."""

    run_id: str
    sync: str
    status: Literal["running", "succeeded", "partial", "failed", "guarded", "cancelled"]
    counts: Counts
    started_at: datetime | None
    finished_at: datetime | None
    duration_s: float
    error: str | None
    full_resync: bool
    dry_run: bool
    wait_s: float
    problems: list[str]


class PlanResult(RunResult):
    """`plan --json`: a dry run with samples of each kind of change."""

    samples: dict[str, list[dict[str, Any]]]
    invalid: list[dict[str, Any]]
    warnings: list[str]
    notes: list[str]


class SyncStatusOut(_Shape):
    """One sync in `status --json`."""

    sync: str
    model: str | None
    destination: str | None
    mode: str | None
    enabled: bool
    snapshot: Literal["ok", "busy", "damaged"]
    snapshot_rows: int | None
    pending_rejections: int | None
    config_error: str | None
    last_run: StoredRun | None


class ModelOut(_Shape):
    """One model in `models --json`."""

    model: str
    kind: Literal["model", "audience"]
    audience_schema: str | None
    source: str
    primary_key: list[str]
    used_by: list[str]


class ScheduleOut(_Shape):
    """One sync in `schedules --json`."""

    sync: str
    schedule: str
    kind: str
    paused: bool
    next_run: datetime | None
    label: str


class Problem(_Shape):
    """One configuration problem."""

    file: str | None
    line: int | None = Field(None, ge=1)
    key: str | None
    message: str


class ValidateOut(_Shape):
    """`validate --json`."""

    ok: bool
    errors: list[Problem]


class UserOut(_Shape):
    """One user in `users list --json`."""

    user: str
    role: Literal["viewer", "operator", "editor", "admin"]
    active_tokens: list[str]


class ConnectionOut(_Shape):
    """One check in `test-connection --json` (a name may be a source and a destination)."""

    kind: Literal["source", "destination"]
    name: str
    ok: bool
    type: str | None = None
    version: str | None = None
    latency_ms: float | None = None
    error: str | None = None


class ApprovalOut(_Shape):
    """One approval (`approve --json`, `approvals --json`'s `recent`)."""

    commit: str
    approved_by: str
    approved_at: datetime
    via: Literal["web", "cli", "save"]
    draft: str | None


class PendingCommitOut(_Shape):
    """A commit checked out that no admin approved."""

    commit: str
    author: str
    at: datetime
    subject: str


class DraftOut(_Shape):
    """A draft branch waiting for an admin."""

    branch: str
    tip: str
    author: str
    at: datetime
    subject: str
    files: list[str]


class ApprovalsOut(_Shape):
    """`approvals --json`."""

    required: bool
    branch: str
    head: str | None = Field(description="The commit checked out (null: not in Git)")
    dirty: bool | None
    approved_base: str | None = Field(description="The nearest approved commit behind HEAD")
    commits: list[PendingCommitOut] = Field(description="Unapproved, newest first")
    drafts: list[DraftOut]
    recent: list[ApprovalOut]


#: Each command's output: its JSON Schema is ``TypeAdapter(shape).json_schema()``.
OUTPUTS: dict[str, Any] = {
    "run": list[RunResult],
    "plan": PlanResult | list[PlanResult],
    "runs": list[StoredRun],
    "status": list[SyncStatusOut],
    "models": list[ModelOut],
    "schedules": list[ScheduleOut],
    "validate": ValidateOut,
    "users list": list[UserOut],
    "test-connection": list[ConnectionOut],
    "approve": ApprovalOut,
    "approvals": ApprovalsOut,
}


def output_schema(command: str) -> dict[str, Any]:
    """The JSON Schema of ``command --json``'s output."""
    schema: dict[str, Any] = TypeAdapter(OUTPUTS[command]).json_schema()
    schema["title"] = f"backhaul {command} --json"
    return schema


__all__ = ["OUTPUTS", "output_schema"]
