"""Server-rendered pages: overview, sync, run (with the HTTP-call debugger) and model.

Every page needs a logged-in viewer; running a sync needs an operator. Templates are
rendered with autoescape on, and nothing from the project, the warehouse or a destination
is ever marked safe: the only ``Markup`` handed to templates is the SVG built (and escaped)
by :mod:`backhaul.web.charts`, and the overview's body, itself rendered with autoescape.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import Annotated
from typing import Any
from typing import TypeVar

from fastapi import APIRouter
from fastapi import Form
from fastapi import Path as PathParam
from fastapi import Query
from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.responses import RedirectResponse
from fastapi.responses import Response
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool

from backhaul import pyvalues
from backhaul.calls import HttpCall
from backhaul.config.project import Project
from backhaul.config.project import SyncDef
from backhaul.engine.workspace import open_source
from backhaul.engine.workspace import strip_sql
from backhaul.errors import BackhaulError
from backhaul.errors import RunConflict
from backhaul.errors import StoreError
from backhaul.files import NotReadable
from backhaul.files import read_text
from backhaul.gitinfo import commit_text
from backhaul.gitinfo import file_at
from backhaul.gitinfo import file_history
from backhaul.schedule.timetable import Timetable
from backhaul.state import snapshots
from backhaul.state.reader import RunReader
from backhaul.state.reader import RunRecord
from backhaul.state.reader import store_if_log_unreadable
from backhaul.summary import Counts
from backhaul.summary import RowOp
from backhaul.summary import RowOutcome
from backhaul.summary import RowStatus
from backhaul.summary import RunStatus
from backhaul.web.api.models import masked
from backhaul.web.auth import Operator
from backhaul.web.auth import Role
from backhaul.web.auth import User
from backhaul.web.auth import Viewer
from backhaul.web.cache import SharedMemo
from backhaul.web.charts import ChartRun
from backhaul.web.charts import run_history_svg
from backhaul.web.deps import CacheDep
from backhaul.web.deps import ProjectDep
from backhaul.web.deps import ReaderDep
from backhaul.web.deps import get_runs
from backhaul.web.deps import templates
from backhaul.web.runs import latest_runs

router = APIRouter(include_in_schema=False)


PREVIEW_ROWS = 100
CHART_RUNS = 30
CALLS_SHOWN = 200
KEYS_PER_CALL = 60
STATUS_ORDER: tuple[str, ...] = tuple(s.value for s in RowStatus)
WAIT_SHOWN = 0.1  # seconds of waiting worth showing


# -- view values ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunView:
    """A run as the pages show it."""

    id: str
    short: str
    sync: str
    status: str
    started: str
    ago: str
    duration: str
    counts: Counts
    trigger: str
    full_resync: bool
    error: str | None
    finished: bool
    waited: str = ""  # time spent waiting for the destination, when there was any
    commit: str | None = None  # the Git commit the run started from
    dirty: bool = False  # the project's files differed from that commit

    @property
    def revision(self) -> str:
        """``commit 1a2b3c4d5e`` (``with uncommitted changes``), or ``not in Git``."""
        return commit_text(self.commit, self.dirty)

    @property
    def rejected_rate(self) -> str:
        sent = self.counts.succeeded + self.counts.rejected
        return f"{self.counts.rejected / sent:.1%}" if sent else "—"


@dataclass(frozen=True, slots=True)
class SyncRow:
    name: str
    model: str
    destination: str
    mode: str
    enabled: bool
    last: RunView | None
    rows_synced: int | None  # None while a run holds the snapshot
    schedule: str = "manual"
    next_run: str = "manual"
    paused: bool = False


@dataclass(frozen=True, slots=True)
class MappingView:
    kind: str
    source: str
    field: str
    cast: str
    nulls: str


@dataclass(frozen=True, slots=True)
class CallView:
    call: HttpCall
    started: str
    request_body: str | None
    response_body: str | None
    headers: str
    keys: list[tuple[str, str]] = field(default_factory=list)  # (key, status)
    more_keys: int = 0
    response_headers: str = ""
    waited: str = ""  # how long the attempt was held back before it was sent, and why

    @property
    def ok(self) -> bool:
        return self.call.status is not None and 200 <= self.call.status < 300


def when(value: datetime | None) -> str:
    """A timestamp as ``2024-05-01 12:03:04 UTC`` (``—`` when missing)."""
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(value: datetime | None, now: datetime | None = None) -> str:
    """How long ago ``value`` was, roughly (``3 min ago``)."""
    if value is None:
        return ""
    seconds = ((now or datetime.now(UTC)) - value).total_seconds()
    if seconds < 60:
        return "just now"
    for size, unit in ((86_400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return ""  # pragma: no cover - every positive value matched above


def seconds_text(value: float) -> str:
    if value >= 120:
        return f"{value / 60:.1f} min"
    return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"


def run_view(record: RunRecord) -> RunView:
    running = record.status is RunStatus.RUNNING
    return RunView(
        id=record.run_id,
        short=record.run_id[:8],
        sync=record.sync,
        status=record.status.value,
        started=when(record.started_at),
        ago=ago(record.started_at),
        duration="running" if running else seconds_text(record.duration_s),
        counts=record.counts,
        trigger=record.trigger,
        full_resync=record.full_resync,
        error=record.error,
        finished=not running,
        waited=seconds_text(record.wait_s) if record.wait_s >= WAIT_SHOWN else "",
        commit=record.git_commit,
        dirty=bool(record.git_dirty),
    )


def chart_run(record: RunRecord, *, with_sync: bool) -> ChartRun:
    label = f"{record.sync} {record.run_id[:8]}" if with_sync else f"run {record.run_id[:8]}"
    c = record.counts
    # What the destination acknowledged, not what was planned: a run that failed before
    # sending shows no bar.
    return ChartRun(
        label,
        record.started_at,
        c.delivered_added,
        c.delivered_changed + c.delivered_retried,
        c.delivered_removed,
        c.rejected,
        record.duration_s,
        record.status.value,
        record.sync,
    )


def render(
    request: Request,
    name: str,
    context: dict[str, Any],
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    return templates.TemplateResponse(
        request, name, context, status_code=status_code, headers=headers
    )


def not_found(request: Request, user: User, what: str, name: str) -> HTMLResponse:
    context = {"user": user, "what": what, "name": name, "title": "Not found"}
    return render(request, "404.html", context, status_code=404)


# -- store queries ---------------------------------------------------------------------


def call_keys(
    reader: RunReader, run_id: str, call_ids: list[str], row_log: bool = True
) -> dict[str, list[tuple[str, str]]]:
    """Keys (and row status) of the rows each call carried, enough to show per call."""
    limit = KEYS_PER_CALL * len(call_ids) * 4
    return reader.call_keys(run_id, call_ids, limit=limit, row_log=row_log)


T = TypeVar("T")


def from_log(read: Callable[[bool], T], problems: list[str]) -> T:
    """What :func:`~backhaul.state.reader.store_if_log_unreadable` answers; why the row
    log was not read, if it was not, goes to ``problems`` for the page to show once."""
    found, why = store_if_log_unreadable(read)
    if why is not None and why not in problems:
        problems.append(why)
    return found


# -- other helpers ---------------------------------------------------------------------


def snapshot_rows(state: Any, project: Project, name: str) -> int | None:
    """Rows in a sync's snapshot, cached per app until the state file changes.

    Opening 200 DuckDB files on every overview request would be far too slow; a stat is not.
    """
    # The file names are worked out once per sync: building Paths for 200 syncs cost more
    # than the stats themselves.
    paths: dict[str, tuple[str, str]] = getattr(state, "snapshot_paths", None) or {}
    state.snapshot_paths = paths
    found = paths.get(name)
    if found is None:
        file = snapshots.state_path(project.state_dir, name)
        found = paths[name] = (str(file), str(file.with_name(file.name + ".wal")))
    path, wal = found
    try:
        stamp = (os.stat(path).st_mtime_ns, _mtime_ns(wal))
    except FileNotFoundError:
        return 0
    cache: dict[str, tuple[tuple[int, int], int]] = getattr(state, "snapshot_rows", None) or {}
    state.snapshot_rows = cache
    hit = cache.get(path)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    rows, _pending = snapshots.read_counts(project.state_dir, name)
    if rows < 0:
        return None  # a run holds the state file right now
    cache[path] = (stamp, rows)
    return rows


def _mtime_ns(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except FileNotFoundError:
        return 0


def pretty(body: str | None) -> str | None:
    """Indent a JSON body for reading; anything else is returned as it is."""
    if not body:
        return body
    try:
        return json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except ValueError:
        return body


def mapping_views(sync: SyncDef) -> list[MappingView]:
    out = []
    for m in sync.config.mappings:
        data = m.model_dump()
        if "column" in data:
            kind, source = "column", str(data["column"])
        elif "template" in data:
            kind, source = "template", str(data["template"])
        else:
            kind, source = "static", json.dumps(data.get("value"))
        cast = data.get("cast")
        nulls = data.get("nulls") or sync.config.nulls
        out.append(
            MappingView(kind, source, str(data["field"]), str(cast) if cast else "", str(nulls))
        )
    return out


def call_view(
    call: HttpCall, keys: list[tuple[str, str]] | None = None, total: int = 0
) -> CallView:
    keys = keys or []
    shown = keys[:KEYS_PER_CALL]
    return CallView(
        call=call,
        started=when(call.started_at),
        request_body=pretty(call.request_body),
        response_body=pretty(call.response_body),
        headers=header_lines(call.request_headers),
        keys=shown,
        more_keys=max(total, len(keys)) - len(shown),
        response_headers=header_lines(call.response_headers),
        waited=call_wait(call),
    )


def header_lines(headers: dict[str, str]) -> str:
    """Headers as ``name: value`` lines, sorted by name."""
    return "\n".join(f"{k}: {v}" for k, v in sorted(headers.items()))


def call_wait(call: HttpCall) -> str:
    """``waited 10 s before this attempt: HubSpot rate limit (429, ...)``, or ``""``."""
    if call.wait_ms < WAIT_SHOWN * 1000:
        return ""
    why = f": {call.wait_reason}" if call.wait_reason else ""
    return f"waited {seconds_text(call.wait_ms / 1000)} before this attempt{why}"


def find_run(reader: RunReader, run_id: str) -> RunRecord | None:
    try:
        return reader.run(run_id)
    except StoreError:
        return None  # an ambiguous prefix names no single run


def progress_context(request: Request, record: RunRecord) -> dict[str, Any]:
    """Live numbers of a run: the run manager's when it runs here, else the stored counts."""
    live = get_runs(request).progress(record.run_id) if not _finished(record) else None
    c = record.counts
    data: dict[str, Any] = {
        "phase": "",
        "total": c.planned,
        "sent": c.succeeded + c.rejected,
        "succeeded": c.succeeded,
        "rejected": c.rejected,
        "status": record.status.value,
        "waiting": None,
    }
    if live:
        data.update({k: v for k, v in live.items() if k in data and v is not None})
    return {"run": run_view(record), "p": data}


