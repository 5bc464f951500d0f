"""What every resource of the REST API shares: the JSON response, error bodies, paging and
roles, and the router each resource module starts from."""

from __future__ import annotations

import json
from typing import Annotated
from typing import Any

from fastapi import APIRouter
from fastapi import Depends
from fastapi import HTTPException
from fastapi import Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from pydantic import TypeAdapter

from backhaul.web.auth import Role
from backhaul.web.auth import require

MAX_PAGE = 500
MASK = "***"


class SafeJSONResponse(JSONResponse):
    """JSON with ``<``, ``>`` and ``&`` escaped, so no value can become markup if sniffed."""

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        text = text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
        return text.encode("utf-8")


def resource_router() -> APIRouter:
    """The router of one resource; :mod:`backhaul.web.api` mounts it under ``/api/v1``."""
    return APIRouter(default_response_class=SafeJSONResponse)


def json_router(prefix: str, role: Role = Role.VIEWER, tag: str | None = None) -> APIRouter:
    """A router of JSON answers under ``prefix``, for users whose role allows ``role``."""
    return APIRouter(
        prefix=prefix,
        default_response_class=SafeJSONResponse,
        dependencies=[Depends(require(role))],
        tags=[tag] if tag else None,
    )


Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorOut(BaseModel):
    error: ErrorBody


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (400, 401, 403, 404, 409, 413, 422, 429)
}


def not_found(what: str) -> HTTPException:
    return HTTPException(404, f"no {what}")


def jsonable(value: Any) -> Any:
    """``value`` with anything JSON cannot hold (dates, decimals, ...) as its text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return str(value)


def json_bytes(adapter: TypeAdapter[Any], value: Any) -> bytes:
    """``value`` as the API's JSON (the same bytes FastAPI would send for it)."""
    return bytes(SafeJSONResponse(adapter.dump_python(value, mode="json")).body)


__all__ = [
    "ERRORS",
    "MASK",
    "MAX_PAGE",
    "ErrorBody",
    "ErrorOut",
    "Limit",
    "Offset",
    "SafeJSONResponse",
    "json_bytes",
    "jsonable",
    "not_found",
    "resource_router",
]
