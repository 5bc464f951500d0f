"""Model SQL made ready to nest in a subquery (sources/common.py: strip_sql)."""

from __future__ import annotations

import pytest

from backhaul.sources.common import holds_query
from backhaul.sources.common import strip_sql


@pytest.mark.parametrize(
    ("sql", "nested"),
    [
        ("SELECT 1\n  \n", "SELECT 1"),
        # Blank lines before the query stay: the warehouse's line numbers are the file's.
        ("\n\nSELECT 1;\n", "\n\nSELECT 1"),
        ("SELECT 1;", "SELECT 1"),
        ("SELECT 1 ;\n ;\n", "SELECT 1"),
        ("SELECT 1; -- done", "SELECT 1"),
        ("SELECT 1; /* one */ ; -- two\n", "SELECT 1"),
        # A comment with no semicolon before it stays: the subquery closes on a new line.
        ("SELECT 1 -- the end;", "SELECT 1 -- the end;"),
        # `;` and `--` inside a string or a quoted name are not the end of the statement.
        ("SELECT 'a;--' AS x; -- c", "SELECT 'a;--' AS x"),
        ('SELECT 1 AS "b;--"; /* c */', 'SELECT 1 AS "b;--"'),
    ],
)
def test_semicolons_at_the_end_go_with_the_comments_after_them(sql: str, nested: str) -> None:
    assert strip_sql(sql) == nested


def test_two_statements_are_left_for_the_warehouse_to_refuse() -> None:
    assert (
        strip_sql("CREATE TABLE t AS SELECT 1; SELECT 2;") == "CREATE TABLE t AS SELECT 1; SELECT 2"
    )


def test_sql_the_tokenizer_cannot_read_is_left_as_written() -> None:
    # An unterminated string: only the plain trailing semicolons go.
    assert strip_sql("SELECT 'abc; -- x;") == "SELECT 'abc; -- x"


@pytest.mark.parametrize(
    ("sql", "holds"),
    [
        ("", False),
        (" \n", False),
        ("-- to do", False),
        (";\n/* soon */ ;", False),
        ("SELECT 1", True),
        ("FROM users", True),  # DuckDB's FROM-first query: the warehouse judges it
        ("SELECT 'unterminated", True),  # unreadable here: the warehouse says why
    ],
)
def test_holds_query(sql: str, holds: bool) -> None:
    assert holds_query(sql) is holds
