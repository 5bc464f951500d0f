"""Audiences show where models are listed in the web app: the models API, the overview and
the model page, with personal-data columns masked in previews."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from tests.audiences.projects import audience_file
from tests.audiences.projects import duckdb_project
from tests.audiences.test_operators import DATA

from backhaul.testing.server import LoopbackServer
from backhaul.web.app import close_app
from backhaul.web.app import create_app
from backhaul.web.auth import Role

pytestmark = pytest.mark.integration  # the web app is served on loopback

PASSWORD = "correct horse battery"
EU = "schema: people\ncolumns: [name, country]\nconditions:\n  - {column: country, op: in, value: [FR, DE]}\n"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    root = duckdb_project(tmp_path_factory.mktemp("web") / "proj", DATA)
    audience_file(root, "eu", EU)
    app = create_app(root)
    app.state.users.add("viewer", PASSWORD, Role.VIEWER)
    server = LoopbackServer(app).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            page = c.get("/login").text
            token = re.search(r'name="csrf_token" value="([^"]+)"', page)
            assert token
            answer = c.post(
                "/login",
                data={"username": "viewer", "password": PASSWORD, "csrf_token": token.group(1)},
            )
            assert answer.status_code == 303, answer.text
            yield c
    finally:
        server.stop()
        close_app(app)


def test_the_models_api_lists_the_audience_and_masks_personal_columns(
    client: httpx.Client,
) -> None:
    listed = {m["name"]: m for m in client.get("/api/v1/models").json()}
    assert listed["eu"]["audience_schema"] == "people"
    assert listed["eu"]["primary_key"] == ["id"]
    assert listed["people"]["audience_schema"] is None
    model = client.get("/api/v1/models/eu", params={"preview": 10}).json()
    assert [c["name"] for c in model["columns"]] == ["id", "name", "country"]
    assert sorted((r["id"], r["name"], r["country"]) for r in model["preview"]) == [
        (1, "***", "FR"),
        (2, "***", "DE"),
        (5, "***", "FR"),
    ]
    parent = client.get("/api/v1/models/people", params={"preview": 10}).json()
    assert {r["name"] for r in parent["preview"]} == {"***", None}


def test_the_model_page_shows_the_audience_sql_and_a_masked_preview(client: httpx.Client) -> None:
    page = client.get("/models/eu", headers={"Accept": "text/html"}).text
    assert 'id="audience-badge"' in page and "audiences/eu.yml" in page
    preview = re.search(r'<table id="preview">.*?</table>', page, re.S)
    assert preview and preview.group(0).count("***") == 3
    assert "O&#39;Neil" not in preview.group(0) and "Ann" not in preview.group(0)
    assert 'href="/models/eu"' in client.get("/", headers={"Accept": "text/html"}).text
