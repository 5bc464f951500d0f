"""The REST API: project, syncs, runs, rows, calls, triggering and cancelling runs."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

import httpx
import pytest
from tests.web.conftest import XSS
from tests.web.conftest import XSS_KEY
from tests.web.conftest import WebEnv
from tests.web.conftest import parquet_log

from backhaul.web.auth import Role

Client = Callable[..., httpx.Client]


@pytest.fixture
def viewer(client_for: Client) -> httpx.Client:
    return client_for(Role.VIEWER, bearer=True)


def wait_finished(client: httpx.Client, run_id: str) -> dict[str, object]:
    for _ in range(600):  # bounded: at most about a minute
        progress = client.get(f"/api/v1/runs/{run_id}/progress").json()
        if progress["status"] != "running":
            return dict(progress)
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} did not finish")


def test_sources_models_and_a_capped_preview(viewer: httpx.Client) -> None:
    sources = viewer.get("/api/v1/sources").json()
    assert [(s["name"], s["type"]) for s in sources] == [("warehouse", "duckdb")]
    names = [m["name"] for m in viewer.get("/api/v1/models").json()]
    assert names == ["accounts_health", "pql_users", "xss_probe"]
    model = viewer.get("/api/v1/models/pql_users", params={"preview": 5}).json()
    assert model["primary_key"] == ["user_id"]
    assert "SELECT" in model["sql"].upper()
    columns = {c["name"]: c["type"] for c in model["columns"]}
    assert "user_id" in columns and "email" in columns
    assert len(model["preview"]) == 5
    assert set(model["preview"][0]) == set(columns)
    assert viewer.get("/api/v1/models/pql_users").json()["preview"] is None
    too_many = viewer.get("/api/v1/models/pql_users", params={"preview": 101})
    assert too_many.status_code == 422
    assert too_many.json()["error"]["code"] == "validation_error"
    missing = viewer.get("/api/v1/models/nope")
    assert missing.status_code == 404
    assert missing.json()["error"] == {"code": "not_found", "message": "no model `nope`"}


def test_markup_in_values_is_escaped_in_the_json_text(viewer: httpx.Client) -> None:
    answer = viewer.get("/api/v1/models/xss_probe", params={"preview": 1})
    assert answer.json()["preview"] == [{"user_id": XSS_KEY, "email": XSS}]
    assert "<script" not in answer.text and "\\u003cscript\\u003e" in answer.text


def test_destinations_show_references_and_masked_secrets(
    web_env: WebEnv, viewer: httpx.Client
) -> None:
    answer = viewer.get("/api/v1/destinations")
    dests = {d["name"]: d for d in answer.json()}
    assert set(dests) == {"crm", "events_hook", "exports"}
    hook = dests["events_hook"]
    assert hook["type"] == "webhook"
    assert hook["config"]["signing_secret"] == "${env:BACKHAUL_DEMO_SIGNING_SECRET}"
    assert hook["config"]["headers"]["Authorization"] == "***"
    assert dests["crm"]["config"]["table"] == "contacts"
    for secret in web_env.secrets:
        assert secret not in answer.text


def test_syncs_with_their_last_run_and_definition(web_env: WebEnv, viewer: httpx.Client) -> None:
    syncs = {s["name"]: s for s in viewer.get("/api/v1/syncs").json()}
    assert set(syncs) == {"pql_export", "pql_to_crm", "pqls_to_webhook", "xss_to_hook"}
    assert syncs["pql_export"]["last_run"] is None or syncs["pql_export"]["schedule"] == "manual"
    last = syncs["pqls_to_webhook"]["last_run"]
    assert last["status"] in {"partial", "succeeded", "cancelled"}
    detail = viewer.get("/api/v1/syncs/pql_to_crm").json()
    assert detail["definition"]["mode"] == "mirror"
    assert detail["definition"]["destination"] == "crm"
    assert "mode: mirror" in detail["yaml"]
    assert web_env.runs["pql_to_crm"] in [r["run_id"] for r in detail["runs"]]
    assert viewer.get("/api/v1/syncs/nope").status_code == 404


def test_runs_rows_and_calls_of_a_run_with_a_rejection(
    web_env: WebEnv, viewer: httpx.Client
) -> None:
    run_id = web_env.runs["pqls_to_webhook"]
    listed = viewer.get("/api/v1/runs", params={"sync": "pqls_to_webhook", "limit": 50}).json()
    assert run_id in [r["run_id"] for r in listed]
    assert all(r["sync"] == "pqls_to_webhook" for r in listed)
    page = viewer.get("/api/v1/runs", params={"limit": 1, "offset": 1}).json()
    assert len(page) == 1
    run = viewer.get(f"/api/v1/runs/{run_id}").json()
    assert run["counts"]["rejected"] == 1
    counts = {(c["op"], c["status"]): c["count"] for c in run["row_counts"]}
    assert counts[("add", "rejected")] == 1
    assert run["progress"]["status"] == "partial" and run["progress"]["phase"] == "done"
    rejected = viewer.get(f"/api/v1/runs/{run_id}/rows", params={"status": "rejected"}).json()
    assert [r["key"] for r in rejected] == [web_env.rejected_key]
    assert rejected[0]["error"] == "email is not deliverable"
    by_key = viewer.get(f"/api/v1/runs/{run_id}/rows", params={"key": web_env.rejected_key})
    assert len(by_key.json()) == 1
    by_op = viewer.get(f"/api/v1/runs/{run_id}/rows", params={"op": "remove"}).json()
    assert by_op == []
    call_id = rejected[0]["call_id"]
    assert call_id
    calls = viewer.get(f"/api/v1/runs/{run_id}/calls").json()
    assert call_id in [c["call_id"] for c in calls]
    call = viewer.get(f"/api/v1/runs/{run_id}/calls/{call_id}").json()
    assert call["method"] == "POST" and call["status"] == 200
    assert web_env.rejected_key in [r["key"] for r in call["rows"]]
    headers = {k.lower(): v for k, v in call["request_headers"].items()}
    assert headers["authorization"] == "***"
    assert json.loads(call["request_body"])["records"]
    assert viewer.get(f"/api/v1/runs/{run_id}/calls/nope").status_code == 404
    assert viewer.get("/api/v1/runs/0000000000000000").status_code == 404


def test_a_run_whose_row_log_is_a_pipe_answers_from_the_store_and_says_why(
    web_env: WebEnv, client_for: Client
) -> None:
    operator = client_for(Role.OPERATOR, bearer=True)
    web_env.receiver.faults.reject({"4": "unknown plan"})
    try:
        started = operator.post("/api/v1/syncs/pqls_to_webhook/runs", json={"full_resync": True})
        assert started.status_code == 202, started.text
        run_id = started.json()["run_id"]
        assert wait_finished(operator, run_id)["status"] == "partial"
    finally:  # the receiver serves the whole session: later runs must not meet this rule
        web_env.receiver.faults.rejects.pop("4", None)
    log = parquet_log(web_env.project_dir, run_id)
    before = operator.get(f"/api/v1/runs/{run_id}").json()
    assert before["row_log_error"] is None
    every = {(c["op"], c["status"]): c["count"] for c in before["row_counts"]}
    kept = {k: n for k, n in every.items() if k[1] in ("rejected", "invalid")}
    assert kept and every.get(("change", "ok"), 0) > 1, every
    rows = f"/api/v1/runs/{run_id}/rows"
    rejected_keys = sorted(
        r["key"] for r in operator.get(rows, params={"status": "rejected"}).json()
    )
    assert "4" in rejected_keys
    log.unlink()
    os.mkfifo(log)  # reading it would wait for a writer forever

    said = f"row log {log} is a named pipe (FIFO), not a file"
    run = operator.get(f"/api/v1/runs/{run_id}")
    assert run.status_code == 200
    assert run.json()["row_log_error"].startswith(said)
    # Counted from the store alone: the rejected rows, none of the row log's ok rows.
    counts = {(c["op"], c["status"]): c["count"] for c in run.json()["row_counts"]}
    assert counts == kept
    # Rows the store keeps are listed as before; a list that would need the row log is
    # refused, saying why, rather than answered short of its ok rows.
    rejected = operator.get(rows, params={"status": "rejected"}).json()
    assert sorted(r["key"] for r in rejected) == rejected_keys
    every_row = operator.get(rows)
    assert every_row.status_code == 409
    error = every_row.json()["error"]
    assert error["code"] == "row_log_unreadable"
    assert error["message"].startswith(said) and "status=rejected" in error["message"]
    # A call that carried a rejected row still shows it, and says why the rest is not shown.
    carried = next(r for r in rejected if r["key"] == "4")
    call = operator.get(f"/api/v1/runs/{run_id}/calls/{carried['call_id']}").json()
    assert "4" in [r["key"] for r in call["rows"]]
    assert all(r["status"] == "rejected" for r in call["rows"])
    assert call["row_log_error"].startswith(said)


def test_progress_events_stream_ends_with_a_finished_run(
    web_env: WebEnv, viewer: httpx.Client
) -> None:
    run_id = web_env.runs["pql_to_crm"]
    answer = viewer.get(f"/api/v1/runs/{run_id}/events")
    assert answer.headers["content-type"].startswith("text/event-stream")
    events = [line for line in answer.text.splitlines() if line.startswith("data: ")]
    assert len(events) == 1
    assert json.loads(events[0][6:])["status"] == "succeeded"


def test_operator_triggers_a_run_and_it_finishes(client_for: Client) -> None:
    operator = client_for(Role.OPERATOR)
    started = operator.post("/api/v1/syncs/pql_export/runs", json={"full_resync": True})
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]
    final = wait_finished(operator, run_id)
    assert final["status"] == "succeeded"
    run = operator.get(f"/api/v1/runs/{run_id}").json()
    assert run["trigger"] == "web" and run["full_resync"] is True
    audit = client_for(Role.ADMIN).get("/api/v1/audit").json()
    assert any(e["action"] == "run_trigger" and e["details"].get("run_id") == run_id for e in audit)


def test_a_second_run_is_refused_and_cancel_stops_the_first(
    web_env: WebEnv, client_for: Client
) -> None:
    operator = client_for(Role.OPERATOR, bearer=True)
    web_env.receiver.faults.timeout_next(4, 5.0)  # hold the first calls so the run is still going
    started = operator.post("/api/v1/syncs/pqls_to_webhook/runs", json={"full_resync": True})
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]
    again = operator.post("/api/v1/syncs/pqls_to_webhook/runs", json={})
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "conflict"
    cancelled = operator.post(f"/api/v1/runs/{run_id}/cancel")
    assert cancelled.status_code == 202 and cancelled.json()["cancelled"] is True
    final = wait_finished(operator, run_id)
    assert final["status"] == "cancelled"
    assert operator.post(f"/api/v1/runs/{run_id}/cancel").status_code == 409
    assert operator.post("/api/v1/runs/0000000000000000/cancel").status_code == 404
    audit = client_for(Role.ADMIN).get("/api/v1/audit").json()
    assert any(e["action"] == "run_cancel" and e["actor"] == "operator_user" for e in audit)


def test_openapi_document_lists_every_api_route(viewer: httpx.Client) -> None:
    spec = viewer.get("/api/v1/openapi.json").json()
    for path in (
        "/api/v1/syncs",
        "/api/v1/runs/{run_id}/calls/{call_id}",
        "/api/v1/syncs/{name}/runs",
        "/api/v1/runs/{run_id}/cancel",
    ):
        assert path in spec["paths"]
    docs = viewer.get("/api/docs")
    assert docs.status_code == 200 and "/api/v1/runs/{run_id}/rows" in docs.text
