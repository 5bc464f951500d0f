"""Bulk API 2.0 ingest for the Salesforce destination: CSV jobs, polling, result mapping.

One batch becomes one ingest job (or a few when its CSV is larger than one upload may be):
create the job, PUT the CSV, mark it ``UploadComplete``, poll until it ends, then read the
successful, failed and unprocessed result CSVs. Results come back in no particular order,
so rows are matched to the batch by their key column (the external id, or ``Id`` for
deletes). A row no result mentions counts as not processed and is kept for the next run.
"""

from __future__ import annotations

import asyncio
import csv
import io
import time
from collections import defaultdict
from collections import deque
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from datetime import datetime
from datetime import time as dtime
from decimal import Decimal
from typing import Any

from backhaul.destinations.http import dumps_json
from backhaul.destinations.salesforce_auth import SalesforceSession
from backhaul.errors import DestinationError
from backhaul.errors import FailureType

NULL_MARK = "#N/A"  # a Bulk API cell that sets the field to null; an empty cell leaves it alone
MAX_UPLOAD_BYTES = 100 * 1024 * 1024  # the documented cap is 150 MB; clients keep a margin
TERMINAL = frozenset({"JobComplete", "Failed", "Aborted"})


@dataclass(frozen=True, slots=True)
class BulkJob:
    """What to load: the rows of one operation on one object, as CSV cells."""

    object: str
    operation: str  # "upsert" | "delete"
    columns: Sequence[str]
    rows: Sequence[Sequence[str]]
    key_column: str  # the column results are matched by
    external_id: str | None = None


def cell(value: Any, *, skip_null: bool = False) -> str:
    """A CSV cell for ``value``; ``None`` clears the field unless ``skip_null``."""
    if value is None:
        return "" if skip_null else NULL_MARK
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date | dtime):
        return value.isoformat()
    if isinstance(value, Decimal | int | float | str):
        return str(value)
    return dumps_json(value).decode("utf-8")


