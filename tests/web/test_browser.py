"""The pages in a real browser: Debian's Chromium driven by Playwright.

Covers sign-in, browsing, running a sync and following it live, finding a rejected row and
its HTTP call, and what a viewer may not do. Saves screenshots of the main pages
(1280x800) to a scratch folder, or to ``docs/img/`` (shown in ``docs/web.md``) when
``BACKHAUL_SCREENSHOTS=docs/img`` is set.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from tests.browser import SHOTS
from tests.browser import chromium
from tests.browser import requires_chromium

from backhaul.web.app import SESSION_COOKIE
from backhaul.web.auth import Role

playwright_sync = pytest.importorskip("playwright.sync_api")

VIEWPORT = {"width": 1280, "height": 800}
RUN_TIMEOUT_MS = 60_000

pytestmark = [pytest.mark.integration, requires_chromium]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with chromium() as found:
        yield found


@pytest.fixture
def page_as(browser: object, live_server: Any) -> Iterator[object]:
    """``page_as(role)``: a fresh browser context signed in through the login form."""
    contexts = []

    def sign_in(role: Role) -> object:
        context = browser.new_context(viewport=VIEWPORT, base_url=live_server.url)  # type: ignore[attr-defined]
        contexts.append(context)
        page = context.new_page()
        page.goto("/login")
        page.fill("#username", live_server.username(role))
        page.fill("#password", live_server.passwords[role])
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_server.url}/")
        return page

    yield sign_in
    for context in contexts:
        context.close()


def expect(locator: object) -> object:
    return playwright_sync.expect(locator)


def shoot(page: object, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name))  # type: ignore[attr-defined]


def test_operator_signs_in_browses_runs_a_sync_and_watches_it_finish(
    page_as: object, live_server: Any
) -> None:
    page = page_as(Role.OPERATOR)  # type: ignore[operator]
    syncs = page.locator("#syncs tbody tr")
    expect(syncs).to_have_count(4)
    for name in ("pql_to_crm", "pqls_to_webhook", "pql_export", "xss_to_hook"):
        expect(page.locator("#syncs")).to_contain_text(name)
    expect(page.locator("svg.chart title").first).to_have_text("Recent runs across all syncs")
    shoot(page, "overview.png")

    page.click("#syncs >> text=pql_to_crm")
    page.wait_for_url("**/syncs/pql_to_crm")
    expect(page.locator("#sync-yaml")).to_contain_text("mode: mirror")
    expect(page.locator("#mappings")).to_contain_text("company_domain")
    expect(page.locator("#run-now")).to_be_enabled()

    page.click("#run-now")
    page.wait_for_url(re.compile(r".*/runs/[0-9a-f]+$"))
    # The progress partial polls every second and reloads the page when the run ends.
    expect(page.locator("#run-status .badge")).to_have_text("succeeded", timeout=RUN_TIMEOUT_MS)
    expect(page.locator("#counts")).to_contain_text("queried")
    page.click("text=pql_to_crm >> nth=0")
    page.wait_for_url("**/syncs/pql_to_crm")
    expect(page.locator("table.runs tbody tr").first).to_contain_text("succeeded")
    shoot(page, "sync.png")


def test_a_rejected_row_is_found_by_key_and_leads_to_its_http_call(
    page_as: object, live_server: Any
) -> None:
    key = live_server.rejected_key
    live_server.receiver.faults.reject({key: "email is not deliverable"})
    page = page_as(Role.OPERATOR)  # type: ignore[operator]
    page.goto("/syncs/pqls_to_webhook")
    page.click("#full-resync")
    page.wait_for_url(re.compile(r".*/runs/[0-9a-f]+$"))
    expect(page.locator("#run-status .badge")).to_have_text("partial", timeout=RUN_TIMEOUT_MS)
    expect(page.locator("#rejected")).to_contain_text("email is not deliverable")
    shoot(page, "run-rejected.png")

    page.fill("#key-search", key)
    results = page.locator("#row-results")
    expect(results.locator("td.key").first).to_have_text(key)
    expect(results).to_contain_text("rejected")

    # The debugger: open one call in place; its bodies load when it opens.
    first_call = page.locator("#debugger details.call").first
    first_call.locator("summary").click()
    expect(first_call.locator(".request-body")).to_be_visible()
    first_call.scroll_into_view_if_needed()
    page.evaluate("window.scrollBy(0, -120)")
    shoot(page, "debugger.png")

    results.locator("text=open call").first.click()
    page.wait_for_url(re.compile(r".*/runs/[0-9a-f]+/calls/[0-9a-f]+$"))
    body = page.locator("pre.request-body")
    expect(body).to_contain_text(f'"user_id": {key}')
    expect(page.locator("ul.keys li.rejected")).to_contain_text(key)


def test_a_viewer_cannot_use_the_run_buttons_nor_post_directly(
    page_as: object, live_server: Any
) -> None:
    page = page_as(Role.VIEWER)  # type: ignore[operator]
    page.goto("/syncs/pql_to_crm")
    expect(page.locator("#run-now")).to_be_disabled()
    expect(page.locator("#full-resync")).to_be_disabled()
    expect(page.locator("form[action='/syncs/pql_to_crm/run']")).to_have_count(0)

    token = page.request.get("/api/v1/me").json()["csrf_token"]
    refused = page.request.post("/syncs/pql_to_crm/run", form={"csrf_token": token})
    assert refused.status == 403
    api = page.request.post(
        "/api/v1/syncs/pql_to_crm/runs", headers={"X-CSRF-Token": token}, data={}
    )
    assert api.status == 403


def test_signing_out_ends_the_session_for_a_copied_cookie_too(
    browser: object, live_server: Any
) -> None:
    name = f"browser-{uuid.uuid4().hex[:8]}"
    live_server.app.state.users.add(name, "browser-password", Role.VIEWER)
    context = browser.new_context(viewport=VIEWPORT, base_url=live_server.url)  # type: ignore[attr-defined]
    thief = browser.new_context(viewport=VIEWPORT, base_url=live_server.url)  # type: ignore[attr-defined]
    try:
        page = context.new_page()
        page.goto("/login")
        page.fill("#username", name)
        page.fill("#password", "browser-password")
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_server.url}/")
        copied = [c for c in context.cookies() if c["name"] == SESSION_COOKIE]
        assert len(copied) == 1
        thief.add_cookies(copied)
        stolen = thief.new_page()
        stolen.goto("/")
        expect(stolen.locator(".who")).to_contain_text(name)

        page.click("text=Sign out")
        page.wait_for_url("**/login")
        expect(page.locator("#username")).to_be_visible()

        # The copy taken before signing out no longer opens a page nor the API.
        stolen.goto("/syncs/pql_to_crm")
        stolen.wait_for_url(re.compile(r".*/login\?next=/syncs/pql_to_crm$"))
        assert thief.request.get("/api/v1/me").status == 401
        page.goto("/")
        page.wait_for_url(re.compile(r".*/login\?next=/$"))
    finally:
        thief.close()
        context.close()


def test_the_overview_reads_on_a_phone_and_its_chart_names_each_sync(
    browser: object, live_server: Any
) -> None:
    context = browser.new_context(  # type: ignore[attr-defined]
        viewport={"width": 390, "height": 844}, base_url=live_server.url
    )
    try:
        page = context.new_page()
        page.goto("/login")
        page.fill("#username", live_server.username(Role.VIEWER))
        page.fill("#password", live_server.passwords[Role.VIEWER])
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_server.url}/")
        legend = page.locator("svg.chart g.legend text")
        expect(legend.first).to_be_visible()
        names = legend.all_text_contents()
        assert any(n.startswith(("pql", "xss", "+")) for n in names), names
        # Wide tables scroll inside their frame; the page itself never scrolls sideways.
        page_width = page.evaluate("document.documentElement.scrollWidth")
        assert page_width <= 391, page_width
        shoot(page, "overview-phone.png")
    finally:
        context.close()
