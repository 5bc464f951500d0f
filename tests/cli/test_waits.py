"""Waits you can see: a HubSpot 429 with Retry-After, end to end.

One run of the CLI (a subprocess) against the HubSpot emulator whose next answer is a
forced 429, switched on over HTTP through ``/_emulator/faults``. The same run is then read
back through ``backhaul run-show --json``, the REST API and the run page.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from backhaul import api
from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.hubspot import HubSpotEmulator
from backhaul.testing.server import LoopbackServer
from backhaul.web.app import close_app
from backhaul.web.app import create_app
from backhaul.web.auth import Role
from conftest import Builder

pytestmark = pytest.mark.integration

TOKEN = "pat-na1-waits-0b5e7d41-secret"
PASSWORD = "correct horse battery"
WAIT = 2  # seconds: HubSpot's rolling window here, and the forced Retry-After


@dataclass
class Ran:
    project: Builder
    output: str
    code: int
    run_id: str
    hub: HubSpotEmulator


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ran]:
    hub = HubSpotEmulator(token=TOKEN, burst_limit=100, burst_seconds=WAIT, retry_after_header=True)
    hub.add_property("contacts", "score", type="number", field_type="number")
    with EmulatorServer(hub) as server:
        project = Builder(tmp_path_factory.mktemp("waits") / "proj")
        project.users(20)
        project.destination(
            "crm", type="hubspot", token="${env:HUBSPOT_TOKEN}", base_url=server.url
        )
        project.sync(
            "contacts",
            destination="crm",
            object="contacts",
            match={"fields": ["email"]},
            mappings=[
                {"column": "email", "field": "email"},
                {"column": "name", "field": "firstname"},
                {"column": "score", "field": "score"},
            ],
        )
        switched = httpx.post(
            f"{server.url}/_emulator/faults", json={"rate_limit_next": 1, "retry_after": WAIT}
        )
        assert switched.status_code == 200
        done = project.cli("run", "contacts", env={"HUBSPOT_TOKEN": TOKEN})
        with api.open_store(project.load()) as store:
            last = store.last_run("contacts")
        assert last is not None
        yield Ran(project, done.stdout + done.stderr, done.returncode, last.run_id, hub)


def test_the_cli_prints_one_line_for_the_wait(ran: Ran) -> None:
    assert ran.code == 0, ran.output
    lines = [line.strip() for line in ran.output.splitlines()]
    assert f"waiting {WAIT} s: HubSpot rate limit (429, Retry-After {WAIT})" in lines
    assert sum(line.startswith("waiting ") for line in lines) == 1
    summary = next(line for line in lines if line.startswith("waited "))
    assert summary.endswith(f"details: backhaul run-show {ran.run_id}")
    assert len(ran.hub.records("contacts", key="email")) == 20
    assert [c.status for c in ran.hub.calls][:2] == [429, 200]


def test_run_show_json_has_the_headers_and_the_wait(ran: Ran) -> None:
    shown = ran.project.cli("run-show", ran.run_id, "--json")

    assert shown.returncode == 0, shown.stderr
    assert TOKEN not in shown.stdout
    data = json.loads(shown.stdout)
    assert data["wait_s"] > 0
    calls = data["calls"]
    first, retry = calls[0], calls[1]
    assert first["status"] == 429 and retry["status"] == 200
    headers = {k.lower(): v for k, v in first["response_headers"].items()}
    assert headers["retry-after"] == str(WAIT)
    assert headers["x-hubspot-ratelimit-interval-milliseconds"] == str(WAIT * 1000)
    assert "x-hubspot-ratelimit-remaining" in headers
    assert {k.lower(): v for k, v in first["request_headers"].items()}["authorization"] == "***"
    assert first["wait_ms"] == 0 and first["wait_reason"] is None
    assert retry["attempt"] == 2 and retry["wait_ms"] > 0
    assert retry["wait_reason"] == f"HubSpot rate limit (429, Retry-After {WAIT})"


def test_run_record_keeps_the_total(ran: Ran) -> None:
    with api.open_store(ran.project.load()) as store:
        record = store.run(ran.run_id)
        calls = store.calls(ran.run_id)
    assert record is not None and record.wait_s > 0
    assert record.wait_s >= calls[1].wait_ms / 1000 * 0.5  # the pause is part of the total


@dataclass
class Web:
    url: str
    token: str  # a viewer's API token


@pytest.fixture(scope="module")
def web(ran: Ran) -> Iterator[Web]:
    app = create_app(ran.project.root)
    app.state.users.add("viewer", PASSWORD, Role.VIEWER)
    token, _ = app.state.users.create_token("viewer", "waits test")
    server = LoopbackServer(app).start()
    try:
        yield Web(server.url, token)
    finally:
        server.stop()
        close_app(app)


def test_the_api_exposes_the_wait_and_the_headers(web: Web, ran: Ran) -> None:
    auth = {"Authorization": f"Bearer {web.token}"}
    with httpx.Client(base_url=f"{web.url}/api/v1", headers=auth, timeout=30) as client:
        run = client.get(f"/runs/{ran.run_id}")
        calls = client.get(f"/runs/{ran.run_id}/calls")
        limited, second = calls.json()[0], calls.json()[1]
        detail = client.get(f"/runs/{ran.run_id}/calls/{limited['call_id']}")
        retried = client.get(f"/runs/{ran.run_id}/calls/{second['call_id']}")

    assert run.status_code == 200 and run.json()["wait_s"] > 0
    assert limited["status"] == 429
    headers = {k.lower(): v for k, v in detail.json()["response_headers"].items()}
    assert headers["retry-after"] == str(WAIT)
    assert "x-hubspot-ratelimit-max" in headers
    assert retried.json()["wait_ms"] > 0
    assert retried.json()["wait_reason"] == f"HubSpot rate limit (429, Retry-After {WAIT})"
    for answer in (run, calls, detail, retried):
        assert TOKEN not in answer.text


def test_the_run_page_shows_the_wait_and_the_debugger_the_headers(web: Web, ran: Ran) -> None:
    with httpx.Client(base_url=web.url, timeout=30) as client:
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
        assert csrf
        signed = client.post(
            "/login",
            data={"username": "viewer", "password": PASSWORD, "csrf_token": csrf.group(1)},
        )
        assert signed.status_code == 303
        page = client.get(f"/runs/{ran.run_id}").text
        call_ids = re.findall(r'id="call-([0-9a-f]+)"', page)
        bodies = [client.get(f"/runs/{ran.run_id}/calls/{c}/body").text for c in call_ids[:2]]

    assert re.search(r'id="waited"[^>]*>waited [0-9.]+ s for the destination', page)
    assert f"HubSpot rate limit (429, Retry-After {WAIT})" in page
    assert all("Response headers" in body for body in bodies)
    assert re.search(rf"retry-after: {WAIT}", bodies[0], re.I)
    assert all(TOKEN not in text for text in (page, *bodies))