def _finished(record: RunRecord) -> bool:
    return record.status is not RunStatus.RUNNING


# -- pages -----------------------------------------------------------------------------


# The overview's body is the same for every user; it is rendered at most once per this many
# seconds (sooner when a run starts or ends here) and shared by all requests meanwhile.
OVERVIEW_TTL = 1.0


def overview_body(project: Project, reader: RunReader, state: Any) -> Markup:
    """The overview's content (sync table, chart, models), rendered with autoescape on."""
    last = latest_runs(reader, state.cache)
    timetable: Timetable = state.timetable
    upcoming = timetable.next_runs()
    rows = []
    for name in sorted(project.syncs):
        sync = project.syncs[name].config
        record = last.get(name)
        nxt = upcoming[name]
        rows.append(
            SyncRow(
                name,
                sync.model,
                sync.destination,
                sync.mode.value,
                sync.enabled,
                run_view(record) if record else None,
                snapshot_rows(state, project, name),
                nxt.schedule,
                nxt.label(),
                nxt.paused,
            )
        )
    recent = list(reversed(reader.runs(limit=CHART_RUNS)))
    chart = run_history_svg(
        [chart_run(r, with_sync=True) for r in recent],
        title="Recent runs across all syncs",
        chart_id="recent-runs",
        by_sync=True,
    )
    context = {
        "syncs": rows,
        "chart": chart,
        "project": project.config.name,
        "models": sorted(project.models),
        "scheduled": sum(1 for n in upcoming.values() if n.kind != "manual"),
        "scheduler": bool(getattr(state, "scheduler_running", False)),
    }
    # Rendered by an autoescaping environment: every value in it is already escaped.
    return Markup(templates.env.get_template("partials/overview_body.html").render(context))


