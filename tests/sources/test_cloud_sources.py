"""Cloud warehouse sources, tested as far as possible without the service or its driver.

What runs here: config validation, the registry, the install hint when the driver is
missing (through the library and the CLI), the SQL each source sends to plan a model, and
the shared DB-API streaming path (driven by Python's own ``sqlite3`` DB-API driver). The
connection-failure tests run only where the vendor driver is installed.
"""

from __future__ import annotations

import importlib.util
import sqlite3
from pathlib import Path
from types import ModuleType
from typing import Any

import pyarrow as pa
import pytest
from tests.conftest import Builder
from tests.sources import closed_port

from backhaul.errors import ConfigError
from backhaul.errors import SourceError
from backhaul.plugins import Registry
from backhaul.sources.common import DbApiSource
from backhaul.sources.common import SourceConfig
from backhaul.sources.common import limit_zero
from backhaul.sources.redshift import declare_sql

pytestmark = pytest.mark.integration

# type -> (a valid config, the driver module, the package to install)
CLOUD: dict[str, tuple[dict[str, Any], str, str]] = {
    "snowflake": (
        {"account": "acme-xy12345", "user": "loader", "password": "pw", "warehouse": "wh"},
        "snowflake.connector",
        "snowflake-connector-python",
    ),
    "bigquery": (
        {"project": "acme-analytics", "location": "EU"},
        "google.cloud.bigquery",
        "google-cloud-bigquery",
    ),
    "redshift": (
        {"host": "127.0.0.1", "user": "loader", "password": "pw", "database": "dev"},
        "redshift_connector",
        "redshift-connector",
    ),
    "databricks": (
        {"server_hostname": "127.0.0.1", "http_path": "/sql/1.0/warehouses/abc", "token": "t"},
        "databricks.sql",
        "databricks-sql-connector",
    ),
    "clickhouse": (
        {"host": "127.0.0.1", "password": "pw"},
        "clickhouse_connect",
        "clickhouse-connect",
    ),
    "trino": ({"host": "127.0.0.1", "user": "loader", "catalog": "hive"}, "trino.dbapi", "trino"),
}


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def open_source(type_: str, **overrides: Any) -> Any:
    cls = Registry.discover().source(type_)
    config = cls.config_model.model_validate({"type": type_, **CLOUD[type_][0], **overrides})
    return cls(config, Path("."))


@pytest.mark.parametrize("type_", sorted(CLOUD))
def test_config_validates_and_rejects_unknown_keys(type_: str) -> None:
    cls = Registry.discover().source(type_)
    config = cls.config_model.model_validate({"type": type_, **CLOUD[type_][0]})
    assert config.type == type_ and config.connect_timeout == 10
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        cls.config_model.model_validate({"type": type_, **CLOUD[type_][0], "pasword": "x"})
    with pytest.raises(ValueError, match="Field required"):
        cls.config_model.model_validate({"type": type_})


@pytest.mark.parametrize("type_", sorted(CLOUD))
def test_missing_driver_says_what_to_install(type_: str) -> None:
    _, module, package = CLOUD[type_]
    if installed(module):
        pytest.skip(f"{module} is installed here")
    src = open_source(type_)  # the class itself loads without its driver
    assert src.attach(None, "wh") is False
    for call in (src.check, lambda: src.columns("SELECT 1"), lambda: src.stream("SELECT 1")):
        with pytest.raises(ConfigError) as err:
            call()
        assert f"run `pip install {package}`" in err.value.message
        assert f"the `{type_}` extra" in err.value.message
        assert err.value.exit_code == 2
    src.close()


@pytest.mark.parametrize("type_", sorted(CLOUD))
def test_planning_sql_per_dialect(type_: str) -> None:
    src = open_source(type_)
    sql = limit_zero("SELECT id,\n  email FROM crm.users;", src.dialect)
    # The model keeps its line numbers and is only planned, never read in full.
    assert sql.startswith("SELECT * FROM (SELECT id,\n  email FROM crm.users\n)")
    assert sql.endswith("LIMIT 0")


