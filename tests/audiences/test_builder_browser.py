"""The audience builder in a real browser (Debian's Chromium through Playwright).

An editor builds an audience with nested groups, a related-model condition and an event
condition, saves it (a commit by them), reopens and edits it; the size the page shows is
checked against a hand-written SQL count over the same DuckDB file; a viewer can explore
but not save. Screenshots go to a scratch folder, or to ``docs/img/`` (shown in
``docs/audiences.md``) when ``BACKHAUL_SCREENSHOTS=docs/img`` is set.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import duckdb
import pytest
from tests.audiences.builder_env import PASSWORDS
from tests.audiences.builder_env import BuilderEnv
from tests.audiences.builder_env import builder_env
from tests.browser import SHOTS
from tests.browser import chromium
from tests.browser import requires_chromium

from backhaul.audiences.audience import AudienceConfig
from backhaul.audiences.editing import file_data
from backhaul.audiences.writer import dump_audience
from backhaul.web.auth import Role

playwright_sync = pytest.importorskip("playwright.sync_api")

SETTLE_MS = 60_000
pytestmark = [pytest.mark.integration, requires_chromium]

SAVED = """\
schema: people
description: Buyers in France and Germany
conditions:
  - {column: country, op: in, value: [FR, DE]}
  - any:
      - {column: age, op: gte, value: 40}
      - {related: accounts, where: [{column: plan, op: equals, value: enterprise}]}
      - all:
          - {column: vip, op: equals, value: true}
          - {event: visits, where: [{column: page, op: starts_with, value: /pricing}], at_least: 2, within_last_days: 30}
