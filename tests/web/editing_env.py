"""A fresh project in a new Git repository for the editors' tests: only ``backhaul.yml``
committed, a DuckDB warehouse (ignored by Git), the HubSpot emulator on loopback, the web
app served on loopback with a user of every role, and the token in the environment."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

import duckdb
import httpx
from tests.web.conftest import login

from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.hubspot import HubSpotEmulator
from backhaul.testing.server import LoopbackServer
from backhaul.web.app import WebSettings
from backhaul.web.app import close_app
from backhaul.web.app import create_app
from backhaul.web.auth import Role

TOKEN_ENV = "BACKHAUL_EDIT_TEST_HUBSPOT_TOKEN"


@dataclass
class EditEnv:
    root: Path
    url: str
    hubspot: HubSpotEmulator
    hubspot_url: str
    token: str
    passwords: dict[Role, str]
    clients: list[httpx.Client] = field(default_factory=list)

    @staticmethod
    def username(role: Role) -> str:
        return f"{role.value}_user"

    def client(self, role: Role) -> httpx.Client:
        client = httpx.Client(base_url=self.url, timeout=60)
        self.clients.append(client)
        answer = login(client, self.username(role), self.passwords[role])
        assert answer.status_code == 303, answer.text
        client.headers["X-CSRF-Token"] = client.get("/api/v1/me").json()["csrf_token"]
        return client

    def git(self, *args: str) -> str:
        return git(self.root, *args)


def git(root: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "setup", "GIT_AUTHOR_EMAIL": "setup@example.com"}
    env |= {"GIT_COMMITTER_NAME": "setup", "GIT_COMMITTER_EMAIL": "setup@example.com"}
    done = subprocess.run(
        ["git", *args], cwd=root, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout


def make_project(root: Path) -> None:
    root.mkdir(parents=True)
    (root / "backhaul.yml").write_text("name: edited\nversion: 1\n", encoding="utf-8")
    (root / ".gitignore").write_text(".backhaul/\n*.duckdb\n*.duckdb.wal\n", encoding="utf-8")
    with duckdb.connect(str(root / "warehouse.duckdb")) as con:
        con.execute(
            "CREATE TABLE leads AS SELECT * FROM (VALUES "
            "(1, 'ann@example.com', 'Ann'), (2, 'bob@example.com', 'Bob'), "
            "(3, 'cy@example.com', 'Cy')) AS t(id, email, first_name)"
        )
    git(root, "init", "-q", "-b", "main")
    git(root, "add", ".")
    git(root, "commit", "-qm", "Start the project")


@contextmanager
def edit_env(tmp: Path) -> Iterator[EditEnv]:
    suffix = uuid.uuid4().hex
    token = f"pat-na1-{suffix}"
    hubspot = HubSpotEmulator(token=token)
    saved = os.environ.get(TOKEN_ENV)
    os.environ[TOKEN_ENV] = token
    root = tmp / "project"
    make_project(root)
    app = create_app(root, settings=WebSettings(reload_seconds=0))
    passwords = {role: f"{role.value}-pw-{suffix[:12]}" for role in Role}
    for role in Role:
        app.state.users.add(EditEnv.username(role), passwords[role], role)
    try:
        with EmulatorServer(hubspot) as hub:
            server = LoopbackServer(app, name="backhaul-edit").start()
            env = EditEnv(root, server.url, hubspot, hub.url, token, passwords)
            try:
                yield env
            finally:
                for client in env.clients:
                    client.close()
                server.stop()
    finally:
        close_app(app)
        if saved is None:
            os.environ.pop(TOKEN_ENV, None)
        else:
            os.environ[TOKEN_ENV] = saved
