"""The server-rendered pages, through the real app served on loopback and an httpx client."""

from __future__ import annotations

import html
import os
import re
import time
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from markupsafe import escape
from tests.web.conftest import parquet_log

from backhaul.demo.project import WAREHOUSE_FILE
from backhaul.demo.project import write_demo_project
from backhaul.demo.warehouse import build_warehouse
from backhaul.testing.receiver import WebhookReceiver
from backhaul.testing.server import LoopbackServer
from backhaul.web.app import close_app
from backhaul.web.app import create_app
from backhaul.web.auth import Role

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"
EVIL = "<script>alert('x')</script>"
EVIL_NAME = "<img src=x onerror=alert(1)>"
BROKEN_SQL = f"-- {EVIL}\nSELECT * FROM no_such_table_anywhere\n"


@dataclass
class Site:
    url: str
    root: Path
    receiver: WebhookReceiver

    @contextmanager
    def client(self, role: Role | None) -> Iterator[httpx.Client]:
        """A client signed in with ``role`` (anonymous when None) that asks for HTML."""
        with httpx.Client(base_url=self.url, timeout=30, headers={"Accept": "text/html"}) as c:
            if role is not None:
                token = csrf(c.get("/login").text)
                answer = c.post(
                    "/login",
                    data={"username": role.value, "password": PASSWORD, "csrf_token": token},
                )
                assert answer.status_code == 303, answer.text
            yield c


