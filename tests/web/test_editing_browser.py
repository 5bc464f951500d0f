"""The editors in a real browser: in a fresh Git project, an editor creates a DuckDB source,
a model, a HubSpot destination (the emulator on loopback, its token as ``${env:...}``) and
a sync entirely in the UI (the destination's connection tested before it is saved), runs
the sync and sees it succeed. The files validate with the CLI, read as a person would write
them, each save is one commit by the editor, a hand comment in the sync survives an edit in
the UI, delete asks first, and no commit holds the token. Screenshots go where ``tests/browser.py`` says (``docs/img/editor-*.png`` with
``BACKHAUL_SCREENSHOTS=docs/img``)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.browser import SHOTS
from tests.browser import chromium
from tests.browser import requires_chromium
from tests.conftest import run_cli
from tests.web.editing_env import TOKEN_ENV
from tests.web.editing_env import EditEnv
from tests.web.editing_env import edit_env

from backhaul.web.auth import Role

playwright_sync = pytest.importorskip("playwright.sync_api")
pytestmark = [pytest.mark.integration, requires_chromium]
VIEWPORT = {"width": 1280, "height": 900}
TIMEOUT_MS = 30_000

SOURCE = "type: duckdb\npath: warehouse.duckdb\n"
MODEL = "source: warehouse\nprimary_key: [id]\n"
SQL = "SELECT id, email, first_name\nFROM leads\n"
SYNC = """\
model: leads
destination: crm
mode: upsert
match:
  fields: [email]
mappings:
  - {column: email, field: email}
  - {column: first_name, field: firstname}
"""


def destination(url: str) -> str:
    return f"type: hubspot\ntoken: ${{env:{TOKEN_ENV}}}\nbase_url: {url}\nobject: contacts\n"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[EditEnv]:
    with edit_env(tmp_path) as found:
        yield found


def expect(locator: Any) -> Any:
    return playwright_sync.expect(locator)


def signed_in(browser: Any, env: EditEnv) -> tuple[Any, Any, list[str]]:
    """A browser context and page signed in as the editor, and the page's script errors."""
    context = browser.new_context(viewport=VIEWPORT, base_url=env.url)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto("/login")
    page.fill("#username", env.username(Role.EDITOR))
    page.fill("#password", env.passwords[Role.EDITOR])
    page.click("button[type=submit]")
    page.wait_for_url(f"{env.url}/")
    return context, page, errors


def _saved(page: Any, kind: str, name: str, errors: list[str] | None = None) -> None:
    page.click("#save")
    try:
        page.wait_for_url(re.compile(rf".*/edit/{kind}/{name}\?saved=1$"), timeout=TIMEOUT_MS)
    except playwright_sync.TimeoutError:
        said = page.locator("#save-status").inner_text() + str(
            page.evaluate(
                "[...document.querySelectorAll('#editor-form :invalid')].map(e => e.outerHTML)"
            )
        )
        problems = page.locator("#editor-form").inner_text()
        message = f"{kind}/{name} was not saved: {said}\n{errors}\n{problems}"
        raise AssertionError(message) from None


