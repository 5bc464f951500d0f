"""The OpenAPI document of the API and a plain page listing its operations."""

from __future__ import annotations

from html import escape

from fastapi import APIRouter
from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.responses import JSONResponse

from backhaul.web.auth import CurrentUser

router = APIRouter(include_in_schema=False)


@router.get("/api/v1/openapi.json")
def openapi(request: Request, _: CurrentUser) -> JSONResponse:
    """The OpenAPI document of the API."""
    return JSONResponse(request.app.openapi())


@router.get("/api/docs", response_class=HTMLResponse)
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


__all__ = ["router"]
