"""``backhaul test``: audience test cases run on in-memory DuckDB, with no warehouse and no
credentials, print pass/fail with a diff of keys, and exit 1 on a failure."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.audiences.projects import _files as project_files
from tests.audiences.projects import audience_file
from tests.audiences.projects import write
from tests.conftest import run_cli

from backhaul import api
from backhaul.audiences.cases import run_tests
from backhaul.errors import ConfigError

pytestmark = pytest.mark.integration

ACTIVE_EU = """\
schema: people
conditions:
  - {column: country, op: in, value: [FR, DE]}
  - {related: accounts, where: [{column: plan, op: equals, value: enterprise}]}
  - {event: visits, at_least: 2, within_last_days: 7, where: [{column: page, op: starts_with, value: /pricing}]}
  - {not_in_audience: blocked}
tests:
  - name: active enterprise people in Europe are in
    now: 2024-06-15 12:00:00
    rows:
      people:
        - {id: 1, country: FR, account_id: 7}
        - {id: 2, country: DE, account_id: 7}
        - {id: 3, country: US, account_id: 7}
        - {id: 4, country: FR, account_id: 8}
        - {id: 5, country: FR, account_id: 7, name: "O'Brien"}
      accounts:
        - {id: 7, plan: enterprise}
        - {id: 8, plan: free}
      visits:
        - {person_id: 1, at: 2024-06-14 09:00:00, page: /pricing}
        - {person_id: 1, at: 2024-06-15 10:00:00, page: /pricing/teams}
        - {person_id: 2, at: 2024-06-14 09:00:00, page: /pricing}
        - {person_id: 2, at: 2024-05-01 09:00:00, page: /pricing}
        - {person_id: 3, at: 2024-06-14 09:00:00, page: /pricing}
        - {person_id: 3, at: 2024-06-14 10:00:00, page: /pricing}
        - {person_id: 5, at: 2024-06-14 09:00:00, page: /pricing}
        - {person_id: 5, at: 2024-06-14 10:00:00, page: /pricing}
    expect_in: [1]
    expect_out: [2, 3, 4, 5]
  - name: a wrong expectation shows the keys
    now: 2024-06-15
    rows:
      people:
        - {id: 1, country: FR, account_id: 7}
        - {id: 9, country: FR, account_id: 7, name: blocked}
      accounts:
        - {id: 7, plan: enterprise}
      visits:
        - {person_id: 9, at: 2024-06-14 09:00:00, page: /pricing}
        - {person_id: 9, at: 2024-06-14 10:00:00, page: /pricing}
    expect_in: [1]
    expect_out: [2, 9]
"""
BLOCKED = """\
schema: people
conditions:
  - {column: name, op: equals, value: "O'Brien"}
tests:
  - name: O'Brien is blocked
    rows:
      people:
        - {id: 5, name: "O'Brien"}
        - {id: 6, name: Brien}
    expect_in: [5]
    expect_out: [6]
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A project whose warehouse cannot be reached: a password from an unset variable."""
    root = tmp_path / "proj"
    project_files(
        root,
        "type: postgres\nurl: postgresql://ci:${env:BH_AUDIENCE_TEST_UNSET}@127.0.0.1:9/none\n",
        "",
    )
    audience_file(root, "active_eu", ACTIVE_EU)
    audience_file(root, "blocked", BLOCKED)
    return root


def test_cases_run_without_a_warehouse_and_report_key_diffs(root: Path) -> None:
    results = run_tests(api.load_project(root))
    assert [(r.audience, r.case, r.passed) for r in results] == [
        ("active_eu", "active enterprise people in Europe are in", True),
        ("active_eu", "a wrong expectation shows the keys", False),
        ("blocked", "O'Brien is blocked", True),
    ]
    wrong = results[1]
    assert (wrong.missing, wrong.unexpected, wrong.error) == ([1], [9], None)


def test_cli_prints_each_case_and_exits_1_on_a_failure(root: Path) -> None:
    done = run_cli("test", "-C", str(root))
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "PASS  active_eu: active enterprise people in Europe are in"
    assert lines[1] == "FAIL  active_eu: a wrong expectation shows the keys"
    assert lines[2].strip() == "- expected in, not selected: 1"
    assert lines[3].strip() == "+ expected out, but selected: 9"
    assert lines[4] == "PASS  blocked: O'Brien is blocked"
    assert lines[-1] == "2 passed, 1 failed"
    only = run_cli("test", "blocked", "-C", str(root))
    assert only.returncode == 0, only.stdout
    assert only.stdout.splitlines()[-1] == "1 passed, 0 failed"


def test_an_unknown_audience_is_a_configuration_error(root: Path) -> None:
    with pytest.raises(ConfigError, match="unknown audience `nope`"):
        run_tests(api.load_project(root), ["nope"])
    done = run_cli("test", "nope", "-C", str(root))
    assert done.returncode == 2
    assert "unknown audience `nope` (known: active_eu, blocked)" in done.stderr


def test_fixture_rows_that_do_not_fit_their_column_fail_the_case(root: Path) -> None:
    audience_file(
        root,
        "blocked",
        BLOCKED.replace("{id: 6, name: Brien}", "{id: 6, name: Brien, born: someday}"),
    )
    results = run_tests(api.load_project(root), ["blocked"])
    assert results[0].error == (
        "rows of `people`: column `born` expects a date (YYYY-MM-DD), got the text 'someday'"
    )
    assert not results[0].passed


def test_no_cases_is_not_a_failure(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    project_files(root, "type: duckdb\n", "")
    write(root, "audiences/all.yml", "schema: people\n")
    done = run_cli("test", "-C", str(root))
    assert done.returncode == 0
    assert "no audience test cases" in done.stdout
