"""The web app follows the project's files: a sync added or changed on disk (a pull, an
editor, another worker's save) shows without a restart; a broken edit keeps the last good
project."""

from __future__ import annotations

import time

import httpx
import pytest
from tests.conftest import Builder

from backhaul.testing.server import LoopbackServer
from backhaul.web.app import WebSettings
from backhaul.web.app import close_app
from backhaul.web.app import create_app
from backhaul.web.auth import Role

pytestmark = pytest.mark.integration


def _syncs(client: httpx.Client) -> set[str]:
    answer = client.get("/api/v1/syncs")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    items = body["items"] if isinstance(body, dict) else body
    return {s["name"] for s in items}


def test_files_changed_on_disk_are_picked_up_without_a_restart(project: Builder) -> None:
    project.users(3)
    project.destination("db", type="sqlite", path="out.sqlite", table="t", create_table=True)
    project.sync("first", destination="db")
    app = create_app(project.root, settings=WebSettings(reload_seconds=0))
    try:
        app.state.users.add("v", "viewer-password-1", Role.VIEWER)
        token, _ = app.state.users.create_token("v", "tests")
        with (
            LoopbackServer(app, name="backhaul-web-reload") as server,
            httpx.Client(
                base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
            ) as client,
        ):
            assert _syncs(client) == {"first"}

            project.sync("second", destination="db")
            assert _syncs(client) == {"first", "second"}

            # A file that does not load keeps the last good project.
            time.sleep(0.01)  # a new modification time even on coarse clocks
            project.write("syncs/second.yml", "model: users\ndestination: [\n")
            assert _syncs(client) == {"first", "second"}

            (project.root / "syncs/second.yml").unlink()
            assert _syncs(client) == {"first"}
    finally:
        close_app(app)