def test_limit_zero_follows_the_dialect() -> None:
    assert limit_zero("SELECT 1", "tsql") == "SELECT TOP 0 * FROM (SELECT 1\n) AS backhaul_q"


def test_redshift_streams_through_a_declared_cursor() -> None:
    assert declare_sql("SELECT * FROM events;\n") == (
        "DECLARE backhaul_cursor NO SCROLL CURSOR FOR SELECT * FROM events"
    )


def test_messages_name_the_warehouse_without_secrets() -> None:
    assert open_source("snowflake", database="PROD").where == "acme-xy12345/PROD"
    assert open_source("clickhouse").where == "127.0.0.1:8123/default"
    assert open_source("redshift").where == "127.0.0.1:5439/dev"
    for type_ in CLOUD:
        assert "pw" not in open_source(type_).where.split("/")[-1]


@pytest.mark.parametrize("type_", ["clickhouse", "redshift", "trino"])
def test_closed_port_is_a_clear_source_error(type_: str) -> None:
    pytest.importorskip(CLOUD[type_][1])
    port = closed_port()
    src = open_source(type_, port=port, connect_timeout=2)
    with pytest.raises(SourceError) as err:
        src.check()
    assert f"cannot connect to {type_} source at 127.0.0.1:{port}" in err.value.message
    assert "\n" not in err.value.message


def test_cli_reports_the_missing_driver(project: Builder) -> None:
    if installed("snowflake.connector"):
        pytest.skip("snowflake-connector-python is installed here")
    project.write("sources/wh.yml", {"type": "snowflake", **CLOUD["snowflake"][0]})
    project.model("users", "SELECT id, email FROM users")
    project.sqlite_destination()
    project.sync("to_db")
    for command in (["validate"], ["plan", "to_db"]):
        result = project.cli(*command)
        assert result.returncode == 2, result.stderr
        assert "pip install snowflake-connector-python" in result.stderr
        assert "Traceback" not in result.stderr


# --- the shared DB-API path, driven by a real DB-API driver ---------------------------


class SQLiteConfig(SourceConfig):
    path: str


class DbApiOverSQLite(DbApiSource[SQLiteConfig]):
    """The cloud sources' shared code, connected through the standard-library driver."""

    config_model = SQLiteConfig
    kind = "sqlite-dbapi"
    dialect = "sqlite"
    driver = "sqlite3"
    extra = "none"

    def _where(self) -> str:
        return self.config.path

    def _open(self, module: ModuleType) -> Any:
        return module.connect(f"file:{self.config.path}?mode=ro", uri=True)

    def _arrow_type(self, desc: Any) -> pa.DataType | None:
        return pa.int64() if desc[0] == "id" else None


def test_shared_dbapi_path_streams_bounded_batches(tmp_path: Path) -> None:
    path = tmp_path / "w.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE t (id INTEGER, name TEXT)")
    con.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"n{i}") for i in range(250)])
    con.commit()
    con.close()
    src = DbApiOverSQLite(SQLiteConfig(type="x", path=str(path)), tmp_path)
    try:
        src.check()
        assert list(src.columns("SELECT id, name FROM t")) == ["id", "name"]
        batches = list(src.stream("SELECT id, name FROM t ORDER BY id;", batch_size=100))
        assert [b.num_rows for b in batches] == [100, 100, 50]
        assert batches[2].to_pylist()[-1] == {"id": 249, "name": "n249"}
        with pytest.raises(SourceError, match="no such table: nope"):
            src.columns("SELECT * FROM nope")
    finally:
        src.close()
    missing = DbApiOverSQLite(SQLiteConfig(type="x", path=str(tmp_path / "no.db")), tmp_path)
    with pytest.raises(SourceError) as err:
        missing.check()
    assert err.value.message.startswith(f"cannot connect to sqlite-dbapi source at {tmp_path}")
    assert err.value.message.endswith("check the host, credentials and network access")
