"""The alerts page and /api/v1/alerts: viewers read, operators mute, web runs are judged."""

from __future__ import annotations

import time
from collections.abc import Callable

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
