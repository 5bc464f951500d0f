"""Every route refuses anonymous callers and roles without the right; CSRF; inert markup;
security headers; bad input gets a 4xx JSON answer, never a 500; no secret in any answer."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from starlette.routing import Route
from tests.web.conftest import XSS
from tests.web.conftest import XSS_KEY
from tests.web.conftest import WebEnv

from backhaul.web.auth import Role
from backhaul.web.security import CONTENT_SECURITY_POLICY

Client = Callable[..., httpx.Client]
PUBLIC = {"/login"}
STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
# Sign-out is allowed to every signed-in user; it only ends their own session. Previewing an
# audience draft is a POST (the draft is the body) that changes nothing.
ANY_ROLE = {("POST", "/logout"), ("POST", "/api/v1/audiences/preview")}
# Authenticated by an HMAC signature of the body, not by a user: anonymous callers get 401
# like everywhere, and roles and CSRF do not apply (tests/integrations checks signatures).
SIGNED = {("POST", "/api/v1/dbt-cloud/webhook")}
_PARAM = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")


def _flatten(items: list[Any]) -> Iterator[Any]:
    for route in items:
        # Newer FastAPI keeps an included router as one entry; our routers carry no
        # include prefix, so their routes' own paths are the served paths.
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _flatten(list(inner.routes))
        else:
            yield route


def routes(env: WebEnv) -> Iterator[tuple[str, str]]:
    """(method, path template) of every route of the app but static files and sign-in."""
    for route in _flatten(list(env.app.routes)):
        if not isinstance(route, APIRoute | Route) or route.path in PUBLIC:
            continue
        for method in sorted(route.methods or ()):
            if method != "HEAD":
                yield method, route.path


def fill(path: str, value: str = "1") -> str:
    return _PARAM.sub(value, path)


def test_the_app_has_the_expected_routes(web_env: WebEnv) -> None:
    found = set(routes(web_env))
    assert ("GET", "/api/v1/runs/{run_id}/calls/{call_id}") in found
    assert ("POST", "/api/v1/syncs/{name}/runs") in found
    assert ("DELETE", "/api/v1/users/{username}") in found
    assert len(found) > 20


def test_every_route_refuses_anonymous_requests(web_env: WebEnv, client_for: Client) -> None:
    anonymous = client_for(None)
    for method, path in routes(web_env):
        url = fill(path)
        if path.startswith("/api/v1"):
            answer = anonymous.request(method, url)
            assert answer.status_code == 401, (method, path, answer.status_code)
            assert answer.json()["error"]["code"] == "unauthorized"
        else:
            answer = anonymous.request(method, url, headers={"Accept": "text/html"})
            assert answer.status_code == 303, (method, path, answer.status_code)
            assert answer.headers["location"].startswith("/login?next="), (method, path)


def test_a_viewer_cannot_change_anything(web_env: WebEnv, client_for: Client) -> None:
    viewer = client_for(Role.VIEWER)
    viewer_token = client_for(Role.VIEWER, bearer=True)
    checked = 0
    for method, path in routes(web_env):
        if method not in STATE_CHANGING or (method, path) in ANY_ROLE | SIGNED:
            continue
        for client in (viewer, viewer_token):
            answer = client.request(method, fill(path), json={})
            assert answer.status_code == 403, (method, path, answer.status_code, answer.text)
            assert answer.json()["error"]["code"] == "forbidden"
        checked += 1
    assert checked >= 6


def test_admin_routes_need_the_admin_role(client_for: Client) -> None:
    for role in (Role.OPERATOR, Role.EDITOR):
        client = client_for(role, bearer=True)
        for path in ("/api/v1/users", "/api/v1/tokens", "/api/v1/audit"):
            assert client.get(path).status_code == 403
    admin = client_for(Role.ADMIN, bearer=True)
    assert admin.get("/api/v1/users").status_code == 200


def test_state_changes_without_the_csrf_token_are_refused(
    web_env: WebEnv, client_for: Client
) -> None:
    admin = client_for(Role.ADMIN, csrf=False)
    checked = 0
    for method, path in routes(web_env):
        if method not in STATE_CHANGING or (method, path) in SIGNED:
            continue
        answer = admin.request(method, fill(path), json={})
        assert answer.status_code == 403, (method, path, answer.status_code)
        assert answer.json()["error"]["code"] == "csrf_failed"
        form = admin.request(method, fill(path), data={"csrf_token": "forged"})
        assert form.status_code == 403, (method, path, form.status_code)
        checked += 1
    assert checked >= 7
    # The same requests with a wrong header are refused too, with the right one accepted.
    wrong = admin.post("/api/v1/runs/1/cancel", headers={"X-CSRF-Token": "forged"})
    assert wrong.status_code == 403
    token = admin.get("/api/v1/me").json()["csrf_token"]
    right = admin.post("/api/v1/runs/0000000000000000/cancel", headers={"X-CSRF-Token": token})
    assert right.status_code == 404


def _page_urls(env: WebEnv) -> Iterator[str]:
    values = {
        "name": ["xss_to_hook", "xss_probe", "pqls_to_webhook"],
        "run_id": [env.runs["xss_to_hook"], env.runs["pqls_to_webhook"]],
    }
    for method, path in routes(env):
        if method != "GET" or path.startswith("/api/"):
            continue
        names = _PARAM.findall(path)
        if "call_id" in names:
            continue  # covered below, with the call ids of each run
        choices = [values.get(n, ["1"]) for n in names]
        for combo in itertools.product(*choices):
            url = path
            for name, value in zip(names, combo, strict=True):
                url = re.sub(r"\{" + name + r"(?::[^}]*)?\}", value, url)
            yield url


def test_markup_from_models_and_destination_errors_is_inert(
    web_env: WebEnv, client_for: Client
) -> None:
    viewer = client_for(Role.VIEWER)
    run_id = web_env.runs["xss_to_hook"]
    rows = viewer.get(f"/api/v1/runs/{run_id}/rows", params={"status": "rejected"})
    assert rows.json()[0]["error"] == XSS  # the destination's error, stored as it came
    call_id = rows.json()[0]["call_id"]
    api_urls = [
        "/api/v1/models/xss_probe?preview=10",
        f"/api/v1/runs/{run_id}/rows",
        f"/api/v1/runs/{run_id}/calls/{call_id}",
        f"/api/v1/runs/{run_id}/calls",
    ]
    for url in api_urls:
        answer = viewer.get(url)
        assert answer.status_code == 200, url
        assert "<script" not in answer.text, url
    pages = list(_page_urls(web_env))
    pages += [
        re.sub(
            r"\{[^}]+\}",
            lambda m: {"{run_id}": run_id, "{call_id}": call_id}.get(m.group(0), "1"),
            path,
        )
        for method, path in routes(web_env)
        if method == "GET" and not path.startswith("/api/") and "{call_id}" in path
    ]
    pages += [f"/models/xss_probe?preview={n}" for n in (10, 100)]
    shown = 0
    for url in pages:
        answer = viewer.get(url, headers={"Accept": "text/html"})
        assert answer.status_code < 500, url
        assert XSS not in answer.text, url
        assert "<script>alert" not in answer.text, url
        if "&lt;script&gt;" in answer.text or "&#34;xss&#34;" in answer.text:
            shown += 1
    assert XSS_KEY
    if any(u.startswith(("/models/", "/runs/")) for u in pages):
        assert shown > 0, "no page showed the escaped value"


def test_security_headers_on_pages_and_api(client_for: Client) -> None:
    viewer = client_for(Role.VIEWER)
    for url in ("/api/v1/syncs", "/login", "/api/docs", "/"):
        answer = viewer.get(url, headers={"Accept": "text/html"})
        assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, url
        assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"{not json", "application/json", 400, "malformed_json"),
        (b'{"full_resync": "maybe"}', "application/json", 422, "validation_error"),
        (b"[1, 2]", "application/json", 422, "validation_error"),
        (b"\xff\xfe\x00", "application/json", 400, "bad_request"),
    ],
)
def test_bad_json_bodies_get_a_4xx_json_error(
    client_for: Client, body: bytes, content_type: str, status: int, code: str
) -> None:
    operator = client_for(Role.OPERATOR, bearer=True)
    answer = operator.post(
        "/api/v1/syncs/pql_export/runs", content=body, headers={"Content-Type": content_type}
    )
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["code"] == code


def test_oversized_bodies_are_refused_with_413(web_env: WebEnv, client_for: Client) -> None:
    limit = web_env.app.state.settings.max_body_bytes
    admin = client_for(Role.ADMIN, bearer=True)
    big = b'{"username": "' + b"a" * limit + b'"}'
    answer = admin.post("/api/v1/users", content=big, headers={"Content-Type": "application/json"})
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "payload_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies while reading
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536

    streamed = admin.post(
        "/api/v1/users", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert streamed.status_code == 413
    assert streamed.json()["error"]["code"] == "payload_too_large"


def test_unknown_ids_and_odd_parameters_never_cause_a_500(
    web_env: WebEnv, client_for: Client
) -> None:
    admin = client_for(Role.ADMIN, bearer=True)
    for method, path in routes(web_env):
        if not path.startswith("/api/v1") or path.endswith("/events"):
            continue
        for value in ("does-not-exist", "%00", "0" * 300, "-1"):
            answer = admin.request(method, fill(path, value), params={"limit": "x"}, json={})
            assert 400 <= answer.status_code < 500 or answer.status_code == 200, (
                method,
                path,
                value,
                answer.status_code,
            )
            assert answer.headers["content-type"].startswith("application/json"), (method, path)
            if answer.status_code >= 400:
                assert set(answer.json()["error"]) >= {"code", "message"}


def test_no_response_so_far_carried_a_destination_secret(web_env: WebEnv) -> None:
    # The webhook's secrets were used by the seeded runs, so they are in the process.
    assert web_env.receiver.calls
    assert web_env.scanner.scanned > 50
    assert web_env.scanner.leaks == []
