"""Fixtures for the web app: a demo project, users of every role, a live server on loopback.

The project is the demo (warehouse, SQLite CRM, webhook, CSV export) plus a model whose
value is a ``<script>`` tag. The webhook destination takes two secrets from environment
variables; :class:`SecretScanner` wraps the app and records any response body that
contains one, and the session fails at teardown if any did.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
from fastapi import FastAPI

from backhaul import api
from backhaul.demo.project import SIGNING_SECRET_ENV
from backhaul.demo.project import WAREHOUSE_FILE
from backhaul.demo.project import write_demo_project
from backhaul.demo.warehouse import build_warehouse
from backhaul.state.accounts import AccountStore
from backhaul.testing.receiver import WebhookReceiver
from backhaul.testing.server import LoopbackServer
from backhaul.web.app import WebSettings
from backhaul.web.app import close_app
from backhaul.web.app import create_app
from backhaul.web.auth import Role

TOKEN_ENV = "BACKHAUL_WEB_TEST_HOOK_TOKEN"
XSS = '<script>alert("xss")</script>'
XSS_KEY = "xss-1"
ROLES = tuple(Role)
_CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


class SecretScanner:
    """ASGI wrapper that records every response whose body contains a secret value."""

    def __init__(self, app: FastAPI, secrets: list[str]) -> None:
        self.app = app
        self.secrets = secrets
        self.leaks: list[str] = []
        self.scanned = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []

        async def wrapped(message: Any) -> None:
            if message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    self._scan(scope["path"], b"".join(chunks))
            await send(message)

        await self.app(scope, receive, wrapped)

    def _scan(self, path: str, body: bytes) -> None:
        self.scanned += 1
        text = body.decode("utf-8", "replace")
        for secret in self.secrets:
            if secret in text:
                self.leaks.append(f"{path} contains a destination secret")


@dataclass
class WebEnv:
    """Everything the web tests need; ``url`` is the live server's base URL."""

    url: str
    project_dir: Path
    app: FastAPI
    receiver: WebhookReceiver
    scanner: SecretScanner
    passwords: dict[Role, str]
    tokens: dict[Role, str]
    secrets: list[str]
    runs: dict[str, str] = field(default_factory=dict)  # sync -> a finished run id
    rejected_key: str = ""

    @staticmethod
    def username(role: Role | str) -> str:
        return f"{Role(role).value}_user"


def _write_extra_files(root: Path, webhook_url: str) -> None:
    (root / "destinations" / "events_hook.yml").write_text(
        "# Posts changed records as JSON; both secrets come from the environment.\n"
        "type: webhook\n"
        f"url: {json.dumps(webhook_url)}\n"
        "mode: batch\n"
        "batch_size: 50\n"
        f'signing_secret: "${{env:{SIGNING_SECRET_ENV}}}"\n'
        "headers:\n"
        f'  Authorization: "Bearer ${{env:{TOKEN_ENV}}}"\n',
        encoding="utf-8",
    )
    (root / "models" / "xss_probe.yml").write_text(
        "source: warehouse\nprimary_key: user_id\ndescription: A value that is markup.\n",
        encoding="utf-8",
    )
    (root / "models" / "xss_probe.sql").write_text(
        f"SELECT '{XSS_KEY}' AS user_id, '{XSS}' AS email\n", encoding="utf-8"
    )
    (root / "syncs" / "xss_to_hook.yml").write_text(
        "model: xss_probe\ndestination: events_hook\nmode: upsert\nmatch:\n  fields: [user_id]\n"
        "mappings:\n  - {column: user_id, field: user_id}\n  - {column: email, field: email}\n",
        encoding="utf-8",
    )


def _first_user(root: Path) -> str:
    project = api.load_project(root)
    sql = project.models["pql_users"].sql
    with duckdb.connect(str(root / WAREHOUSE_FILE), read_only=True) as con:
        row = con.execute(f"SELECT user_id FROM ({sql}) ORDER BY user_id LIMIT 1").fetchone()
    assert row is not None
    return str(row[0])


def _seed_runs(env: WebEnv) -> None:
    env.rejected_key = _first_user(env.project_dir)
    env.receiver.faults.reject({env.rejected_key: "email is not deliverable", XSS_KEY: XSS})
    project = api.load_project(env.project_dir)
    for sync in ("pql_to_crm", "pqls_to_webhook", "xss_to_hook"):
        summary = api.run(project, sync, trigger="test")
        env.runs[sync] = summary.run_id


