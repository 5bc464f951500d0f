"""The REST API under ``/api/v1``: read the project and its runs, trigger and cancel runs,
manage users and tokens. Every route needs a signed-in user or an API token."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import fields
from datetime import datetime
from html import escape
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field, TypeAdapter
from starlette.concurrency import run_in_threadpool

from backhaul.config.project import DestinationDef, ModelDef, Project, SyncDef
from backhaul.engine.summary import Counts
from backhaul.errors import BackhaulError, SourceError
from backhaul.observe.redact import Redactor
from backhaul.schedule.timetable import NextRun
from backhaul.state.store import RunRecord, RunStore
from backhaul.web import runs as queries
from backhaul.web.auth import CurrentUser, Role, User, csrf_token, require
from backhaul.web.cache import SharedMemo, memo
from backhaul.web.deps import ProjectDep, RunsDep, StoreDep, UsersDep
from backhaul.web.runs import RunManager
from backhaul.web.users import AuditEntry, TokenInfo, UserError

MAX_PREVIEW = 100
MAX_PAGE = 500
MASK = "***"
# Config keys whose values are secret even when written in the file as plain text.
SECRET_KEY = re.compile(r"(token|secret|password|passwd|api_?key|auth|credential|private)", re.I)
PLAIN_HEADERS = frozenset({"content-type", "accept", "accept-language", "user-agent"})
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*):([^@\s]+)@")
_ENV_ONLY = re.compile(r"^\$\{env:[A-Za-z_][A-Za-z0-9_]*\}$")


class SafeJSONResponse(JSONResponse):
    """JSON with ``<``, ``>`` and ``&`` escaped, so no value can become markup if sniffed."""

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        text = text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
        return text.encode("utf-8")


router = APIRouter(
    prefix="/api/v1",
    default_response_class=SafeJSONResponse,
    dependencies=[Depends(require(Role.VIEWER))],
)
docs_router = APIRouter(include_in_schema=False)

Operator = Annotated[User, Depends(require(Role.OPERATOR))]
Admin = Annotated[User, Depends(require(Role.ADMIN))]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]


# -- response models ------------------------------------------------------------------


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorOut(BaseModel):
    error: ErrorBody


class MeOut(BaseModel):
    username: str
    role: Role
    csrf_token: str | None = Field(None, description="For cookie sessions: send as X-CSRF-Token.")


class SourceOut(BaseModel):
    name: str
    type: str
    description: str | None


class ModelSummary(BaseModel):
    name: str
    source: str
    primary_key: list[str]
    description: str | None
    tags: list[str]
    audience_schema: str | None = Field(
        None, description="The audience schema, when the model is an audience."
    )


class ColumnOut(BaseModel):
    name: str
    type: str


class ModelOut(ModelSummary):
    sql: str
    columns: list[ColumnOut]
    preview: list[dict[str, Any]] | None = None


class DestinationOut(BaseModel):
    name: str
    type: str
    config: dict[str, Any] = Field(description="As written, with secret values masked.")


class RunOut(BaseModel):
    run_id: str
    sync: str
    status: str
    trigger: str
    full_resync: bool
    dry_run: bool
    started_at: datetime
    finished_at: datetime | None
    duration_s: float
    error: str | None
    git_commit: str | None
    counts: dict[str, int]
    wait_s: float = Field(
        0.0,
        description="Seconds during which at least one call waited for the destination "
        "(rate-limit pauses, retries, client-side throttling).",
    )


class SyncSummary(BaseModel):
    name: str
    model: str
    destination: str
    mode: str
    enabled: bool
    tags: list[str]
    schedule: str = Field(
        "manual", description="`every 15m`, `cron 0 6 * * * (UTC)`, `after a, b`, `after dbt`, "
        "`manual` (`disabled` for a disabled sync)."
    )
    paused: bool = False
    next_run_at: datetime | None = Field(
        None, description="The expected next run of an interval or cron schedule (UTC)."
    )
    running: bool
    last_run: RunOut | None


class SyncOut(SyncSummary):
    definition: dict[str, Any]
    yaml: str
    runs: list[RunOut]


class RowCount(BaseModel):
    op: str
    status: str
    count: int


class ProgressOut(BaseModel):
    run_id: str
    sync: str
    status: str
    phase: str
    live: bool
    total: int | None = None
    sent: int = 0
    succeeded: int = 0
    rejected: int = 0
    error: str | None = None
    waiting: str | None = Field(
        None, description="The latest wait of a live run, as one line (`waiting 10 s: ...`)."
    )


class RunDetail(RunOut):
    row_counts: list[RowCount]
    progress: ProgressOut


class RowOut(BaseModel):
    key: str
    op: str
    status: str
    operation: str | None
    error: str | None
    call_id: str | None


class CallOut(BaseModel):
    call_id: str
    method: str
    url: str
    status: int | None
    latency_ms: float
    attempt: int
    error: str | None
    started_at: datetime
    wait_ms: float = Field(
        0.0, description="How long the attempt was held back before it was sent."
    )
    wait_reason: str | None = Field(
        None, description="Why it waited: a rate-limit pause, a retry's backoff, throttling."
    )


class CallDetail(CallOut):
    request_headers: dict[str, str]
    response_headers: dict[str, str] = Field(
        default_factory=dict, description="Redacted like the request headers."
    )
    request_body: str | None
    response_body: str | None
    rows: list[RowOut]


class TriggerIn(BaseModel):
    full_resync: bool = False


class TriggerOut(BaseModel):
    run_id: str
    sync: str
    status: str = "running"


class CancelOut(BaseModel):
    run_id: str
    cancelled: bool


class UserOut(BaseModel):
    id: int
    username: str
    role: Role


class UserIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=8, max_length=1024)
    role: Role = Role.VIEWER


class RoleIn(BaseModel):
    role: Role


class TokenOut(BaseModel):
    id: int
    username: str
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


class TokenIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=128)


class TokenCreated(TokenOut):
    token: str = Field(description="Shown once: only a hash is stored.")


class AuditOut(BaseModel):
    id: int
    at: datetime
    actor: str | None
    action: str
    target: str | None
    details: dict[str, Any]
    ip: str | None


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (400, 401, 403, 404, 409, 413, 422, 429)
}


# -- helpers ---------------------------------------------------------------------------


def not_found(what: str) -> HTTPException:
    return HTTPException(404, f"no {what}")


def run_out(r: RunRecord) -> RunOut:
    return RunOut(
        run_id=r.run_id,
        sync=r.sync,
        status=r.status.value,
        trigger=r.trigger,
        full_resync=r.full_resync,
        dry_run=r.dry_run,
        started_at=r.started_at,
        finished_at=r.finished_at,
        duration_s=r.duration_s,
        error=r.error,
        git_commit=r.git_commit,
        counts=counts_dict(r.counts),
        wait_s=round(r.wait_s, 3),
    )


_COUNT_NAMES = tuple(f.name for f in fields(Counts))


def counts_dict(counts: Counts) -> dict[str, int]:
    """``counts.as_dict()`` without ``dataclasses.asdict``'s deep copy (10x faster)."""
    return {name: getattr(counts, name) for name in _COUNT_NAMES}


