"""The dbt Cloud webhook receiver: ``POST /api/v1/dbt-cloud/webhook``.

A ``job.run.completed`` event whose ``Authorization`` header signs its body runs the syncs
whose models read a dbt node that the dbt Cloud run built successfully (the rule of
``backhaul run --after-dbt``), and answers 202 with their run ids. A sync already running
is not started twice: the event coalesces with that run and one more run follows it.
A wrong or missing signature gets 401 and runs nothing. See docs/orchestrators.md.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from backhaul.config.models import DbtCloudConfig
from backhaul.config.project import Project
from backhaul.config.secrets import resolve
from backhaul.dbt.cloud import DbtCloudClient
from backhaul.dbt.cloud import parse_event
from backhaul.dbt.cloud import verify
from backhaul.dbt.run_results import choose_syncs
from backhaul.errors import BadEvent
from backhaul.errors import CloudApiError
from backhaul.errors import ConfigError
from backhaul.web.auth import Role
from backhaul.web.auth import User
from backhaul.web.deps import get_project
from backhaul.web.deps import get_runs

router = APIRouter(prefix="/api/v1", include_in_schema=False)

# Who the audit log says triggered the runs an event started.
WEBHOOK_USER = User(id=0, username="dbt-cloud-webhook", role=Role.OPERATOR)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _settings(project: Project) -> DbtCloudConfig | JSONResponse:
    config = project.config.dbt_cloud
    if config is None:
        # Like any API route called without credentials: no secret means nothing can sign.
        return _error(
            401,
            "unauthorized",
            "this project accepts no dbt Cloud webhooks: add a `dbt_cloud` section with "
            "`webhook_secret` to backhaul.yml",
        )
    try:
        resolved, _ = resolve(config, positions=project.positions, key_prefix="dbt_cloud")
    except ConfigError as exc:
        return _error(503, "not_configured", exc.message)
    return resolved


@router.post("/dbt-cloud/webhook", status_code=202)
async def dbt_cloud_webhook(request: Request) -> JSONResponse:
    """Run the syncs a finished dbt Cloud job rebuilt (202 with their run ids)."""
    project = get_project(request)
    runs = get_runs(request)
    settings = _settings(project)
    if isinstance(settings, JSONResponse):
        return settings
    body = await request.body()
    if not verify(settings.webhook_secret, body, request.headers.get("authorization")):
        return _error(
            401,
            "unauthorized",
            "the Authorization header is not the HMAC-SHA256 of the body with the webhook "
            "secret; check `dbt_cloud.webhook_secret`",
        )
    try:
        event = parse_event(body)
    except BadEvent as exc:
        return _error(400, "bad_event", exc.message)
    answer: dict[str, Any] = {"event_id": event.event_id, "dbt_run_id": event.run_id}
    if not event.completed:
        return JSONResponse({**answer, "runs": [], "ignored": f"event `{event.event_type}`"})
    if settings.job_ids and event.job_id not in settings.job_ids:
        return JSONResponse(
            {**answer, "runs": [], "ignored": f"job {event.job_id} is not in dbt_cloud.job_ids"}
        )
    client = DbtCloudClient(settings.base_url, settings.api_token)
    try:
        results = await run_in_threadpool(client.run_results, event.account_id, event.run_id)
    except CloudApiError as exc:
        return _error(502, "dbt_cloud_unavailable", exc.message)
    candidates = [s for _, s in sorted(project.syncs.items()) if s.config.enabled]
    choices = await run_in_threadpool(choose_syncs, project, results, candidates)
    started: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    for choice in choices:
        if not choice.run:
            skipped.append({"sync": choice.sync, "reason": choice.reason})
            continue
        run_id, coalesced = await run_in_threadpool(
            runs.trigger_coalesced, choice.sync, user=WEBHOOK_USER
        )
        started.append(
            {"sync": choice.sync, "run_id": run_id, "coalesced": coalesced, "reason": choice.reason}
        )
    return JSONResponse({**answer, "runs": started, "skipped": skipped}, status_code=202)


__all__ = ["WEBHOOK_USER", "router"]
