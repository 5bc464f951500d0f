"""Warehouse refusals are classified from the driver's own error (class, SQLSTATE), on real
DuckDB and Postgres errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb
import psycopg
import pytest

from backhaul.errors import SourceError
from backhaul.errors import SourceFailure
from backhaul.state.warehouse_conn import failure_of
from backhaul.state.warehouse_conn import permission_error

PG = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


def _raised(action: Callable[[], object]) -> BaseException:
    with pytest.raises(Exception) as caught:
        action()
    return caught.value


def test_duckdb_errors(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    duckdb.connect(str(path)).close()
    con = duckdb.connect()
    con.execute(f"ATTACH '{path}' AS w (READ_ONLY)")
    assert failure_of(_raised(lambda: con.execute("CREATE TABLE w.t (a INT)"))) is (
        SourceFailure.PERMISSION
    )
    assert failure_of(_raised(lambda: con.execute("SELECT * FROM w.nope"))) is (
        SourceFailure.MISSING
    )
    assert failure_of(_raised(lambda: con.execute("SELECT 'x'::INTEGER"))) is SourceFailure.DATA
    assert failure_of(_raised(lambda: con.execute("SELEC 1"))) is None  # a syntax error
    con.close()


@pytest.mark.integration
def test_postgres_errors_by_sqlstate() -> None:
    with psycopg.connect(PG, autocommit=True) as con:
        missing = _raised(lambda: con.execute("SELECT * FROM backhaul_no_such_table"))
        assert failure_of(missing) is SourceFailure.MISSING
        assert failure_of(_raised(lambda: con.execute("SELECT 1 / 0"))) is SourceFailure.DATA
        with pytest.raises(psycopg.Error) as caught, con.transaction():
            con.execute("SET TRANSACTION READ ONLY")
            con.execute("CREATE TABLE backhaul_read_only_probe (a int)")
        assert failure_of(caught.value) is SourceFailure.PERMISSION
        assert permission_error(caught.value)
        # The text alone no longer decides: a missing table whose name says "read only".
        quoted = _raised(lambda: con.execute('SELECT * FROM "read only permission denied"'))
        assert failure_of(quoted) is SourceFailure.MISSING and not permission_error(quoted)


def test_a_source_error_keeps_its_own_failure() -> None:
    assert failure_of(SourceError("x", failure=SourceFailure.MISSING)) is SourceFailure.MISSING
    assert failure_of(SourceError("permission denied")) is None
