"""The examples in docs/audiences.md work as written: the schema, the audience with its test
case, and the sync, in a project built around them."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
from tests.audiences.projects import write
from tests.conftest import sqlite_rows

from backhaul import api
from backhaul.audiences.cases import run_tests
from backhaul.config.checks import check_project

DOC = Path(__file__).resolve().parents[2] / "docs" / "audiences.md"


def _block(first_line: str) -> str:
    """The fenced YAML block of the page that starts with ``first_line``."""
    for body in re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S):
        if body.startswith(first_line):
            return str(body)
    raise AssertionError(f"no yaml block starting with {first_line!r} in {DOC}")


def test_the_page_examples_validate_pass_their_tests_and_sync(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    with duckdb.connect(str(root / "wh.duckdb")) as con:
        con.execute(
            "CREATE TABLE users AS SELECT * FROM (VALUES "
            "(1, 'ann@example.com', 'Ann', 'FR', 'pro', 5000.0, TIMESTAMP '2023-01-05', 7), "
            "(2, 'bob@example.com', 'Bob', 'DE', 'free', 10.0, TIMESTAMP '2023-02-05', 7), "
            "(3, 'cy@example.com', 'Cy', 'US', 'pro', 2000.0, TIMESTAMP '2023-03-05', 8)) "
            "t(user_id, email, first_name, country, plan, lifetime_value, signup_at, account_id)"
        )
        con.execute(
            "CREATE TABLE accounts AS SELECT * FROM (VALUES (7, 'enterprise', 50), "
            "(8, 'starter', 3)) t(id, plan, seats)"
        )
        con.execute(
            "CREATE TABLE subscriptions (user_id BIGINT, product VARCHAR, mrr DOUBLE, "
            "status VARCHAR)"
        )
        con.execute(
            "CREATE TABLE page_views AS SELECT 1 AS user_id, "
            "CAST(now() AS TIMESTAMP) - INTERVAL (i) DAY AS viewed_at, '/pricing' AS path, "
            "NULL::VARCHAR AS referrer FROM range(1, 4) t(i)"
        )
    write(root, "backhaul.yml", "name: docs\n")
    write(root, "sources/wh.yml", "type: duckdb\npath: wh.duckdb\n")
    for model, key in (
        ("users", "user_id"),
        ("accounts", "id"),
        ("subscriptions", "[user_id, product]"),
        ("page_views", "[user_id, viewed_at]"),
    ):
        write(root, f"models/{model}.yml", f"source: wh\nprimary_key: {key}\ntable: {model}\n")
    write(root, "audience_schemas/people.yml", _block("# audience_schemas/people.yml"))
    audience = _block("# audiences/eu_enterprise.yml") + _block("tests:")
    write(root, "audiences/eu_enterprise.yml", audience)
    write(
        root,
        "audiences/champions.yml",
        "schema: people\nconditions:\n  - {column: plan, op: equals, value: enterprise}\n",
    )
    write(
        root,
        "audiences/churned.yml",
        "schema: people\nconditions:\n"
        "  - {event: page_views, did_not: true, within_last_days: 90}\n",
    )
    write(root, "destinations/crm.yml", "type: sqlite\npath: crm.sqlite\ncreate_table: true\n")
    write(root, "syncs/eu_enterprise_to_list.yml", _block("# syncs/eu_enterprise_to_list.yml"))

    project = api.load_project(root)
    assert check_project(project) == []
    results = run_tests(project)
    assert [r.passed for r in results] == [True], results
    summary = api.run(project, "eu_enterprise_to_list")
    assert summary.status.value == "succeeded", summary
    rows = sqlite_rows(root / "crm.sqlite", "eu_enterprise_list", order="user_id")
    assert [r[:2] for r in rows] == [(1, "ann@example.com")]
    assert rows[0][2] in ("email_first", "call_first")