@router.get("/", response_class=HTMLResponse)
async def overview(
    request: Request, user: Viewer, project: ProjectDep, reader: ReaderDep, cache: CacheDep
) -> Response:
    """Every sync with its last run, and a chart of recent runs across syncs."""
    shared: SharedMemo[Markup] = cache.memo("overview", OVERVIEW_TTL)
    body = shared.peek()
    if body is None:
        # Rendering reads the store and stats snapshot files: off the event loop, and by one
        # thread at a time (the others get the previous body, or wait when there is none).
        state = request.app.state
        body = await run_in_threadpool(shared.get, lambda: overview_body(project, reader, state))
    context = {"user": user, "title": "Overview", "body": body}
    return render(request, "overview.html", context)


@router.get("/syncs/{name}", response_class=HTMLResponse)
def sync_page(
    request: Request, name: str, user: Viewer, project: ProjectDep, reader: ReaderDep
) -> Response:
    """A sync's YAML as written, its mappings, run history and run buttons."""
    sync = project.syncs.get(name)
    if sync is None:
        return not_found(request, user, "sync", name)
    return _sync_response(request, user, project, reader, sync)


def _sync_response(
    request: Request,
    user: User,
    project: Project,
    reader: RunReader,
    sync: SyncDef,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    path = project.root / sync.positions.file
    try:
        yaml_text = read_text(path)
    except NotReadable as exc:
        yaml_text = f"# {sync.positions.file} {exc.reason}"
    history = reader.runs(sync.name, limit=CHART_RUNS)
    chart = run_history_svg(
        [chart_run(r, with_sync=False) for r in reversed(history)],
        title=f"Run history of {sync.name}",
        chart_id="sync-history",
    )
    context = {
        "user": user,
        "title": sync.name,
        "sync": sync,
        "config": sync.config,
        "file": Path(sync.positions.file).as_posix(),
        "yaml": yaml_text,
        "mappings": mapping_views(sync),
        "chart": chart,
        "runs": [run_view(r) for r in history],
        "can_run": user.role.allows(Role.OPERATOR),
        "running": next((r.run_id for r in history if not _finished(r)), None),
        "rows_synced": snapshot_rows(request.app.state, project, sync.name),
        "file_history": file_history(project.root, Path(sync.positions.file).as_posix()),
        "error": error,
        "next": request.app.state.timetable.next_runs()[sync.name],
    }
    return render(request, "sync.html", context, status_code=status_code)


@router.get("/syncs/{name}/revisions/{commit}", response_class=HTMLResponse)
def sync_revision_page(
    request: Request,
    name: str,
    commit: Annotated[str, PathParam(min_length=7, max_length=64, pattern="^[0-9a-fA-F]+$")],
    user: Viewer,
    project: ProjectDep,
) -> Response:
    """The sync's file as it was at ``commit`` (what a run from that commit read)."""
    sync = project.syncs.get(name)
    if sync is None:
        return not_found(request, user, "sync", name)
    rel = Path(sync.positions.file).as_posix()
    text = file_at(project.root, commit, rel)
    if text is None:
        return not_found(request, user, f"revision of {rel}", commit)
    context = {
        "user": user,
        "title": f"{name} at {commit[:10]}",
        "sync": sync,
        "commit": commit,
        "file": rel,
        "yaml": text,
        "history": file_history(project.root, rel),
    }
    return render(request, "sync_revision.html", context)


@router.post("/syncs/{name}/pause")
def pause_sync(request: Request, name: str, user: Operator, project: ProjectDep) -> Response:
    """Pause the sync's schedule."""
    return _set_paused(request, name, user, project, True)


@router.post("/syncs/{name}/resume")
def resume_sync(request: Request, name: str, user: Operator, project: ProjectDep) -> Response:
    """Resume the sync's schedule."""
    return _set_paused(request, name, user, project, False)


def _set_paused(
    request: Request, name: str, user: User, project: Project, paused: bool
) -> Response:
    from backhaul.web.schedules import set_paused

    if name not in project.syncs:
        return not_found(request, user, "sync", name)
    set_paused(request.app.state, name, user, paused)
    return RedirectResponse(f"/syncs/{name}", status_code=303)


@router.post("/syncs/{name}/run")
def trigger_run(
    request: Request,
    name: str,
    user: Operator,
    project: ProjectDep,
    reader: ReaderDep,
    full_resync: Annotated[bool, Form()] = False,
) -> Response:
    """Start a run in the background and go to its page."""
    sync = project.syncs.get(name)
    if sync is None:
        return not_found(request, user, "sync", name)
    try:
        run_id = get_runs(request).trigger(name, full_resync=full_resync, user=user)
    except RunConflict as exc:
        last = reader.last_run(name)
        if last is not None and not _finished(last):
            return RedirectResponse(f"/runs/{last.run_id}", status_code=303)
        return _sync_response(
            request, user, project, reader, sync, error=exc.message, status_code=409
        )
    except BackhaulError as exc:
        return _sync_response(
            request, user, project, reader, sync, error=exc.message, status_code=400
        )
    return RedirectResponse(f"/runs/{run_id}", status_code=303)


# The run page's search box and its htmx partial take the same primary key text.
SearchKey = Annotated[str, Query(max_length=500)]


def _search(
    reader: RunReader, run_id: str, key: str, problems: list[str]
) -> list[RowOutcome] | None:
    """Rows of the run found by primary key ``key``; None when no key was asked for."""
    if not key:
        return None
    return from_log(lambda log: reader.search_rows(run_id, key, row_log=log), problems)


def _call_views(
    reader: RunReader, run_id: str, calls: list[HttpCall], problems: list[str]
) -> list[CallView]:
    """``calls`` as shown, each with the keys and the number of the rows it carried."""
    ids = [c.call_id for c in calls]
    keys = from_log(lambda log: call_keys(reader, run_id, ids, log), problems)
    totals = from_log(lambda log: reader.call_row_counts(run_id, ids, row_log=log), problems)
    return [call_view(c, keys.get(c.call_id), totals.get(c.call_id, 0)) for c in calls]


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(
    request: Request,
    run_id: str,
    user: Viewer,
    reader: ReaderDep,
    key: SearchKey = "",
) -> Response:
    """Counts, rows by operation and status, rejected rows and every HTTP call of a run."""
    record = find_run(reader, run_id)
    if record is None:
        return not_found(request, user, "run", run_id)
    rid = record.run_id
    problems: list[str] = []
    matrix = from_log(lambda log: reader.row_counts(rid, row_log=log), problems)
    ops = [op.value for op in RowOp if any(k[0] == op.value for k in matrix)]
    statuses = [s for s in STATUS_ORDER if any(k[1] == s for k in matrix)]
    statuses += sorted({k[1] for k in matrix} - set(statuses))
    calls = reader.calls(rid, limit=CALLS_SHOWN)
    views = _call_views(reader, rid, calls, problems)
    found = _search(reader, rid, key, problems)
    context = {
        **progress_context(request, record),
        "user": user,
        "title": f"Run {rid[:8]}",
        "matrix": matrix,
        "ops": ops,
        "statuses": statuses,
        "rejected": reader.rows(rid, status="rejected", limit=200),
        "calls": views,
        "calls_capped": len(calls) == CALLS_SHOWN,
        "key": key,
        "found": found,
        "log_problems": problems,
    }
    return render(request, "run.html", context)


@router.get("/runs/{run_id}/progress", response_class=HTMLResponse)
def run_progress(request: Request, run_id: str, user: Viewer, reader: ReaderDep) -> Response:
    """The live progress partial; once the run ends, the page reloads to show the results."""
    record = find_run(reader, run_id)
    if record is None:
        return not_found(request, user, "run", run_id)
    headers = {"HX-Refresh": "true"} if _finished(record) else None
    return render(
        request, "partials/progress.html", progress_context(request, record), headers=headers
    )


@router.get("/runs/{run_id}/rows", response_class=HTMLResponse)
def run_rows_partial(
    request: Request,
    run_id: str,
    user: Viewer,
    reader: ReaderDep,
    key: SearchKey = "",
) -> Response:
    """Rows of a run found by primary key (the search box's htmx target)."""
    record = find_run(reader, run_id)
    if record is None:
        return not_found(request, user, "run", run_id)
    problems: list[str] = []
    found = _search(reader, record.run_id, key.strip(), problems)
    context = {"run": run_view(record), "key": key, "found": found, "search_problems": problems}
    return render(request, "partials/rows.html", context)


def _call_context(reader: RunReader, run_id: str, call_id: str) -> dict[str, Any] | None:
    record = find_run(reader, run_id)
    call = reader.call(record.run_id, call_id) if record else None
    if record is None or call is None:
        return None
    problems: list[str] = []
    (view,) = _call_views(reader, record.run_id, [call], problems)
    return {"run": run_view(record), "c": view, "log_problems": problems}


@router.get("/runs/{run_id}/calls/{call_id}", response_class=HTMLResponse)
def call_page(
    request: Request, run_id: str, call_id: str, user: Viewer, reader: ReaderDep
) -> Response:
    """One HTTP call with its bodies and every row it carried (rows link here)."""
    context = _call_context(reader, run_id, call_id)
    if context is None:
        return not_found(request, user, "HTTP call", call_id)
    title = f"{context['c'].call.method} call"
    return render(request, "call.html", {**context, "user": user, "title": title})


@router.get("/runs/{run_id}/calls/{call_id}/body", response_class=HTMLResponse)
def call_body(
    request: Request, run_id: str, call_id: str, user: Viewer, reader: ReaderDep
) -> Response:
    """A call's headers and bodies, loaded when its entry in the debugger is opened."""
    context = _call_context(reader, run_id, call_id)
    if context is None:
        return not_found(request, user, "HTTP call", call_id)
    return render(request, "partials/call_body.html", context)


@router.get("/models/{name}", response_class=HTMLResponse)
def model_page(request: Request, name: str, user: Viewer, project: ProjectDep) -> Response:
    """A model's SQL, its columns and types, and its first rows."""
    model = project.models.get(name)
    if model is None:
        return not_found(request, user, "model", name)
    columns: dict[str, str] = {}
    header: list[str] = []
    preview: list[list[Any]] = []
    error: str | None = None
    try:
        source = open_source(project, model)
        try:
            columns = source.columns(model.sql)
            sql = f"SELECT * FROM (\n{strip_sql(model.sql)}\n) AS backhaul_preview LIMIT {PREVIEW_ROWS}"
            reader = source.stream(sql, batch_size=PREVIEW_ROWS)
            header = list(reader.schema.names)
            for batch in reader:
                preview += [
                    [masked(model, k, v) for k, v in row.items()] for row in pyvalues.rows(batch)
                ]
                if len(preview) >= PREVIEW_ROWS:
                    break
        finally:
            source.close()
    except BackhaulError as exc:
        error = exc.message
    except Exception as exc:  # a driver's own error: show it, never a 500
        error = f"{type(exc).__name__}: {exc}"
    context = {
        "user": user,
        "title": name,
        "model": model,
        "columns": columns,
        "header": header,
        "preview": preview[:PREVIEW_ROWS],
        "error": error,
        "sql_file": model.sql_file.name if model.sql_file else None,
        "syncs": sorted(s.name for s in project.syncs.values() if s.config.model == name),
        "audience_schemas": model_schemas(project, name),
    }
    return render(request, "model.html", context)


def model_schemas(project: Project, model: str) -> list[tuple[str, str, list[str]]]:
    """The audience schemas that read ``model``: (schema, the model's role, its audiences)."""
    out: list[tuple[str, str, list[str]]] = []
    for schema in sorted(project.audience_schemas.values(), key=lambda s: s.name):
        role = next((t.kind for t in schema.catalog.tables if t.model == model), None)
        if role is not None:
            names = sorted(n for n, a in project.audiences.items() if a.schema == schema.name)
            out.append((schema.name, role, names))
    return out


__all__ = ["router"]