"""
EDITED = SAVED.replace("value: 40}", "value: 50}") + (
    "splits:\n"
    "  holdout: 10\n"
    "  groups:\n"
    "    - {name: group_a, percent: 45}\n"
    "    - {name: group_b, percent: 45}\n"
)


def members_sql(min_age: int) -> str:
    """The audience, written by hand."""
    return f"""
        SELECT p.id FROM people p
        WHERE p.id IS NOT NULL AND p.country IN ('FR', 'DE') AND (
          p.age >= {min_age}
          OR EXISTS (SELECT 1 FROM accounts a WHERE a.id = p.account_id AND a.plan = 'enterprise')
          OR (p.vip AND (
                SELECT count(*) FROM visits v
                WHERE v.person_id = p.id AND starts_with(v.page, '/pricing')
                  AND v.at >= now()::TIMESTAMP - INTERVAL 30 DAY AND v.at <= now()::TIMESTAMP
              ) >= 2))
    """


def count(env: BuilderEnv, sql: str) -> int:
    with duckdb.connect(str(env.root / "wh.duckdb"), read_only=True) as con:
        row = con.execute(f"SELECT count(*) FROM ({sql})").fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BuilderEnv]:
    with builder_env(tmp_path_factory.mktemp("builder-browser")) as found:
        yield found


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as found:
        yield found


@pytest.fixture
def page_as(browser: Any, env: BuilderEnv) -> Iterator[Any]:
    contexts = []

    def sign_in(role: Role) -> Any:
        context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=env.url)
        contexts.append(context)
        page = context.new_page()
        page.goto("/login")
        page.fill("#username", env.username(role))
        page.fill("#password", PASSWORDS[role])
        page.click("button[type=submit]")
        page.wait_for_url(f"{env.url}/")
        return page

    yield sign_in
    for context in contexts:
        context.close()


def expect(locator: Any) -> Any:
    return playwright_sync.expect(locator)


def settled(page: Any) -> None:
    """Wait until the preview answered the latest change."""
    page.wait_for_selector("#builder[data-previewed]:not([data-pending])", timeout=SETTLE_MS)


def cond(page: Any, key: str) -> Any:
    return page.locator(f'[data-key="{key}"]')


def add(page: Any, key: str, what: str) -> None:
    page.select_option(f'select[data-add="{key}"]', what)


def shoot(page: Any, name: str, *, full_page: bool = False) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name), full_page=full_page)


def members_shown(page: Any) -> int:
    settled(page)
    return int(page.locator("#size-members").inner_text().replace(",", ""))


def build(page: Any) -> None:
    """Country in FR, DE, and any of: age >= 40, an enterprise account, or all of
    (vip, two pricing visits in 30 days)."""
    page.fill("#audience-name", "eu_buyers")
    page.fill("#audience-description", "Buyers in France and Germany")
    add(page, "conditions", "column")
    top = cond(page, "conditions.0")
    top.locator("select.column").select_option("country")
    cond(page, "conditions.0").locator("select.op").select_option("in")
    cond(page, "conditions.0").locator("input.list").fill("FR, DE")

    add(page, "conditions", "group")
    first = cond(page, "conditions.1.any.0")
    first.locator("select.column").select_option("age")
    cond(page, "conditions.1.any.0").locator("select.op").select_option("gte")
    cond(page, "conditions.1.any.0").locator("input.value").fill("40")

    add(page, "conditions.1.any", "related:accounts")
    cond(page, "conditions.1.any.1").locator("button.add-filter").click()
    plan = cond(page, "conditions.1.any.1.where.0")
    plan.locator("select.op").select_option("equals")
    cond(page, "conditions.1.any.1.where.0").locator("input.value").fill("enterprise")

    add(page, "conditions.1.any", "group")
    cond(page, "conditions.1.any.2").locator("select.match").first.select_option("all")
    vip = cond(page, "conditions.1.any.2.all.0")
    vip.locator("select.column").select_option("vip")
    cond(page, "conditions.1.any.2.all.0").locator("select.op").select_option("equals")

    add(page, "conditions.1.any.2.all", "event:visits")
    event = cond(page, "conditions.1.any.2.all.1")
    event.locator("input.count").fill("2")
    event.locator("button.add-filter").click()
    cond(page, "conditions.1.any.2.all.1.where.0").locator("select.op").select_option("starts_with")
    cond(page, "conditions.1.any.2.all.1.where.0").locator("input.value").fill("/pricing")


def test_an_editor_builds_saves_reopens_and_edits_an_audience(
    page_as: Any, env: BuilderEnv
) -> None:
    page = page_as(Role.EDITOR)
    page.click("nav >> text=Audiences")
    page.click("#new-people")
    page.wait_for_url("**/audiences/new?schema=people")
    build(page)
    page.select_option("#breakdown-column", "country")
    page.select_option("#overlap-with", "pricing_viewers")
    expected = count(env, members_sql(40))
    assert expected > 0
    assert members_shown(page) == expected
    # The size of each group on its own, beside it.
    group = cond(page, "conditions.1").locator("[data-size='conditions.1']")
    alone = count(env, members_sql(40).replace("p.country IN ('FR', 'DE') AND", ""))
    expect(group).to_have_text(f"{alone:,}")
    expect(page.locator("#sample tbody tr")).to_have_count(25)
    expect(page.locator("#sample tbody")).to_contain_text("***")
    expect(page.locator("#breakdown svg title").first).to_have_text("Members by country")
    expect(page.locator("#overlap-numbers")).to_contain_text("in both")
    page.click("#sql-panel summary")
    expect(page.locator("#sql")).to_contain_text("SELECT")
    shoot(page, "audience-builder.png")

    before = len(env.log())
    page.click("#save")
    page.wait_for_url("**/audiences/eu_buyers?saved=1")
    assert (env.root / "audiences/eu_buyers.yml").read_text(encoding="utf-8") == SAVED
    log = env.log()
    assert len(log) == before + 1
    assert log[0] == "editor_user <editor_user@users.backhaul.invalid>|Create audience eu_buyers"

    # Reopened: the same audience, the same size; edit it and save again.
    assert members_shown(page) == expected
    expect(cond(page, "conditions.1.any.2.all.1").locator("input.count")).to_have_value("2")
    cond(page, "conditions.1.any.0").locator("input.value").fill("50")
    page.click("#splits-panel summary")
    page.click("#add-splits")
    edited = count(env, members_sql(50))
    settled(page)
    matched = page.locator("#size-detail").inner_text().split(" of ")[0]
    assert int(matched.replace(",", "")) == edited
    assert members_shown(page) < edited  # the holdout is out
    page.click("#save")
    expect(page.locator("#save-status")).to_contain_text("commit")
    text = (env.root / "audiences/eu_buyers.yml").read_text(encoding="utf-8")
    assert text == EDITED
    assert env.log()[0].startswith(
        "editor_user <editor_user@users.backhaul.invalid>|Edit audience eu_buyers: conditions, splits"
    )
    # The saved file round-trips byte for byte, through the writer and through the page.
    config = AudienceConfig.model_validate(file_data(text))
    assert dump_audience(config, text) == text
    page.reload()
    settled(page)
    commits = len(env.log())
    page.click("#save")
    expect(page.locator("#save-status")).to_have_text("No change to save.")
    assert (env.root / "audiences/eu_buyers.yml").read_text(encoding="utf-8") == EDITED
    assert len(env.log()) == commits
    expect(page.locator("#size-splits")).to_contain_text("group_a")
    page.click("#splits-panel summary")
    expect(page.locator("td.split-size").first).to_contain_text("members")
    shoot(page, "audience-builder-saved.png", full_page=True)


def test_a_hand_written_audience_opens_as_written_with_its_tests(page_as: Any) -> None:
    page = page_as(Role.EDITOR)
    page.goto("/audiences/loyal")
    settled(page)
    expect(cond(page, "conditions.0").locator("input.list")).to_have_value("FR, DE")
    expect(cond(page, "conditions.1").locator("input.value")).to_have_value("1")
    expect(cond(page, "conditions.2").locator("input.value")).to_have_value("2000-01-01")
    expect(page.locator("#tests li")).to_have_count(1)
    expect(page.locator("#tests li")).to_contain_text("PASS")
    # A mistake is shown beside its field and nothing is saved.
    cond(page, "conditions.1").locator("input.value").fill("lots")
    settled(page)
    expect(cond(page, "conditions.1").locator(".field-error")).to_contain_text("number")
    page.click("#save")
    expect(page.locator("#save-status")).to_contain_text("problems")


def test_a_viewer_explores_but_cannot_save(page_as: Any, env: BuilderEnv) -> None:
    page = page_as(Role.VIEWER)
    page.goto("/audiences/loyal")
    settled(page)
    expect(page.locator("#save")).to_have_count(0)
    expect(page.locator("#read-only")).to_be_visible()
    # The server refuses too, whatever the page shows.
    token = page.locator("#builder").get_attribute("data-csrf")
    before = (env.root / "audiences/loyal.yml").read_text(encoding="utf-8")
    answer = page.request.put(
        f"{env.url}/api/v1/audiences/loyal",
        data={"name": "loyal", "schema": "people", "audience": {"conditions": []}, "base": ""},
        headers={"X-CSRF-Token": token},
    )
    assert answer.status == 403
    assert (env.root / "audiences/loyal.yml").read_text(encoding="utf-8") == before


def test_an_editor_saves_a_priority_list_and_reopens_it(page_as: Any, env: BuilderEnv) -> None:
    page = page_as(Role.EDITOR)
    page.goto("/audiences/loyal")
    settled(page)
    pick = page.locator("#priority-pick")
    pick.locator("input[value='pricing_viewers']").check()
    pick.locator("input[value='(this audience)']").check()
    settled(page)
    expect(page.locator("#priority li")).to_have_count(2)
    expect(page.locator("#priority li").first).to_contain_text("pricing_viewers")
    page.fill("#priority-name", "offers_ui")
    page.click("#priority-save")
    expect(page.locator("#priority-status")).to_contain_text("Saved priority_lists/offers_ui.yml")
    assert (env.root / "priority_lists/offers_ui.yml").read_text(encoding="utf-8") == (
        "audiences:\n  - pricing_viewers\n  - loyal\n"
    )
    # Reopened, the saved list ticks its audiences in its order.
    page.goto("/audiences/loyal")
    settled(page)
    page.select_option("#priority-saved", "offers_ui")
    settled(page)
    expect(pick.locator("input[value='pricing_viewers']")).to_be_checked()
    expect(pick.locator("input[value='(this audience)']")).to_be_checked()
    expect(page.locator("#priority li").first).to_contain_text("pricing_viewers")
    expect(page.locator("#priority-name")).to_have_value("offers_ui")


def test_a_viewer_sees_no_priority_save(page_as: Any) -> None:
    page = page_as(Role.VIEWER)
    page.goto("/audiences/loyal")
    settled(page)
    expect(page.locator("#priority-save")).to_have_count(0)