def test_an_editor_builds_a_sync_in_the_ui_and_runs_it(env: EditEnv) -> None:
    with chromium() as browser:
        context, page, errors = signed_in(browser, env)
        missing: list[str] = []
        page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
        page.click("nav >> text=Edit")
        page.wait_for_url("**/edit")

        # A source: a DuckDB file; test its connection.
        page.click("#new-sources")
        page.select_option("#f-type", "duckdb")
        page.wait_for_url("**/edit/sources/new?type=duckdb*")
        page.fill("#f-name", "warehouse")
        page.fill("#f-path", "warehouse.duckdb")
        _saved(page, "sources", "warehouse")
        page.click("#test-connection")
        expect(page.locator("#test-result")).to_contain_text("reachable")

        # A model: SQL, preview, primary key picked from the preview's columns.
        page.goto("/edit/models/new")
        page.fill("#f-name", "leads")
        page.select_option("#f-source", "warehouse")
        page.fill("#f-sql", SQL)
        page.click("#preview-run")
        expect(page.locator("#preview-table")).to_contain_text("ann@example.com")
        page.check("[data-pk=id]")
        expect(page.locator("#f-primary_key")).to_have_value("id")
        shoot(page, "editor-model.png")
        _saved(page, "models", "leads")

        # A destination: HubSpot, its token named as an environment variable.
        page.goto("/edit/destinations/new")
        page.select_option("#f-type", "hubspot")
        page.wait_for_url("**/edit/destinations/new?type=hubspot*")
        page.fill("#f-name", "crm")
        page.fill("#f-token", "BACKHAUL_EDIT_TEST_UNSET_TOKEN")
        page.fill("#f-base_url", env.hubspot_url)
        page.fill("#f-object", "contacts")
        # Tested before it is saved: a variable that is not set is what a save would
        # refuse, said as the save says it; then fixed.
        page.click("#test-connection")
        expect(page.locator("#test-result.failed")).to_contain_text("would not validate")
        expect(page.locator("#save-problems")).to_contain_text(
            "destinations/crm.yml:2: token: environment variable BACKHAUL_EDIT_TEST_UNSET_TOKEN"
        )
        page.fill("#f-token", TOKEN_ENV)
        page.click("#test-connection")
        expect(page.locator("#test-result.ok")).to_contain_text("reachable")
        assert not (env.root / "destinations").exists()
        _saved(page, "destinations", "crm")
        page.click("#test-connection")
        expect(page.locator("#test-result")).to_contain_text("reachable")

        # A sync: the mapping editor lists the model's columns and HubSpot's properties.
        page.goto("/edit/syncs/new")
        page.fill("#f-name", "leads_to_hubspot")
        page.select_option("#f-model", "leads")
        page.select_option("#f-destination", "crm")
        page.select_option("#f-mode", "upsert")
        expect(page.locator("#fields-note")).to_contain_text("fields listed by the destination")
        page.click("#add-mapping")
        row = page.locator("#mapping-editor tbody tr").nth(0)
        row.locator(".map-column").select_option("email")
        expect(row.locator(".map-field")).to_have_value("email")  # a property of that name
        expect(row.locator(".map-hint")).to_contain_text("unique")
        row.locator(".map-match").check()
        page.click("#add-mapping")
        row = page.locator("#mapping-editor tbody tr").nth(1)
        row.locator(".map-column").select_option("first_name")
        row.locator(".map-field").fill("firstname")
        row.locator(".map-field").press("Escape")  # close the list of suggestions
        row.locator(".map-field").blur()
        expect(row.locator(".map-hint")).to_contain_text("text")
        shoot(page, "editor-sync.png")
        _saved(page, "syncs", "leads_to_hubspot", errors)

        # Run it from its page, as an operator would.
        page.goto("/syncs/leads_to_hubspot")
        page.click("#run-now")
        page.wait_for_url(re.compile(r".*/runs/[0-9a-f]+$"))
        expect(page.locator("#run-status .badge")).to_have_text("succeeded", timeout=TIMEOUT_MS)
        assert set(env.hubspot.records("contacts", "email")) == {
            "ann@example.com",
            "bob@example.com",
            "cy@example.com",
        }

        # The files, as a person would write them; the CLI finds them valid.
        files = {
            "sources/warehouse.yml": SOURCE,
            "models/leads.yml": MODEL,
            "models/leads.sql": SQL,
            "destinations/crm.yml": destination(env.hubspot_url),
            "syncs/leads_to_hubspot.yml": SYNC,
        }
        for rel, text in files.items():
            assert (env.root / rel).read_text(encoding="utf-8") == text, rel
        assert run_cli("validate", "-C", str(env.root)).returncode == 0
        raw = env.git("log", "--format=%x00%an <%ae>|%s", "--name-only")
        commits = [[ln for ln in c.splitlines() if ln] for c in raw.split("\x00")[1:]]
        who = "editor_user <editor_user@users.backhaul.invalid>|"
        assert commits[:4] == [
            [f"{who}Create sync leads_to_hubspot (leads -> crm)", "syncs/leads_to_hubspot.yml"],
            [f"{who}Create destination crm (hubspot)", "destinations/crm.yml"],
            [f"{who}Create model leads", "models/leads.sql", "models/leads.yml"],
            [f"{who}Create source warehouse (duckdb)", "sources/warehouse.yml"],
        ]

        # A hand comment survives an edit made in the UI.
        sync_file = env.root / "syncs" / "leads_to_hubspot.yml"
        hand = "# Owned by the growth team; ask before changing the mode.\n" + SYNC.replace(
            "destination: crm\n", "destination: crm   # the sandbox account\n"
        ).replace("field: email}\n", "field: email}   # HubSpot's unique property\n")
        sync_file.write_text(hand, encoding="utf-8")
        env.git("commit", "-qam", "Note who owns the sync")
        page.goto("/edit/syncs/leads_to_hubspot")
        expect(page.locator("#mapping-editor tbody tr")).to_have_count(2)
        page.select_option("#f-mode", "mirror")
        page.click("#save")
        expect(page.locator("#save-status")).to_contain_text(
            "Edit sync leads_to_hubspot: mode upsert -> mirror"
        )
        assert sync_file.read_text(encoding="utf-8") == hand.replace("mode: upsert", "mode: mirror")
        assert env.git("log", "-1", "--format=%an|%s").strip() == (
            "editor_user|Edit sync leads_to_hubspot: mode upsert -> mirror"
        )

        # A bad value: the CLI's message beside the field, nothing saved.
        page.fill("#f-batch_size", "0")
        page.click("#save")
        expect(page.locator('.field-problems[data-key="batch_size"]')).to_contain_text(
            "must be greater than 0"
        )
        assert "batch_size" not in sync_file.read_text(encoding="utf-8")

        # Delete asks first; a source still in use stays, an unused sync goes in one commit.
        page.goto("/edit/sources/warehouse")
        page.click("#delete-link")
        expect(page.locator("#used-by")).to_contain_text("model leads")
        page.click("#confirm-delete")
        expect(page.locator("#save-problems")).to_contain_text("unknown source `warehouse`")
        assert (env.root / "sources" / "warehouse.yml").exists()
        page.goto("/edit/syncs/leads_to_hubspot/delete")
        page.click("#confirm-delete")
        page.wait_for_url(f"{env.url}/edit")
        expect(page.locator("#edit-syncs")).to_contain_text("None yet")
        assert not sync_file.exists()
        assert env.git("log", "-1", "--format=%an|%s").strip() == (
            "editor_user|Delete sync leads_to_hubspot"
        )

        assert errors == []
        assert [u for u in missing if not u.endswith("/favicon.ico")] == []
        # The token is in no committed file and no commit.
        assert env.token not in env.git("log", "-p", "--all")
        context.close()


