"""Dry runs in the web app: the sync page's Preview changes and `POST
/api/v1/syncs/{name}/plan` make `backhaul plan`'s plan (operators and up), show sampled
rows escaped, and record nothing."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from tests.web.conftest import XSS
from tests.web.conftest import XSS_KEY
from tests.web.conftest import WebEnv

from backhaul import api
from backhaul.web.auth import Role

Client = Callable[..., httpx.Client]


def test_the_api_plans_as_the_cli_does_and_records_nothing(
    web_env: WebEnv, client_for: Client
) -> None:
    operator = client_for(Role.OPERATOR, bearer=True)
    runs_before = operator.get("/api/v1/runs?sync=xss_to_hook").json()

    planned = operator.post("/api/v1/syncs/xss_to_hook/plan", json={"sample": 3})

    assert planned.status_code == 200, planned.text
    body = planned.json()
    cli = api.plan(api.load_project(web_env.project_dir), "xss_to_hook", sample=3).plan_dict()
    assert body["dry_run"] is True
    assert body["counts"] == cli["counts"]
    assert body["samples"] == cli["samples"]
    # The row the receiver refused is retried, with its values as they would be sent.
    assert body["counts"]["retried"] == 1
    assert body["samples"]["retry"] == [{"key": XSS_KEY, "user_id": XSS_KEY, "email": XSS}]
    assert operator.get("/api/v1/runs?sync=xss_to_hook").json() == runs_before

    assert (
        client_for(Role.VIEWER, bearer=True).post("/api/v1/syncs/xss_to_hook/plan").status_code
        == 403
    )
    assert operator.post("/api/v1/syncs/nope/plan").status_code == 404
    assert operator.post("/api/v1/syncs/xss_to_hook/plan", json={"sample": 1000}).status_code == 422


def test_the_sync_page_previews_changes_escaped(client_for: Client) -> None:
    viewer = client_for(Role.VIEWER)
    page = viewer.get("/syncs/xss_to_hook").text
    assert 'id="preview-changes"' in page and 'disabled id="preview-changes"' in page
    assert viewer.post("/syncs/xss_to_hook/plan").status_code == 403

    operator = client_for(Role.OPERATOR)
    shown = operator.post("/syncs/xss_to_hook/plan")

    assert shown.status_code == 200, shown.text
    assert "Dry run of xss_to_hook" in shown.text
    assert "retried 1" in shown.text
    assert 'data-kind="retry"' in shown.text
    assert XSS not in shown.text  # the value is there, escaped
    assert "&lt;script&gt;" in shown.text