def login(client: httpx.Client, username: str, password: str) -> httpx.Response:
    """Sign ``client`` in through the login form (GET for the CSRF token, then POST)."""
    page = client.get("/login")
    found = _CSRF_INPUT.search(page.text)
    assert found, "the login form has no csrf_token field"
    return client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": found.group(1)},
    )


def parquet_log(root: Path, run_id: str) -> Path:
    """The run's row log once it is Parquet: the run is marked finished first, and its
    stream is turned into Parquet right after (state/rowlog.py)."""
    for _ in range(240):
        found = list(root.rglob(f"{run_id}/outcomes.parquet"))
        if found:
            return found[0]
        time.sleep(0.25)
    raise AssertionError(f"run {run_id} has no Parquet row log")


@pytest.fixture(scope="session")
def web_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebEnv]:
    """A demo project with seeded runs, users of every role and a live server."""
    suffix = uuid.uuid4().hex
    secrets = [f"whsec-{suffix}", f"hooktoken-{suffix}"]
    saved = {name: os.environ.get(name) for name in (SIGNING_SECRET_ENV, TOKEN_ENV)}
    os.environ[SIGNING_SECRET_ENV], os.environ[TOKEN_ENV] = secrets
    root = tmp_path_factory.mktemp("web-project")
    receiver = WebhookReceiver(key_field="user_id", secret=secrets[0], token=secrets[1]).start()
    server: LoopbackServer | None = None
    app: FastAPI | None = None
    try:
        write_demo_project(root, webhook_url=receiver.url)
        build_warehouse(root / WAREHOUSE_FILE, accounts=30)
        _write_extra_files(root, receiver.url)
        app = create_app(root, settings=WebSettings(login_rate=5))
        scanner = SecretScanner(app, secrets)
        server = LoopbackServer(scanner, name="backhaul-web").start()
        passwords = {role: f"{role.value}-pw-{suffix[:12]}" for role in ROLES}
        tokens: dict[Role, str] = {}
        for role in ROLES:
            app.state.users.add(WebEnv.username(role), passwords[role], role)
            tokens[role], _ = app.state.users.create_token(WebEnv.username(role), "tests")
        env = WebEnv(server.url, root, app, receiver, scanner, passwords, tokens, secrets)
        _seed_runs(env)
        yield env
        assert not scanner.leaks, scanner.leaks
    finally:
        if server is not None:
            server.stop()
        if app is not None:
            close_app(app)
        receiver.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(autouse=True)
def _fresh_sign_in_counts(request: pytest.FixtureRequest) -> None:
    """Each test starts with no failed sign-ins counted: the counts live in the shared
    project's store, where one test's wrong passwords would throttle the next test."""
    if "web_env" not in request.fixturenames:
        return
    env: WebEnv = request.getfixturevalue("web_env")
    AccountStore(env.app.state.store).prune_sign_in_failures(datetime.now(UTC) + timedelta(days=1))


@pytest.fixture(scope="session")
def live_server(web_env: WebEnv) -> WebEnv:
    """The running server (``.url``) and its project, users and seeded runs."""
    return web_env


def _check_secrets(secrets: list[str]) -> Callable[[httpx.Response], None]:
    def hook(response: httpx.Response) -> None:
        response.read()
        for secret in secrets:
            assert secret not in response.text, f"{response.url} returned a destination secret"

    return hook


@pytest.fixture
def client_for(web_env: WebEnv) -> Iterator[Callable[..., httpx.Client]]:
    """``client_for(role)``: an httpx client signed in as that role's user (``None``:
    anonymous). Cookie-session clients send the CSRF header unless ``csrf=False``;
    ``bearer=True`` authenticates with the role's API token instead of a session."""
    clients: list[httpx.Client] = []

    def make(role: Role | str | None, *, csrf: bool = True, bearer: bool = False) -> httpx.Client:
        client = httpx.Client(
            base_url=web_env.url,
            follow_redirects=False,
            timeout=30,
            event_hooks={"response": [_check_secrets(web_env.secrets)]},
        )
        clients.append(client)
        if role is None:
            return client
        role = Role(role)
        if bearer:
            client.headers["Authorization"] = f"Bearer {web_env.tokens[role]}"
            return client
        answer = login(client, WebEnv.username(role), web_env.passwords[role])
        assert answer.status_code == 303, answer.text
        if csrf:
            me = client.get("/api/v1/me")
            assert me.status_code == 200, me.text
            client.headers["X-CSRF-Token"] = me.json()["csrf_token"]
        return client

    yield make
    for client in clients:
        client.close()