def _model_summary(m: ModelDef, project: Project) -> ModelSummary:
    c = m.config
    audience = project.audiences.get(m.audience) if m.audience else None
    return ModelSummary(
        name=m.name,
        source=c.source,
        primary_key=c.primary_key,
        description=c.description,
        tags=c.tags,
        audience_schema=audience.schema if audience is not None else None,
    )


def _sync_summary(
    s: SyncDef, last: RunRecord | None, running: bool, upcoming: NextRun | None = None
) -> SyncSummary:
    c = s.config
    return SyncSummary(
        schedule=upcoming.schedule if upcoming else c.schedule.describe(),
        paused=upcoming.paused if upcoming else False,
        next_run_at=upcoming.at if upcoming else None,
        name=s.name,
        model=c.model,
        destination=c.destination,
        mode=c.mode.value,
        enabled=c.enabled,
        tags=c.tags,
        running=running,
        last_run=run_out(last) if last else None,
    )


def _mask(value: Any, key: str, redactor: Redactor) -> Any:
    if isinstance(value, dict):
        in_headers = key.lower() == "headers"
        return {
            k: (
                _mask_text(v, True, redactor)
                if in_headers and isinstance(v, str) and k.lower() not in PLAIN_HEADERS
                else _mask(v, str(k), redactor)
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_mask(v, key, redactor) for v in value]
    if isinstance(value, str):
        return _mask_text(value, bool(SECRET_KEY.search(key)), redactor)
    return value


def _mask_text(text: str, secret: bool, redactor: Redactor) -> str:
    if secret and not _ENV_ONLY.match(text):
        return MASK  # a literal secret, or a reference with a default value
    return redactor.text(_URL_PASSWORD.sub(rf"\1:{MASK}@", text)) or ""


def masked_config(dest: DestinationDef) -> dict[str, Any]:
    """A destination's raw config with secret values masked (never resolved values)."""
    from backhaul.config.secrets import resolve

    try:
        _, values = resolve(dest.config, positions=dest.positions)
    except BackhaulError:
        values = []
    # Also mask any resolved value that appears elsewhere in the file, however it got there.
    masked = _mask(dest.raw, "", Redactor(values))
    return masked if isinstance(masked, dict) else {}


def masked(model: ModelDef, column: str, value: Any) -> Any:
    """A preview value, masked when an audience schema marks its column personal."""
    return MASK if value is not None and column in model.personal else value


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


def describe_model(project: Project, model: ModelDef, preview: int) -> ModelOut:
    """A model's SQL, columns and (optionally) its first ``preview`` rows."""
    from backhaul.engine.workspace import open_source

    source = open_source(project, model)
    try:
        columns = [ColumnOut(name=k, type=v) for k, v in source.columns(model.sql).items()]
        rows = None
        if preview:
            reader = source.stream(f"SELECT * FROM ({model.sql}) AS m LIMIT {int(preview)}")
            rows = [
                {k: _jsonable(masked(model, k, v)) for k, v in row.items()}
                for row in reader.read_all().to_pylist()
            ]
    finally:
        source.close()
    summary = _model_summary(model, project)
    return ModelOut(**summary.model_dump(), sql=model.sql, columns=columns, preview=rows)


def _progress(runs: RunManager, record: RunRecord) -> ProgressOut:
    live = runs.progress(record.run_id)
    c = record.counts
    base = ProgressOut(
        run_id=record.run_id,
        sync=record.sync,
        status=record.status.value,
        phase="running" if record.status.value == "running" else "done",
        live=False,
        total=c.planned,
        sent=c.succeeded + c.rejected,
        succeeded=c.succeeded,
        rejected=c.rejected,
        error=record.error,
    )
    if live is None or record.status.value != "running":
        return base
    return base.model_copy(
        update={
            "live": True,
            "phase": live.get("phase", "running"),
            "total": live.get("total"),
            "sent": live.get("sent", 0),
            "succeeded": live.get("succeeded", 0),
            "rejected": live.get("rejected", 0),
            "waiting": live.get("waiting"),
        }
    )


def _run_or_404(store: RunStore, run_id: str) -> RunRecord:
    record = store.run(run_id)
    if record is None:
        raise not_found(f"run `{run_id}`")
    return record


def _row_out(r: Any) -> RowOut:
    return RowOut(
        key=r.key,
        op=str(r.op),
        status=r.status,
        operation=r.operation,
        error=r.error,
        call_id=r.call_id,
    )


def _call_out(c: Any) -> dict[str, Any]:
    return {
        "call_id": c.call_id,
        "method": c.method,
        "url": c.url,
        "status": c.status,
        "latency_ms": c.latency_ms,
        "attempt": c.attempt,
        "error": c.error,
        "started_at": c.started_at,
        "wait_ms": c.wait_ms,
        "wait_reason": c.wait_reason,
    }


def _token_out(t: TokenInfo) -> TokenOut:
    return TokenOut(
        id=t.id,
        username=t.username,
        name=t.name,
        prefix=t.prefix,
        created_at=t.created_at,
        revoked_at=t.revoked_at,
    )


def _audit_out(a: AuditEntry) -> AuditOut:
    return AuditOut(
        id=a.id,
        at=a.at,
        actor=a.actor,
        action=a.action,
        target=a.target,
        details=a.details,
        ip=a.ip,
    )


# -- project ---------------------------------------------------------------------------


@router.get("/me", response_model=MeOut, responses=ERRORS)
def me(request: Request, user: CurrentUser) -> MeOut:
    """Who is signed in (and the CSRF token of a cookie session)."""
    token = None if "authorization" in request.headers else csrf_token(request)
    return MeOut(username=user.username, role=user.role, csrf_token=token)


@router.get("/sources", response_model=list[SourceOut], responses=ERRORS)
def list_sources(project: ProjectDep) -> list[SourceOut]:
    """The project's warehouses."""
    return [
        SourceOut(
            name=s.name, type=str(s.config.type), description=getattr(s.config, "description", None)
        )
        for s in sorted(project.sources.values(), key=lambda s: s.name)
    ]


@router.get("/models", response_model=list[ModelSummary], responses=ERRORS)
def list_models(project: ProjectDep) -> list[ModelSummary]:
    """Every model with its source and primary key."""
    return [_model_summary(m, project) for _, m in sorted(project.models.items())]


@router.get("/models/{name}", response_model=ModelOut, responses=ERRORS)
def get_model(
    name: str,
    project: ProjectDep,
    preview: Annotated[int, Query(ge=0, le=MAX_PREVIEW, description="Rows to preview.")] = 0,
) -> ModelOut:
    """A model's SQL, columns and types, and optionally a preview of its first rows."""
    model = project.models.get(name)
    if model is None:
        raise not_found(f"model `{name}`")
    try:
        return describe_model(project, model, preview)
    except SourceError as exc:
        raise HTTPException(503, f"the warehouse could not run the model: {exc.message}") from None


@router.get("/destinations", response_model=list[DestinationOut], responses=ERRORS)
def list_destinations(project: ProjectDep) -> list[DestinationOut]:
    """Every destination with its config as written, secret values masked."""
    return [
        DestinationOut(name=d.name, type=str(d.config.type), config=masked_config(d))
        for _, d in sorted(project.destinations.items())
    ]


# The list of syncs is the same for every caller; it is built at most once per this many
# seconds (sooner when a run starts or ends here) and its JSON shared meanwhile.
SYNCS_TTL = 1.0
_SYNC_LIST = TypeAdapter(list[SyncSummary])
_RUN_LIST = TypeAdapter(list[RunOut])


def sync_summaries(project: Project, store: RunStore, runs: RunManager) -> list[SyncSummary]:
    """Every sync with its last run and whether it is running now."""
    last = queries.latest_runs(store)
    running = runs.running_syncs()
    upcoming = runs.timetable.next_runs()
    return [
        _sync_summary(s, last.get(n), n in running, upcoming.get(n))
        for n, s in sorted(project.syncs.items())
    ]


def _json(adapter: TypeAdapter[Any], value: Any) -> bytes:
    """``value`` as the API's JSON (the same bytes FastAPI would send for it)."""
    return bytes(SafeJSONResponse(adapter.dump_python(value, mode="json")).body)


def _sync_list_json(project: Project, store: RunStore, runs: RunManager) -> bytes:
    return _json(_SYNC_LIST, sync_summaries(project, store, runs))


@router.get("/syncs", response_model=list[SyncSummary], responses=ERRORS)
async def list_syncs(project: ProjectDep, store: StoreDep, runs: RunsDep) -> Response:
    """Every sync with its last run."""
    shared: SharedMemo[bytes] = memo(store, f"api_syncs:{id(project)}", SYNCS_TTL)
    body = shared.peek()
    if body is None:
        body = await run_in_threadpool(shared.get, lambda: _sync_list_json(project, store, runs))
    return Response(body, media_type="application/json")


@router.get("/syncs/{name}", response_model=SyncOut, responses=ERRORS)
def get_sync(
    name: str,
    project: ProjectDep,
    store: StoreDep,
    runs: RunsDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> SyncOut:
    """A sync's definition (parsed and as the file shows it) and its recent runs."""
    sync = project.syncs.get(name)
    if sync is None:
        raise not_found(f"sync `{name}`")
    history = store.runs(name, limit=limit)
    summary = _sync_summary(
        sync,
        history[0] if history else None,
        name in runs.running_syncs(),
        runs.timetable.next_runs().get(name),
    )
    try:
        file = sync.positions.file
        text = (file if file.is_absolute() else project.root / file).read_text(encoding="utf-8")
    except OSError:
        text = ""
    return SyncOut(
        **summary.model_dump(),
        definition=sync.config.model_dump(mode="json"),
        yaml=text,
        runs=[run_out(r) for r in history],
    )


@router.post("/syncs/{name}/runs", status_code=202, response_model=TriggerOut, responses=ERRORS)
def trigger_run(
    name: str, user: Operator, project: ProjectDep, runs: RunsDep, body: TriggerIn | None = None
) -> TriggerOut:
    """Start a run (operator or above); 409 when the sync is already running."""
    if name not in project.syncs:
        raise not_found(f"sync `{name}`")
    full = body.full_resync if body is not None else False
    run_id = runs.trigger(name, full_resync=full, user=user)
    return TriggerOut(run_id=run_id, sync=name)


# -- runs ------------------------------------------------------------------------------


@router.get("/runs", response_model=list[RunOut], responses=ERRORS)
def list_runs(
    store: StoreDep, sync: str | None = None, limit: Limit = 50, offset: Offset = 0
) -> Response:
    """Runs newest first, of one sync or all."""
    found = [run_out(r) for r in queries.list_runs(store, sync=sync, limit=limit, offset=offset)]
    # Serialised here: the models are already valid, and FastAPI would validate them again.
    return Response(_json(_RUN_LIST, found), media_type="application/json")


@router.get("/runs/{run_id}", response_model=RunDetail, responses=ERRORS)
def get_run(run_id: str, store: StoreDep, runs: RunsDep) -> RunDetail:
    """One run with its counts, rows per operation and status, and progress."""
    record = _run_or_404(store, run_id)
    counts = [
        RowCount(op=op, status=st, count=n)
        for (op, st), n in sorted(store.row_counts(record.run_id).items())
    ]
    return RunDetail(
        **run_out(record).model_dump(), row_counts=counts, progress=_progress(runs, record)
    )


@router.get("/runs/{run_id}/rows", response_model=list[RowOut], responses=ERRORS)
def get_rows(
    run_id: str,
    store: StoreDep,
    status: str | None = None,
    key: str | None = None,
    op: str | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[RowOut]:
    """Per-row outcomes, filtered by status, primary key or operation."""
    record = _run_or_404(store, run_id)
    rows = queries.run_rows_page(
        store, record.run_id, status=status, key=key, op=op, limit=limit, offset=offset
    )
    return [_row_out(r) for r in rows]


@router.get("/runs/{run_id}/calls", response_model=list[CallOut], responses=ERRORS)
def get_calls(
    run_id: str, store: StoreDep, limit: Limit = 100, offset: Offset = 0
) -> list[CallOut]:
    """The run's HTTP calls (bodies in the call detail), oldest first."""
    record = _run_or_404(store, run_id)
    calls = queries.calls_page(store, record.run_id, limit=limit, offset=offset)
    return [CallOut(**_call_out(c)) for c in calls]


@router.get("/runs/{run_id}/calls/{call_id}", response_model=CallDetail, responses=ERRORS)
def get_call(run_id: str, call_id: str, store: StoreDep) -> CallDetail:
    """One HTTP call with its (redacted) headers and bodies and the rows it carried."""
    record = _run_or_404(store, run_id)
    call = queries.get_call(store, record.run_id, call_id)
    if call is None:
        raise not_found(f"call `{call_id}` in run `{record.run_id}`")
    rows = queries.run_rows_page(store, record.run_id, call_id=call_id, limit=MAX_PAGE)
    return CallDetail(
        **_call_out(call),
        request_headers=dict(call.request_headers),
        response_headers=dict(call.response_headers),
        request_body=call.request_body,
        response_body=call.response_body,
        rows=[_row_out(r) for r in rows],
    )


@router.get("/runs/{run_id}/progress", response_model=ProgressOut, responses=ERRORS)
def get_progress(run_id: str, store: StoreDep, runs: RunsDep) -> ProgressOut:
    """Live progress of a run (final counts once it ended)."""
    return _progress(runs, _run_or_404(store, run_id))


@router.get("/runs/{run_id}/events", responses=ERRORS, response_class=StreamingResponse)
async def run_events(run_id: str, store: StoreDep, runs: RunsDep) -> StreamingResponse:
    """Server-sent events: a `progress` event twice a second until the run ends."""
    await run_in_threadpool(_run_or_404, store, run_id)

    async def stream() -> AsyncIterator[str]:
        for _ in range(2 * 3600 * 2):  # at most two hours
            record = await run_in_threadpool(_run_or_404, store, run_id)
            progress = _progress(runs, record)
            yield f"event: progress\ndata: {progress.model_dump_json()}\n\n"
            if progress.status != "running":
                return
            await asyncio.sleep(0.5)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"}
    )


@router.post("/runs/{run_id}/cancel", status_code=202, response_model=CancelOut, responses=ERRORS)
def cancel_run(run_id: str, user: Operator, store: StoreDep, runs: RunsDep) -> CancelOut:
    """Stop a run after its current batches (operator or above); 409 if it is not running."""
    record = _run_or_404(store, run_id)
    # A run that has stored its final status is over, even while its thread still tidies up.
    finished = record.status.value != "running"
    if finished or not runs.cancel(record.run_id, user=user):
        raise HTTPException(409, f"run `{record.run_id}` is not running in this server")
    return CancelOut(run_id=record.run_id, cancelled=True)


# -- users, tokens, audit (admin) -----------------------------------------------------


@router.get("/users", response_model=list[UserOut], responses=ERRORS)
def list_users(_: Admin, users: UsersDep) -> list[UserOut]:
    """Every user and role."""
    return [UserOut(id=u.id, username=u.username, role=u.role) for u in users.all()]


@router.post("/users", status_code=201, response_model=UserOut, responses=ERRORS)
def add_user(body: UserIn, admin: Admin, users: UsersDep) -> UserOut:
    """Create a user (admin)."""
    if users.by_name(body.username) is not None:
        raise HTTPException(409, f"user `{body.username}` already exists")
    try:
        user = users.add(body.username, body.password, body.role)
    except UserError as exc:
        raise HTTPException(400, exc.message) from None
    users.audit(admin.username, "user_add", user.username, {"role": user.role.value})
    return UserOut(id=user.id, username=user.username, role=user.role)


@router.patch("/users/{username}", response_model=UserOut, responses=ERRORS)
def set_role(username: str, body: RoleIn, admin: Admin, users: UsersDep) -> UserOut:
    """Change a user's role (admin)."""
    if not users.set_role(username, body.role):
        raise not_found(f"user `{username}`")
    users.audit(admin.username, "user_role", username, {"role": body.role.value})
    user = users.by_name(username)
    if user is None:
        raise not_found(f"user `{username}`")
    return UserOut(id=user.id, username=user.username, role=user.role)


@router.delete("/users/{username}", status_code=204, responses=ERRORS)
def remove_user(username: str, admin: Admin, users: UsersDep) -> Response:
    """Delete a user and their tokens (admin)."""
    if not users.remove(username):
        raise not_found(f"user `{username}`")
    users.audit(admin.username, "user_remove", username)
    return Response(status_code=204)


@router.get("/tokens", response_model=list[TokenOut], responses=ERRORS)
def list_tokens(_: Admin, users: UsersDep) -> list[TokenOut]:
    """Every API token (never the token itself)."""
    return [_token_out(t) for t in users.tokens()]


@router.post("/tokens", status_code=201, response_model=TokenCreated, responses=ERRORS)
def create_token(body: TokenIn, admin: Admin, users: UsersDep) -> TokenCreated:
    """Create an API token for a user (admin); the token is in this answer only."""
    try:
        token, info = users.create_token(body.username, body.name)
    except UserError as exc:
        raise HTTPException(
            404 if users.by_name(body.username) is None else 400, exc.message
        ) from None
    users.audit(
        admin.username, "token_create", body.username, {"token_id": info.id, "name": info.name}
    )
    return TokenCreated(**_token_out(info).model_dump(), token=token)


@router.delete("/tokens/{token_id}", status_code=204, responses=ERRORS)
def revoke_token(token_id: int, admin: Admin, users: UsersDep) -> Response:
    """Revoke an API token (admin)."""
    if not users.revoke_token(token_id):
        raise not_found(f"active token {token_id}")
    users.audit(admin.username, "token_revoke", str(token_id))
    return Response(status_code=204)


@router.get("/audit", response_model=list[AuditOut], responses=ERRORS)
def list_audit(_: Admin, users: UsersDep, limit: Limit = 100, offset: Offset = 0) -> list[AuditOut]:
    """The audit log, newest first (admin)."""
    return [_audit_out(a) for a in users.audit_entries(limit=limit, offset=offset)]


# -- OpenAPI and docs ------------------------------------------------------------------


@docs_router.get("/api/v1/openapi.json")
def openapi(request: Request, _: CurrentUser) -> JSONResponse:
    """The OpenAPI document of the API."""
    return JSONResponse(request.app.openapi())


@docs_router.get("/api/docs", response_class=HTMLResponse)
def docs(request: Request, _: CurrentUser) -> HTMLResponse:
    """A plain list of the API's operations (no third-party scripts: the CSP forbids them)."""
    spec = request.app.openapi()
    rows = "".join(
        f"<tr><td>{escape(method.upper())}</td><td><code>{escape(path)}</code></td>"
        f"<td>{escape(op.get('summary', ''))}</td><td>{escape(op.get('description', ''))}</td></tr>"
        for path, item in spec.get("paths", {}).items()
        for method, op in item.items()
    )
    return HTMLResponse(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Backhaul API</title>"
        '<link rel="stylesheet" href="/static/app.css"></head><body><main>'
        "<h1>Backhaul REST API</h1><p>Machine-readable: "
        '<a href="/api/v1/openapi.json">/api/v1/openapi.json</a>. Authenticate with '
        "<code>Authorization: Bearer &lt;api token&gt;</code>.</p>"
        "<table><thead><tr><th>method</th><th>path</th><th>summary</th><th>description</th>"
        f"</tr></thead><tbody>{rows}</tbody></table></main></body></html>"
    )
