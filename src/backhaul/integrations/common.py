"""What every orchestrator integration shares: a finished run as a typed value, and the
rule that decides whether the orchestrator's task fails.

The rule, exactly: a run that ``failed``, was ``guarded`` or ``cancelled`` fails the task;
a ``partial`` run (some rows rejected by the destination) fails it only with
``fail_on_partial``; and with ``max_rejected`` set, more rejected rows than that fail it
whatever the status. A ``succeeded`` run within the threshold passes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

from backhaul.errors import SyncRunFailed
from backhaul.summary import RunStatus
from backhaul.summary import RunSummary

FAILED_STATUSES = frozenset({RunStatus.FAILED, RunStatus.GUARDED, RunStatus.CANCELLED})
COUNT_KEYS = ("added", "changed", "removed", "rejected", "succeeded", "invalid", "unchanged")


@dataclass(frozen=True)
class SyncRunResult:
    """One finished run of one sync, as orchestrators report it.

    Attributes:
        run_id: The run's id in the run store (and in ``backhaul serve``).
        sync: The sync's name.
        status: ``succeeded``, ``partial``, ``failed``, ``guarded`` or ``cancelled``.
        counts: Rows by outcome: ``added``, ``changed``, ``removed``, ``rejected``,
            ``succeeded``, ``invalid``, ``unchanged`` (and the others a run records).
        error: Why a failed run stopped, in one line.
        url: The run's page in the web app, when its address is known.
    """

    run_id: str
    sync: str
    status: RunStatus
    counts: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    url: str | None = None

    @classmethod
    def from_summary(cls, summary: RunSummary, *, web_url: str | None = None) -> SyncRunResult:
        return cls(
            summary.run_id,
            summary.sync,
            summary.status,
            summary.counts.as_dict(),
            summary.error,
            run_url(web_url, summary.run_id),
        )

    @classmethod
    def from_api(cls, body: Mapping[str, Any], *, web_url: str | None = None) -> SyncRunResult:
        """From a run as ``GET /api/v1/runs/{id}`` returns it."""
        return cls._parsed(body, url=run_url(web_url, str(body["run_id"])))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SyncRunResult:
        """From :meth:`as_dict` (e.g. after an Airflow trigger event carried it)."""
        return cls._parsed(data, url=data.get("url"))

    @classmethod
    def _parsed(cls, data: Mapping[str, Any], *, url: str | None) -> SyncRunResult:
        counts = data.get("counts") or {}
        return cls(
            str(data["run_id"]),
            str(data["sync"]),
            RunStatus(str(data["status"])),
            {str(k): int(v) for k, v in counts.items()},
            data.get("error"),
            url,
        )

    @property
    def finished(self) -> bool:
        return self.status is not RunStatus.RUNNING

    def count(self, key: str) -> int:
        return self.counts.get(key, 0)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: what an Airflow task pushes to XCom and a Prefect flow returns."""
        return {
            "run_id": self.run_id,
            "sync": self.sync,
            "status": self.status.value,
            "counts": dict(self.counts),
            "error": self.error,
            "url": self.url,
        }


def run_url(web_url: str | None, run_id: str) -> str | None:
    """The run's page under the web app at ``web_url`` (None when that is unknown)."""
    return f"{web_url.rstrip('/')}/runs/{run_id}" if web_url else None


def failure(
    result: SyncRunResult, *, fail_on_partial: bool = False, max_rejected: int | None = None
) -> str | None:
    """Why ``result`` should fail the orchestrator's task, or None when it should not."""
    rejected = result.count("rejected")
    where = f"sync `{result.sync}` run {result.run_id}"
    if result.status in FAILED_STATUSES:
        reason = f": {result.error}" if result.error else ""
        return f"{where} {result.status.value}{reason}"
    if max_rejected is not None and rejected > max_rejected:
        return (
            f"{where} had {rejected} rejected rows, more than the {max_rejected} allowed; "
            "see the run's rows for the destination's reasons"
        )
    if fail_on_partial and result.status is RunStatus.PARTIAL:
        return f"{where} was partial: {rejected} rows rejected (they are retried next run)"
    return None


def check(
    result: SyncRunResult, *, fail_on_partial: bool = False, max_rejected: int | None = None
) -> SyncRunResult:
    """``result`` itself, or :class:`SyncRunFailed` when :func:`failure` finds a reason."""
    reason = failure(result, fail_on_partial=fail_on_partial, max_rejected=max_rejected)
    if reason is not None:
        raise SyncRunFailed(reason, result)
    return result


def run_in_process(
    project_dir: str | Path,
    sync: str,
    *,
    full_resync: bool = False,
    trigger: str = "api",
    web_url: str | None = None,
) -> SyncRunResult:
    """Load the project and run one sync in this process (alert rules apply)."""
    from backhaul import api

    project = api.load_project(project_dir)
    summary = api.run(project, sync, full_resync=full_resync, trigger=trigger, alerts=True)
    return SyncRunResult.from_summary(summary, web_url=web_url)


__all__ = [
    "COUNT_KEYS",
    "FAILED_STATUSES",
    "SyncRunResult",
    "check",
    "failure",
    "run_in_process",
    "run_url",
]