def shoot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name), full_page=True)


def test_an_editor_maps_values_templates_casts_and_nulls_as_the_files_do(env: EditEnv) -> None:
    """Every kind of mapping a file can hold is made in the UI: a column with a cast and a
    nulls choice, one value for every record, a Liquid template; an existing file's casts
    and nulls show and stay; the file reads as a person would write it and the run sends
    what it says."""
    files = {
        "sources/warehouse.yml": SOURCE,
        "models/leads.yml": MODEL,
        "models/leads.sql": SQL,
        "destinations/crm.yml": destination(env.hubspot_url),
        "syncs/leads_to_hubspot.yml": SYNC.replace(
            "field: firstname}", "field: firstname, cast: string, nulls: skip}"
        ),
    }
    for rel, text in files.items():
        path = env.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    env.git("add", ".")
    env.git("commit", "-qm", "A sync written by hand")

    with chromium() as browser:
        context, page, errors = signed_in(browser, env)
        page.goto("/edit/syncs/leads_to_hubspot")
        expect(page.locator("#fields-note")).to_contain_text("fields listed by the destination")
        rows = page.locator("#mapping-editor tbody tr")
        expect(rows).to_have_count(2)
        expect(rows.nth(1).locator(".map-cast")).to_have_value("string")
        expect(rows.nth(1).locator(".map-nulls")).to_have_value("skip")
        expect(rows.nth(1).locator(".map-value")).to_be_hidden()

        def add_row(kind: str, text: str, field: str) -> Any:
            page.click("#add-mapping")
            row = rows.last
            row.locator(".map-kind").select_option(kind)
            row.locator(f".map-{kind}").fill(text)
            row.locator(".map-field").fill(field)
            return row

        row = add_row("template", "{{ first_name | upcase }} ({{ id }})", "lastname")
        expect(row.locator(".map-column")).to_be_hidden()
        row = add_row("value", "Acme", "company")
        expect(row.locator(".map-cast")).to_be_disabled()
        add_row("value", '"42"', "jobtitle")  # quoted: the text 42, not a number
        # The keys beyond the mappings are in the form too.
        page.fill("#f-schedule", "every: 1h")
        page.fill("#f-max_remove_pct", "5")
        page.fill("#f-tags", "growth, crm")
        page.click("#save")
        expect(page.locator("#save-status")).to_contain_text(
            "Edit sync leads_to_hubspot: mappings (2 -> 5 fields)"
        )

        # Opened again, each row shows what it holds.
        page.goto("/edit/syncs/leads_to_hubspot")
        expect(rows).to_have_count(5)
        expect(rows.nth(2).locator(".map-kind")).to_have_value("template")
        expect(rows.nth(2).locator(".map-template")).to_have_value(
            "{{ first_name | upcase }} ({{ id }})"
        )
        expect(rows.nth(4).locator(".map-value")).to_have_value('"42"')
        expect(page.locator("#f-schedule")).to_have_value("every: 1h\n")

        # The model's preview shows a MAP and a struct as JSON, not "[object Object]".
        page.goto("/edit/models/leads")
        page.fill(
            "#f-sql", "SELECT id, MAP {'plan': 'pro'} AS attrs, {'a': [1, 2]} AS s\nFROM leads"
        )
        page.click("#preview-run")
        expect(page.locator("#preview-table")).to_contain_text('{"plan":"pro"}')
        expect(page.locator("#preview-table")).to_contain_text('{"a":[1,2]}')
        assert errors == []
        context.close()

    text = (env.root / "syncs" / "leads_to_hubspot.yml").read_text(encoding="utf-8")
    assert text == SYNC.replace(
        "field: firstname}", "field: firstname, cast: string, nulls: skip}"
    ) + (
        # New rows take the style of the rows already there.
        "  - {template: '{{ first_name | upcase }} ({{ id }})', field: lastname}\n"
        "  - {value: Acme, field: company}\n"
        "  - {value: '42', field: jobtitle}\n"
        "schedule:\n"
        "  every: 1h\n"
        "max_remove_pct: 5\n"
        "tags: [growth, crm]\n"
    )
    assert run_cli("validate", "-C", str(env.root)).returncode == 0
    ran = run_cli("run", "leads_to_hubspot", "-C", str(env.root), env={TOKEN_ENV: env.token})
    assert ran.returncode == 0, ran.stdout + ran.stderr
    ann = env.hubspot.records("contacts", "email")["ann@example.com"]
    assert (ann["firstname"], ann["lastname"], ann["company"], ann["jobtitle"]) == (
        "Ann",
        "ANN (1)",
        "Acme",
        "42",
    )