def to_csv(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def split_rows(
    columns: Sequence[str], rows: Sequence[Sequence[str]], limit: int = MAX_UPLOAD_BYTES
) -> list[tuple[int, int]]:
    """``(start, end)`` row ranges whose CSV each fits in one upload of ``limit`` bytes."""
    header = len(to_csv(columns, []))
    parts: list[tuple[int, int]] = []
    start, size = 0, header
    for i, row in enumerate(rows):
        width = len(to_csv([], [row])) if row else 1
        if size + width > limit and i > start:
            parts.append((start, i))
            start, size = i, header
        size += width
    if start < len(rows) or not parts:
        parts.append((start, len(rows)))
    return parts


async def run_bulk(
    session: SalesforceSession,
    job: BulkJob,
    *,
    poll_interval: float,
    timeout: float,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    upload_limit: int = MAX_UPLOAD_BYTES,
    record_ids: dict[int, str] | None = None,
) -> dict[int, str | None]:
    """Load ``job`` through as many ingest jobs as its size needs.

    ``record_ids``, when given, receives the Salesforce Id of each acknowledged row
    (``sf__Id`` of the job's successful results).

    Returns:
        Row index -> ``None`` when Salesforce acknowledged the row, else the error to show.
    """
    outcome: dict[int, str | None] = {}
    ids = record_ids if record_ids is not None else {}
    for start, end in split_rows(job.columns, job.rows, upload_limit):
        part = await _one_job(session, job, start, end, poll_interval, timeout, sleep, ids)
        outcome.update(part)
    return outcome


async def _one_job(
    session: SalesforceSession,
    job: BulkJob,
    start: int,
    end: int,
    poll_interval: float,
    timeout: float,
    sleep: Callable[[float], Awaitable[None]],
    ids: dict[int, str],
) -> dict[int, str | None]:
    spec: dict[str, Any] = {
        "object": job.object,
        "operation": job.operation,
        "contentType": "CSV",
        "columnDelimiter": "COMMA",
        "lineEnding": "LF",
    }
    if job.external_id:
        spec["externalIdFieldName"] = job.external_id
    created = await session.call("POST", "/jobs/ingest", json=spec)
    if created.status != 200 or not isinstance(created.json, dict):
        raise DestinationError(
            f"salesforce refused to create a Bulk API job for {job.object}: "
            f"{created.error}: check `object` and `external_id_field`",
            failure=FailureType.CONFIG,
            status=created.status,
        )
    job_id = str(created.json["id"])
    body = to_csv(job.columns, job.rows[start:end])
    uploaded = await session.call(
        "PUT", f"/jobs/ingest/{job_id}/batches", content=body, headers={"Content-Type": "text/csv"}
    )
    if uploaded.status != 201:
        await _abort(session, job_id)
        raise DestinationError(
            f"salesforce refused the CSV upload of job {job_id}: {uploaded.error}",
            failure=FailureType.TRANSIENT,
            status=uploaded.status,
        )
    closed = await session.call("PATCH", f"/jobs/ingest/{job_id}", json={"state": "UploadComplete"})
    if closed.status != 200:
        raise DestinationError(
            f"salesforce did not start job {job_id}: {closed.error}", status=closed.status
        )
    info = await _wait(session, job_id, poll_interval, timeout, sleep)
    state = str(info.get("state"))
    reason = f"job {job_id} ended {state}"
    if info.get("errorMessage"):
        reason += f": {info['errorMessage']}"

    indexes: dict[str, deque[int]] = defaultdict(deque)
    for i in range(start, end):
        indexes[job.rows[i][job.columns.index(job.key_column)]].append(i)
    outcome: dict[int, str | None] = {}

    def take(row: dict[str, str], value: str | None) -> None:
        waiting = indexes.get(row.get(job.key_column, ""))
        if waiting:
            at = waiting.popleft()
            outcome[at] = value
            if value is None and row.get("sf__Id"):
                ids[at] = row["sf__Id"]

    for row in await _results(session, job_id, "successfulResults"):
        take(row, None)
    for row in await _results(session, job_id, "failedResults"):
        take(row, error_text(row.get("sf__Error", "")))
    if state != "JobComplete":
        for row in await _results(session, job_id, "unprocessedrecords"):
            take(row, f"not processed by Salesforce ({reason}); it is sent again next run")
    for i in range(start, end):
        outcome.setdefault(i, f"not processed by Salesforce ({reason}); it is sent again next run")
    return outcome


async def _wait(
    session: SalesforceSession,
    job_id: str,
    poll_interval: float,
    timeout: float,
    sleep: Callable[[float], Awaitable[None]],
) -> dict[str, Any]:
    """Poll the job until it ends; abort it when it outlasts ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        polled = await session.call("GET", f"/jobs/ingest/{job_id}")
        info = polled.json if isinstance(polled.json, dict) else {}
        if polled.status != 200:
            raise DestinationError(
                f"salesforce could not report on job {job_id}: {polled.error}",
                status=polled.status,
            )
        if info.get("state") in TERMINAL:
            return info
        if time.monotonic() > deadline:
            # Rows the job has not reached stay unacknowledged and are sent next run.
            aborted = await _abort(session, job_id)
            return aborted or {**info, "state": "Aborted", "errorMessage": "timed out"}
        await sleep(poll_interval)


async def _abort(session: SalesforceSession, job_id: str) -> dict[str, Any] | None:
    result = await session.call("PATCH", f"/jobs/ingest/{job_id}", json={"state": "Aborted"})
    return result.json if result.status == 200 and isinstance(result.json, dict) else None


async def _results(session: SalesforceSession, job_id: str, kind: str) -> list[dict[str, str]]:
    result = await session.call(
        "GET", f"/jobs/ingest/{job_id}/{kind}/", headers={"Accept": "text/csv"}
    )
    if result.status != 200:
        raise DestinationError(
            f"salesforce could not list the {kind} of job {job_id}: {result.error}",
            status=result.status,
        )
    return list(csv.DictReader(io.StringIO(result.text)))


def error_text(raw: str) -> str:
    """``CODE:message:fields --`` from a failedResults row, as ``CODE: message``."""
    text = raw.strip().removesuffix("--").strip()
    code, sep, rest = text.partition(":")
    if not sep:
        return text or "refused by Salesforce"
    message, _, fields = rest.rpartition(":")
    if not message:  # no field list
        message, fields = rest, ""
    shown = f"{code}: {message.strip()}"
    return f"{shown} ({fields.strip()})" if fields.strip() else shown