def csrf(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "the page has no CSRF token"
    return found.group(1)


def pre(page: str, element_id: str) -> str:
    """The text of ``<pre id=...>`` as the browser shows it."""
    found = re.search(rf'<pre[^>]*id="{element_id}"[^>]*>(.*?)</pre>', page, re.S)
    assert found, f"no <pre id={element_id}>"
    return html.unescape(found.group(1))


def wait_finished(client: httpx.Client, run_path: str) -> httpx.Response:
    """Poll the progress partial as the page does until it asks for a reload."""
    for _ in range(240):
        answer = client.get(f"{run_path}/progress", headers={"HX-Request": "true"})
        assert answer.status_code == 200
        if answer.headers.get("hx-refresh") == "true":
            return answer
        assert 'hx-trigger="every 1s"' in answer.text  # still polling while it runs
        time.sleep(0.25)
    raise AssertionError(f"{run_path} did not finish")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("pages")
    with WebhookReceiver(key_field="user_id") as receiver:
        write_demo_project(root, webhook_url=receiver.url)
        build_warehouse(root / WAREHOUSE_FILE, accounts=30)
        (root / "models" / "broken.yml").write_text("source: warehouse\nprimary_key: id\n")
        (root / "models" / "broken.sql").write_text(BROKEN_SQL)
        app = create_app(root)
        for role in Role:
            app.state.users.add(role.value, PASSWORD, role)
        server = LoopbackServer(app).start()
        try:
            yield Site(server.url, root, receiver)
        finally:
            server.stop()
            close_app(app)


def test_every_page_sends_anonymous_visitors_to_the_login_form(site: Site) -> None:
    with site.client(None) as anon:
        for path in ("/", "/syncs/pql_to_crm", "/models/pql_users", "/runs/abcdef"):
            answer = anon.get(path)
            assert answer.status_code == 303, path
            assert answer.headers["location"].startswith("/login")


def test_overview_lists_every_sync_with_its_model_destination_and_next_run(site: Site) -> None:
    with site.client(Role.VIEWER) as viewer:
        page = viewer.get("/").text
    for name, model, dest in (
        ("pql_to_crm", "pql_users", "crm"),
        ("pqls_to_webhook", "pql_users", "events_hook"),
        ("pql_export", "pql_users", "exports"),
    ):
        row = re.search(rf'<tr>\s*<td><a href="/syncs/{name}">.*?</tr>', page, re.S)
        assert row, name
        assert f'href="/models/{model}"' in row.group(0) and f"→ {dest}" in row.group(0)
        assert "manual" in row.group(0)
    assert '<svg class="chart"' in page and 'role="img"' in page
    assert 'href="/models/broken"' in page


def test_sync_page_shows_the_file_as_written_and_the_mappings(site: Site) -> None:
    with site.client(Role.VIEWER) as viewer:
        page = viewer.get("/syncs/pql_to_crm").text
    written = (site.root / "syncs" / "pql_to_crm.yml").read_text()
    assert pre(page, "sync-yaml") == written
    mappings = re.search(r'<table id="mappings">.*?</table>', page, re.S)
    assert mappings
    for field in ("user_id", "full_name", "company_domain", "lead_source"):
        assert f'<td class="mono">{field}</td>' in mappings.group(0)
    assert "{{ first_name }} {{ last_name }}" in html.unescape(mappings.group(0))


def test_webhook_secret_is_shown_as_a_reference_never_resolved(site: Site) -> None:
    # The destination's signing secret has a default value; the page may name the variable
    # through the sync's file but must never contain the value itself.
    with site.client(Role.ADMIN) as admin:
        for path in ("/", "/syncs/pqls_to_webhook", "/models/pql_users"):
            assert "demo-signing-secret" not in admin.get(path).text


def test_viewer_sees_disabled_run_buttons_and_cannot_post(site: Site) -> None:
    with site.client(Role.VIEWER) as viewer:
        page = viewer.get("/syncs/pql_to_crm").text
        assert 'action="/syncs/pql_to_crm/run"' not in page
        assert re.search(r'<button[^>]*disabled[^>]*id="run-now"', page)
        refused = viewer.post("/syncs/pql_to_crm/run", data={"csrf_token": csrf(page)})
        assert refused.status_code == 403
    with site.client(Role.OPERATOR) as operator:
        page = operator.get("/syncs/pql_to_crm").text
        assert 'action="/syncs/pql_to_crm/run"' in page
        assert not re.search(r'<button[^>]*disabled[^>]*id="run-now"', page)
        # No CSRF token: refused before anything runs.
        assert operator.post("/syncs/pql_to_crm/run", data={}).status_code == 403


def test_run_now_goes_to_the_run_page_which_follows_it_to_the_end(site: Site) -> None:
    with site.client(Role.OPERATOR) as operator:
        token = csrf(operator.get("/syncs/pql_export").text)
        answer = operator.post("/syncs/pql_export/run", data={"csrf_token": token})
        assert answer.status_code == 303
        run_path = answer.headers["location"]
        assert re.fullmatch(r"/runs/[0-9a-f]+", run_path)
        final = wait_finished(operator, run_path)
        assert "succeeded" in final.text and "hx-trigger" not in final.text
        page = operator.get(run_path).text
        overview = operator.get("/").text
    assert 'class="badge succeeded"' in page
    assert 'hx-trigger="every 1s"' not in page  # finished: no more polling
    matrix = re.search(r'<table id="matrix">.*?</table>', page, re.S)
    assert matrix and '<th scope="row">add</th>' in matrix.group(0)
    added = re.search(r'<li class="added"><span class="n">([\d,]+)</span>', page)
    assert added and int(added.group(1).replace(",", "")) > 0
    assert "This run made no HTTP calls" in page  # a file destination
    row = re.search(r'<td><a href="/syncs/pql_export">.*?</tr>', overview, re.S)
    assert row and f'href="{run_path}"' in row.group(0) and "succeeded" in row.group(0)


def test_rejected_rows_are_listed_searchable_and_linked_to_their_call(site: Site) -> None:
    site.receiver.faults.reject({"3": f"email bounced {EVIL}", "7": "unknown plan"})
    with site.client(Role.OPERATOR) as operator:
        token = csrf(operator.get("/syncs/pqls_to_webhook").text)
        answer = operator.post(
            "/syncs/pqls_to_webhook/run", data={"csrf_token": token, "full_resync": "true"}
        )
        assert answer.status_code == 303
        run_path = answer.headers["location"]
        wait_finished(operator, run_path)
        page = operator.get(run_path).text
        found = operator.get(f"{run_path}/rows", params={"key": "3"}).text
        call_link = re.search(r'href="(/runs/[0-9a-f]+/calls/[0-9a-f]+)"', found)
        assert call_link
        call_page = operator.get(call_link.group(1)).text
        body_partial = operator.get(call_link.group(1) + "/body").text

    assert 'class="badge partial"' in page
    rejected = re.search(r'<table id="rejected">.*?</table>', page, re.S)
    assert rejected
    assert '<td class="key">3</td>' in rejected.group(0)
    assert '<td class="key">7</td>' in rejected.group(0)
    # The destination's error is shown, escaped: the script tag is inert text.
    assert EVIL not in page
    assert str(escape(f"email bounced {EVIL}")) in page
    assert '<td class="key">3</td>' in found and "rejected" in found
    # The call that carried row 3: its request body holds the record, its rows include 3.
    request_body = re.search(r'<pre class="wrap request-body">(.*?)</pre>', call_page, re.S)
    assert request_body and '"user_id": 3,' in html.unescape(request_body.group(1))
    assert '<li class="rejected" title="rejected">3</li>' in call_page
    assert "x-backhaul-signature: ***" in call_page
    assert "request-body" in body_partial and "<html" not in body_partial
    # The debugger lists the calls, bodies loaded lazily when an entry is opened.
    assert page.count('<details class="call"') >= 1
    assert 'hx-trigger="toggle once"' in page


def test_row_search_without_a_match_and_by_part_of_a_key(site: Site) -> None:
    with site.client(Role.VIEWER) as viewer:
        run_link = re.search(r'href="(/runs/[0-9a-f]+)"', viewer.get("/syncs/pql_export").text)
        assert run_link, "an earlier test ran pql_export"
        none = viewer.get(f"{run_link.group(1)}/rows", params={"key": "no-such-key"}).text
        exact = viewer.get(f"{run_link.group(1)}/rows", params={"key": "12"}).text
        part = viewer.get(f"{run_link.group(1)}/rows", params={"key": "0"}).text
        full = viewer.get(run_link.group(1), params={"key": "12"}).text
    assert "No row of this run has a key like" in none
    assert re.findall(r'<td class="key">([^<]*)</td>', exact) == ["12"]
    # No key is "0": every key containing it is listed instead.
    keys = re.findall(r'<td class="key">([^<]*)</td>', part)
    assert "10" in keys and "20" in keys and all("0" in k for k in keys)
    assert '<td class="key">12</td>' in full  # the search works without htmx too


def test_a_run_whose_row_log_is_a_pipe_shows_the_rest_and_says_why(site: Site) -> None:
    site.receiver.faults.reject({"4": "unknown plan"})
    with site.client(Role.OPERATOR) as operator:
        token = csrf(operator.get("/syncs/pqls_to_webhook").text)
        answer = operator.post(
            "/syncs/pqls_to_webhook/run", data={"csrf_token": token, "full_resync": "true"}
        )
        run_path = answer.headers["location"]
        wait_finished(operator, run_path)
        log = parquet_log(site.root, run_path.rsplit("/", 1)[1])
        log.unlink()
        os.mkfifo(log)  # reading it would wait for a writer forever
        page = operator.get(run_path, params={"key": "4"})
        found = operator.get(f"{run_path}/rows", params={"key": "4"})
        call_link = re.search(r'href="(/runs/[0-9a-f]+/calls/[0-9a-f]+)"', page.text)
        assert call_link
        call_page = operator.get(call_link.group(1))

    said = f"row log {log} is a named pipe (FIFO), not a file"
    assert page.status_code == found.status_code == call_page.status_code == 200
    assert page.text.count(str(escape(said))) == 1
    assert str(escape(said)) in found.text and str(escape(said)) in call_page.text
    # The record and the rows the store keeps are shown as before.
    assert 'class="badge partial"' in page.text
    rejected = re.search(r'<table id="rejected">.*?</table>', page.text, re.S)
    assert rejected and '<td class="key">4</td>' in rejected.group(0)
    # A search for that key finds it in the store; the matrix counts it too.
    for text in (page.text, found.text):
        assert re.findall(r'<td class="key">([^<]*)</td>', text.split('id="rejected"')[0]) == ["4"]
    assert "No row of this run has a key like" not in found.text
    matrix = re.search(r'<table id="matrix">.*?</table>', page.text, re.S)
    assert matrix, "the rows the store keeps are counted"
    headers = re.findall(r'<th class="num">([^<]*)</th>', matrix.group(0))
    cells = re.findall(r'<td class="num">([^<]*)</td>', matrix.group(0))
    # Only the store's rows are counted (none of the row log's ok rows): one per rejected row.
    assert headers == ["rejected", "total"]
    assert sum(int(n) for n in cells if n) == rejected.group(0).count('<td class="key">')


def test_model_page_shows_sql_columns_and_the_first_hundred_rows(site: Site) -> None:
    with site.client(Role.VIEWER) as viewer:
        page = viewer.get("/models/pql_users").text
    assert pre(page, "model-sql") == (site.root / "models" / "pql_users.sql").read_text()
    columns = re.search(r'<table id="columns">.*?</table>', page, re.S)
    assert columns and "user_id" in columns.group(0) and "lead_score" in columns.group(0)
    preview = re.search(r'<table id="preview">.*?</table>', page, re.S)
    assert preview
    assert preview.group(0).count("<tr>") == 101  # the header and 100 rows
    assert 'href="/syncs/pql_to_crm"' in page


def test_a_broken_model_shows_the_warehouse_error_escaped(site: Site) -> None:
    with site.client(Role.VIEWER) as viewer:
        answer = viewer.get("/models/broken")
    assert answer.status_code == 200
    assert EVIL not in answer.text
    assert str(escape(EVIL)) in answer.text  # the SQL comment, as text
    error = re.search(
        r'<p class="notice error" role="alert" id="preview-error">(.*?)</p>', answer.text, re.S
    )
    assert error and "no_such_table_anywhere" in error.group(1)


@pytest.mark.parametrize(
    ("path", "what"),
    [
        ("/syncs/nope", "sync"),
        ("/models/nope", "model"),
        ("/runs/0123456789", "run"),
        ("/runs/0123456789/progress", "run"),
        ("/runs/0123456789/calls/abc", "HTTP call"),
        (f"/syncs/{EVIL_NAME}", "sync"),
    ],
)
def test_unknown_names_get_an_html_404(site: Site, path: str, what: str) -> None:
    with site.client(Role.VIEWER) as viewer:
        answer = viewer.get(path)
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("text/html")
    assert f"There is no {what} named" in answer.text
    assert EVIL_NAME not in answer.text


def test_static_files_are_served(site: Site) -> None:
    with site.client(None) as anon:
        css = anon.get("/static/app.css")
        js = anon.get("/static/vendor/htmx.min.js")
    assert css.status_code == 200 and ".chart" in css.text
    assert js.status_code == 200 and "htmx" in js.text


def test_every_page_of_the_shared_site_keeps_secrets_out_and_markup_inert(
    client_for: Callable[..., httpx.Client], live_server: Any
) -> None:
    """Crawl every page of the shared fixture's project (its client fails on any secret)."""
    from tests.web.conftest import XSS

    viewer = client_for(Role.VIEWER)
    paths = ["/", *(f"/syncs/{s}" for s in live_server.runs), "/models/xss_probe"]
    for run_id in live_server.runs.values():
        paths.append(f"/runs/{run_id}")
        run_page = viewer.get(f"/runs/{run_id}").text
        paths += re.findall(r'href="(/runs/[0-9a-f]+/calls/[0-9a-f]+)"', run_page)
    paths += [f"{p}/body" for p in paths if "/calls/" in p]
    seen = 0
    for path in paths:
        answer = viewer.get(path)
        assert answer.status_code == 200, path
        assert XSS not in answer.text, path
        seen += 1
    assert seen > 6
    preview = viewer.get("/models/xss_probe").text
    assert str(escape(XSS)) in preview  # the model's value, shown as text
    rejected = viewer.get(f"/runs/{live_server.runs['xss_to_hook']}").text
    assert '<table id="rejected">' in rejected and str(escape(XSS)) in rejected
