"""``GET /metrics``: Prometheus metrics of every run in the metadata store.

Needs a viewer (Prometheus sends an API token: ``authorization: {credentials: <token>}`` in
its scrape config). See docs/metrics.md.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi import Depends
from fastapi import Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from backhaul.observe.metrics import CONTENT_TYPE
from backhaul.observe.metrics import exposition
from backhaul.web.auth import Role
from backhaul.web.auth import require

router = APIRouter(include_in_schema=False, dependencies=[Depends(require(Role.VIEWER))])


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """The metrics in Prometheus' text format (read from the store off the event loop)."""
    body = await run_in_threadpool(exposition, request.app.state.metrics)
    return Response(body, media_type=CONTENT_TYPE)


__all__ = ["router"]
