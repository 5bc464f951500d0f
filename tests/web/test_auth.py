"""Sign-in, sessions, API tokens, roles, rate limiting and the audit log."""

from __future__ import annotations

import stat
import uuid
from collections.abc import Callable

import httpx
from tests.web.conftest import WebEnv
from tests.web.conftest import login

from backhaul.web.app import SECRET_FILE
from backhaul.web.auth import Role


def test_roles_are_ordered() -> None:
    assert Role.ADMIN.allows(Role.OPERATOR)
    assert Role.OPERATOR.allows(Role.VIEWER)
    assert Role.EDITOR.allows(Role.EDITOR)
    assert not Role.VIEWER.allows(Role.OPERATOR)
    assert not Role.EDITOR.allows(Role.ADMIN)


def test_login_sets_a_signed_httponly_samesite_cookie(web_env: WebEnv) -> None:
    with httpx.Client(base_url=web_env.url) as client:
        answer = login(client, "viewer_user", web_env.passwords[Role.VIEWER])
        assert answer.status_code == 303
        assert answer.headers["location"] == "/"
        cookie = answer.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie
        assert "secure" not in cookie  # plain http on loopback
        me = client.get("/api/v1/me").json()
        assert me["username"] == "viewer_user" and me["role"] == "viewer"
        assert me["csrf_token"]


def test_forwarded_proto_from_loopback_is_not_believed_by_default(web_env: WebEnv) -> None:
    # No trusted proxy is configured, so a client cannot claim https (test_sessions.py
    # covers a configured proxy, whose X-Forwarded-Proto does make the cookie Secure).
    headers = {"X-Forwarded-Proto": "https"}
    with httpx.Client(base_url=web_env.url, headers=headers) as client:
        answer = client.get("/login")
    assert answer.status_code == 200
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "secure" not in cookie


def test_wrong_password_is_refused_and_audited(
    web_env: WebEnv, client_for: Callable[..., httpx.Client]
) -> None:
    with httpx.Client(base_url=web_env.url) as client:
        answer = login(client, "operator_user", "not-the-password")
        assert answer.status_code == 401
        assert "Wrong username or password" in answer.text
        assert client.get("/api/v1/me").status_code == 401
    entries = client_for(Role.ADMIN).get("/api/v1/audit").json()
    assert any(e["action"] == "login_failed" and e["target"] == "operator_user" for e in entries)


def test_login_is_rate_limited_per_ip_and_username(web_env: WebEnv) -> None:
    name = f"probe-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=web_env.url) as client:
        statuses = [login(client, name, "guess-guess").status_code for _ in range(6)]
        assert statuses == [401] * 5 + [429]
        throttled = login(client, name, "guess-guess")
        assert throttled.status_code == 429
        assert int(throttled.headers["retry-after"]) > 0
        # Another username from the same address is not affected.
        ok = login(client, "viewer_user", web_env.passwords[Role.VIEWER])
        assert ok.status_code == 303


def test_login_needs_the_csrf_token_and_never_redirects_off_site(web_env: WebEnv) -> None:
    with httpx.Client(base_url=web_env.url) as client:
        client.get("/login")
        refused = client.post(
            "/login", data={"username": "viewer_user", "password": web_env.passwords[Role.VIEWER]}
        )
        assert refused.status_code == 403
        page = client.get("/login?next=//evil.example/")
        token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
        answer = client.post(
            "/login",
            data={
                "username": "viewer_user",
                "password": web_env.passwords[Role.VIEWER],
                "csrf_token": token,
                "next": "//evil.example/",
            },
        )
        assert answer.status_code == 303
        assert answer.headers["location"] == "/"


def test_logout_ends_the_session(client_for: Callable[..., httpx.Client]) -> None:
    client = client_for(Role.VIEWER)
    assert client.get("/api/v1/me").status_code == 200
    out = client.post("/logout")
    assert out.status_code == 303
    assert client.get("/api/v1/me").status_code == 401


def test_api_tokens_authenticate_and_revoked_ones_do_not(
    web_env: WebEnv, client_for: Callable[..., httpx.Client]
) -> None:
    bearer = client_for(Role.OPERATOR, bearer=True)
    assert bearer.get("/api/v1/me").json()["role"] == "operator"
    admin = client_for(Role.ADMIN)
    created = admin.post("/api/v1/tokens", json={"username": "viewer_user", "name": "temp"})
    assert created.status_code == 201, created.text
    token = created.json()["token"]
    assert token.startswith("bh_")
    listed = admin.get("/api/v1/tokens").text
    assert token not in listed
    with httpx.Client(base_url=web_env.url, headers={"Authorization": f"Bearer {token}"}) as c:
        assert c.get("/api/v1/me").json()["username"] == "viewer_user"
        assert admin.delete(f"/api/v1/tokens/{created.json()['id']}").status_code == 204
        assert c.get("/api/v1/me").status_code == 401
    for header in ("Bearer bh_not-a-token", "Basic dXNlcjpwYXNz", "Bearer"):
        with httpx.Client(base_url=web_env.url, headers={"Authorization": header}) as c:
            answer = c.get("/api/v1/syncs")
            assert answer.status_code == 401
            assert answer.json()["error"]["code"] == "unauthorized"


def test_role_change_and_removal_end_the_users_sessions(
    web_env: WebEnv, client_for: Callable[..., httpx.Client]
) -> None:
    admin = client_for(Role.ADMIN)
    name = f"temp-{uuid.uuid4().hex[:8]}"
    made = admin.post(
        "/api/v1/users", json={"username": name, "password": "temporary-pass", "role": "operator"}
    )
    assert made.status_code == 201, made.text
    assert (
        admin.post(
            "/api/v1/users", json={"username": name, "password": "temporary-pass"}
        ).status_code
        == 409
    )
    with httpx.Client(base_url=web_env.url) as client:
        assert login(client, name, "temporary-pass").status_code == 303
        assert client.get("/api/v1/me").json()["role"] == "operator"
        changed = admin.patch(f"/api/v1/users/{name}", json={"role": "viewer"})
        assert changed.status_code == 200 and changed.json()["role"] == "viewer"
        # A role change ends the user's sessions; they sign in again under the new role.
        assert client.get("/api/v1/me").status_code == 401
        assert login(client, name, "temporary-pass").status_code == 303
        assert client.get("/api/v1/me").json()["role"] == "viewer"
        assert admin.delete(f"/api/v1/users/{name}").status_code == 204
        assert client.get("/api/v1/me").status_code == 401
    actions = {(e["action"], e["target"]) for e in admin.get("/api/v1/audit").json()}
    assert {("user_add", name), ("user_role", name), ("user_remove", name)} <= actions


def test_the_signing_key_is_kept_private_in_the_state_folder(web_env: WebEnv) -> None:
    path = web_env.project_dir / ".backhaul" / SECRET_FILE
    assert path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_text().strip()) >= 32
