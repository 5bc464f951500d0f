"""The alerts page and /api/v1/alerts: viewers read, operators mute, web runs are judged."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from collections.abc import Callable
from typing import ClassVar

import httpx
from tests.web.conftest import WebEnv

from backhaul.web.auth import Role

Client = Callable[..., httpx.Client]


def rules_of(client: httpx.Client, sync: str) -> dict[str, dict[str, object]]:
    found = {s["sync"]: s for s in client.get("/api/v1/alerts").json()}
    return {r["rule"]: r for r in found[sync]["rules"]}


def test_viewers_read_rules_and_history(client_for: Client) -> None:
    viewer = client_for(Role.VIEWER, bearer=True)
    listed = viewer.get("/api/v1/alerts")
    assert listed.status_code == 200
    syncs = {s["sync"]: s for s in listed.json()}
    assert {"pql_to_crm", "pqls_to_webhook"} <= set(syncs)
    assert [r["rule"] for r in syncs["pql_to_crm"]["rules"]] == ["failed", "guarded", "stale"]
    assert viewer.get("/api/v1/alerts/history?limit=5").status_code == 200
    assert viewer.post("/api/v1/alerts/pql_to_crm/mute").status_code == 403
    assert client_for(None).get("/api/v1/alerts").status_code == 401


def test_operators_mute_and_unmute(client_for: Client) -> None:
    operator = client_for(Role.OPERATOR, bearer=True)
    muted = operator.post("/api/v1/alerts/pql_to_crm/mute", json={"rule": "failed"})
    assert muted.status_code == 200, muted.text
    assert muted.json() == {"sync": "pql_to_crm", "rule": "failed", "muted": True, "changed": True}
    assert rules_of(operator, "pql_to_crm")["failed"]["muted"] is True
    assert rules_of(operator, "pql_to_crm")["guarded"]["muted"] is False
    again = operator.post("/api/v1/alerts/pql_to_crm/unmute", json={"rule": "failed"})
    assert again.json()["changed"] is True
    assert rules_of(operator, "pql_to_crm")["failed"]["muted"] is False
    assert operator.post("/api/v1/alerts/nope/mute").status_code == 404
    bad = operator.post("/api/v1/alerts/pql_to_crm/mute", json={"rule": "loud"})
    assert bad.status_code == 400


def test_page_shows_states_and_mutes_by_form(client_for: Client) -> None:
    viewer = client_for(Role.VIEWER)
    page = viewer.get("/alerts")
    assert page.status_code == 200
    assert 'id="alert-rules"' in page.text and "pql_to_crm" in page.text
    assert "Mute sync" not in page.text  # viewers cannot mute
    operator = client_for(Role.OPERATOR)
    assert 'id="mute-pqls_to_webhook"' in operator.get("/alerts").text
    posted = operator.post("/alerts/pqls_to_webhook/mute", data={"on": "true"})
    assert posted.status_code == 303
    assert "Unmute sync" in operator.get("/alerts").text
    assert operator.post("/alerts/pqls_to_webhook/mute", data={"on": "false"}).status_code == 303
    assert (
        client_for(Role.OPERATOR, csrf=False)
        .post("/alerts/pqls_to_webhook/mute", data={"on": "true"})
        .status_code
        == 403
    )


def test_runs_started_in_the_web_app_are_judged(web_env: WebEnv, client_for: Client) -> None:
    operator = client_for(Role.OPERATOR, bearer=True)
    started = operator.post("/api/v1/syncs/pql_export/runs", json={})
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]
    for _ in range(600):  # bounded: the sink judges right after the run is stored
        failed = rules_of(operator, "pql_export")["failed"]
        if failed["state"] != "unknown" and failed["run_id"] in (None, run_id):
            break
        time.sleep(0.1)
    assert failed["state"] == "ok"


class _Hook(http.server.BaseHTTPRequestHandler):
    """A loopback endpoint that keeps every body posted to it."""

    bodies: ClassVar[list[dict[str, object]]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        _Hook.bodies.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_operators_send_a_test_notification_from_the_page_and_the_api(
    web_env: WebEnv, client_for: Client
) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    folder = web_env.project_dir / "channels"
    folder.mkdir(exist_ok=True)
    ours = [folder / "test_hook.yml", folder / "dead_hook.yml"]
    ours[0].write_text(f"type: webhook\nurl: http://127.0.0.1:{server.server_port}/\n")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    ours[1].write_text(f"type: webhook\nurl: http://127.0.0.1:{dead}/\n")
    try:
        viewer = client_for(Role.VIEWER)
        page = viewer.get("/alerts").text
        assert 'data-channel="test_hook"' in page and 'id="test-test_hook"' not in page
        assert viewer.post("/api/v1/alerts/channels/test_hook/test").status_code == 403

        operator = client_for(Role.OPERATOR)
        posted = operator.post("/alerts/channels/test_hook/test")
        assert posted.status_code == 303
        shown = operator.get(posted.headers["location"]).text
        assert "was sent and the channel took it" in shown
        [body] = _Hook.bodies
        assert "operator_user in the web app" in json.dumps(body)

        api = client_for(Role.OPERATOR, bearer=True)
        failed = api.post("/api/v1/alerts/channels/dead_hook/test")
        assert failed.status_code == 200, failed.text
        assert failed.json()["ok"] is False and failed.json()["error"]
        assert api.post("/api/v1/alerts/channels/nope/test").status_code == 404
        history = api.get("/api/v1/alerts/history?limit=5").json()
        tests = [e for e in history if e["kind"] == "test"]
        assert [d["ok"] for e in tests[:2] for d in e["deliveries"]] == [False, True]
    finally:
        for path in ours:
            path.unlink()
        server.shutdown()
        server.server_close()
        _Hook.bodies.clear()
