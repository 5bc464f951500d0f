"""The demo warehouse: shape, plausibility, determinism, and what a simulated day changes."""

from __future__ import annotations

import importlib.util
import shutil
from importlib.resources import files
from pathlib import Path
from typing import Any

import duckdb
import pytest

from backhaul.demo.warehouse import ChangeStats
from backhaul.demo.warehouse import apply_changes
from backhaul.demo.warehouse import build_warehouse
from backhaul.errors import SourceError

TABLES = ("accounts", "users", "events", "subscriptions", "demo_clock")
MODEL_SQL = files("backhaul.demo").joinpath("pql_users.sql").read_text(encoding="utf-8")
HEALTH_SQL = files("backhaul.demo").joinpath("accounts_health.sql").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("wh") / "warehouse.duckdb"
    build_warehouse(path)
    return path


def _one(con: duckdb.DuckDBPyConnection, sql: str) -> object:
    row = con.execute(sql).fetchone()
    assert row is not None
    return row[0]


def test_tables_have_the_documented_columns(warehouse: Path) -> None:
    con = duckdb.connect(str(warehouse), read_only=True)
    columns = {
        table: [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()] for table in TABLES
    }
    con.close()
    assert columns["accounts"] == [
        "account_id", "name", "domain", "industry", "country", "plan", "seats", "mrr",
        "created_at",
    ]  # fmt: skip
    assert columns["users"] == [
        "user_id", "account_id", "email", "first_name", "last_name", "title", "country",
        "signed_up_at", "last_seen_at", "is_admin",
    ]  # fmt: skip
    assert columns["events"] == ["event_id", "user_id", "event_name", "occurred_at"]
    assert columns["subscriptions"] == [
        "account_id", "plan", "status", "trial_ends_at", "renewed_at",
    ]  # fmt: skip
    assert columns["demo_clock"] == ["as_of"]


def test_stats_are_the_table_counts(tmp_path: Path) -> None:
    stats = build_warehouse(tmp_path / "w.duckdb", accounts=50, users_per_account=(3, 3))
    con = duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True)
    assert stats.accounts == _one(con, "SELECT count(*) FROM accounts") == 50
    assert stats.users == _one(con, "SELECT count(*) FROM users") == 150
    assert stats.subscriptions == _one(con, "SELECT count(*) FROM subscriptions") == 50
    assert stats.events == _one(con, "SELECT count(*) FROM events")
    assert stats.events > 0
    con.close()


def test_data_is_consistent_and_plausible(warehouse: Path) -> None:
    con = duckdb.connect(str(warehouse), read_only=True)
    assert _one(con, "SELECT count(*) - count(DISTINCT email) FROM users") == 0
    assert _one(con, "SELECT count(*) FROM users WHERE email <> lower(email)") == 0
    assert _one(con, "SELECT count(*) FROM users WHERE email NOT LIKE '%_@_%._%'") == 0
    assert _one(con, "SELECT count(*) - count(DISTINCT user_id) FROM users") == 0
    assert _one(con, "SELECT count(*) - count(DISTINCT event_id) FROM events") == 0
    # referential integrity
    assert _one(con, "SELECT count(*) FROM users u ANTI JOIN accounts a USING (account_id)") == 0
    assert _one(con, "SELECT count(*) FROM events e ANTI JOIN users u USING (user_id)") == 0
    assert (
        _one(
            con,
            "SELECT count(*) FROM accounts a LEFT JOIN subscriptions s USING (account_id) "
            "WHERE s.plan IS DISTINCT FROM a.plan",
        )
        == 0
    )
    # every account has a user, and an admin
    assert _one(con, "SELECT count(*) FROM accounts a ANTI JOIN users u USING (account_id)") == 0
    assert _one(con, "SELECT count(DISTINCT account_id) FROM users WHERE is_admin") == _one(
        con, "SELECT count(*) FROM accounts"
    )
    # time runs forward: signup <= events <= clock, last_seen is the latest event
    assert (
        _one(
            con,
            "SELECT count(*) FROM events e JOIN users u USING (user_id), demo_clock c "
            "WHERE e.occurred_at <= u.signed_up_at OR e.occurred_at > c.as_of",
        )
        == 0
    )
    assert (
        _one(
            con,
            "SELECT count(*) FROM users u LEFT JOIN (SELECT user_id, max(occurred_at) m "
            "FROM events GROUP BY ALL) e USING (user_id) "
            "WHERE u.last_seen_at <> coalesce(e.m, u.signed_up_at)",
        )
        == 0
    )
    plans = dict(con.execute("SELECT plan, count(*) FROM accounts GROUP BY plan").fetchall())
    assert set(plans) == {"free", "starter", "pro", "enterprise"}
    assert plans["free"] > plans["enterprise"]
    statuses = {r[0] for r in con.execute("SELECT DISTINCT status FROM subscriptions").fetchall()}
    assert statuses == {"trial", "active", "past_due", "cancelled"}
    assert _one(con, "SELECT count(*) FROM accounts WHERE plan = 'free' AND mrr <> 0") == 0
    names = {r[0] for r in con.execute("SELECT DISTINCT event_name FROM events").fetchall()}
    assert {"dashboard_viewed", "integration_connected", "teammate_invited"} <= names
    con.close()


def test_lead_scores_and_pqls(warehouse: Path) -> None:
    con = duckdb.connect(str(warehouse), read_only=True)
    con.execute(f"CREATE TEMP TABLE m AS {MODEL_SQL}")
    assert _one(con, "SELECT count(*) FROM m") == _one(con, "SELECT count(*) FROM users")
    assert _one(con, "SELECT count(*) - count(DISTINCT user_id) FROM m") == 0
    assert _one(con, "SELECT min(lead_score) >= 0 AND max(lead_score) <= 100 FROM m") is True
    assert _one(con, "SELECT count(DISTINCT lead_score) FROM m") > 20  # type: ignore[operator]
    assert _one(con, "SELECT count(*) FROM m WHERE pql") > 0  # type: ignore[operator]
    assert _one(con, "SELECT count(*) FROM m WHERE NOT pql") > 0  # type: ignore[operator]
    # a PQL is a high scorer on free or trial, and its stage says so
    assert (
        _one(
            con,
            "SELECT count(*) FROM m WHERE pql AND (lead_score < 50 OR lifecycle_stage <> 'pql' "
            "OR (plan <> 'free' AND subscription_status <> 'trial'))",
        )
        == 0
    )
    stages = {r[0] for r in con.execute("SELECT DISTINCT lifecycle_stage FROM m").fetchall()}
    assert stages == {"lead", "pql", "customer"}
    assert (
        _one(con, "SELECT count(*) FROM m WHERE lifecycle_stage = 'customer' AND plan = 'free'")
        == 0
    )
    con.execute(f"CREATE TEMP TABLE h AS {HEALTH_SQL}")
    assert _one(con, "SELECT count(*) FROM h") == _one(con, "SELECT count(*) FROM accounts")
    assert _one(con, "SELECT min(health_score) >= 0 AND max(health_score) <= 100 FROM h") is True
    con.close()


def _table_rows(path: Path) -> dict[str, list[tuple[object, ...]]]:
    con = duckdb.connect(str(path), read_only=True)
    rows = {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in TABLES}
    con.close()
    return rows


def test_same_seed_same_data_other_seed_other_data(tmp_path: Path) -> None:
    build_warehouse(tmp_path / "a.duckdb", seed=3, accounts=60)
    build_warehouse(tmp_path / "b.duckdb", seed=3, accounts=60)
    build_warehouse(tmp_path / "c.duckdb", seed=4, accounts=60)
    a, b, c = (_table_rows(tmp_path / f"{n}.duckdb") for n in "abc")
    assert a == b
    assert a["users"] != c["users"]
    assert a["events"] != c["events"]


def test_rebuild_replaces_the_file(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    build_warehouse(path, accounts=30)
    stats = build_warehouse(path, accounts=10)
    assert stats.accounts == 10


def test_bad_arguments_are_reported(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="users_per_account"):
        build_warehouse(tmp_path / "w.duckdb", users_per_account=(5, 2))
    with pytest.raises(SourceError, match="build it first"):
        apply_changes(tmp_path / "missing.duckdb")


def _model_diff(path: Path, before: list[tuple[object, ...]]) -> tuple[int, int, int]:
    """(added, changed, removed) user rows between ``before`` and the model now."""
    con = duckdb.connect(str(path), read_only=True)
    after = con.execute(MODEL_SQL).fetchall()
    con.close()
    old = {row[0]: row for row in before}
    new = {row[0]: row for row in after}
    added = len(new.keys() - old.keys())
    removed = len(old.keys() - new.keys())
    changed = sum(1 for k in new.keys() & old.keys() if new[k] != old[k])
    return added, changed, removed


def test_apply_changes_changes_exactly_what_it_reports(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    build_warehouse(path)
    for day in (4, 5, 6):
        con = duckdb.connect(str(path), read_only=True)
        before = con.execute(MODEL_SQL).fetchall()
        con.close()
        stats = apply_changes(path)
        assert stats.as_of == f"2024-06-0{day} 09:00:00"
        assert stats.new_activity > 0
        assert 3 <= stats.signed_up <= 5
        assert stats.deleted == 2
        assert stats.upgraded > 0 and stats.upgraded_account is not None
        assert stats.aged_out > 0
        assert _model_diff(path, before) == (stats.added, stats.changed, stats.removed)


def test_apply_changes_upgrades_one_account(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    build_warehouse(path)
    con = duckdb.connect(str(path), read_only=True)
    plans = dict(con.execute("SELECT account_id, plan FROM accounts").fetchall())
    con.close()
    stats = apply_changes(path)
    con = duckdb.connect(str(path), read_only=True)
    after = dict(con.execute("SELECT account_id, plan FROM accounts").fetchall())
    sub = con.execute(
        "SELECT plan, status FROM subscriptions WHERE account_id = ?", [stats.upgraded_account]
    ).fetchone()
    con.close()
    moved = {k for k in plans if plans[k] != after[k]}
    assert moved == {stats.upgraded_account}
    order = ["free", "starter", "pro", "enterprise"]
    account = stats.upgraded_account
    assert order.index(after[account]) == order.index(plans[account]) + 1
    assert sub == (after[account], "active")


def test_apply_changes_is_deterministic(tmp_path: Path) -> None:
    results: list[ChangeStats] = []
    for name in ("a.duckdb", "b.duckdb"):
        build_warehouse(tmp_path / name, accounts=120)
        results.append(apply_changes(tmp_path / name, seed=5))
    assert results[0] == results[1]
    assert _table_rows(tmp_path / "a.duckdb") == _table_rows(tmp_path / "b.duckdb")


# The benchmark data builders (bench/ is a folder of scripts, not a package).

BENCH_DATASETS = Path(__file__).resolve().parents[2] / "bench" / "datasets.py"


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_datasets", BENCH_DATASETS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench_table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bench") / "base.duckdb"
    _bench().build_bench_model(path, 100_000)
    return path


def test_bench_model_shape(bench_table: Path) -> None:
    con = duckdb.connect(str(bench_table), read_only=True)
    types = dict(
        con.execute(
            "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = 'customers'"
        ).fetchall()
    )
    assert types == {
        "id": "BIGINT", "email": "VARCHAR", "name": "VARCHAR", "score": "INTEGER",
        "ltv": "DECIMAL(12,2)", "balance": "DOUBLE", "active": "BOOLEAN", "plan": "VARCHAR",
        "signed_up": "DATE", "updated_at": "TIMESTAMP", "tags": "VARCHAR[]",
    }  # fmt: skip
    assert con.execute(
        "SELECT count(*), count(DISTINCT id), min(id), max(id), count(DISTINCT email), "
        "min(score), max(score), count(DISTINCT plan), bool_or(active), bool_and(active) "
        "FROM customers"
    ).fetchone() == (100_000, 100_000, 1, 100_000, 100_000, 0, 100, 4, True, False)
    keys = con.execute(
        "SELECT constraint_column_names FROM duckdb_constraints() "
        "WHERE table_name = 'customers' AND constraint_type = 'PRIMARY KEY'"
    ).fetchall()
    assert keys == [(["id"],)]
    con.close()


def test_bench_model_is_deterministic(tmp_path: Path) -> None:
    bench = _bench()
    bench.build_bench_model(tmp_path / "a.duckdb", 5_000, seed=9)
    bench.build_bench_model(tmp_path / "b.duckdb", 5_000, seed=9)
    bench.build_bench_model(tmp_path / "c.duckdb", 5_000, seed=10)
    rows = []
    for name in "abc":
        con = duckdb.connect(str(tmp_path / f"{name}.duckdb"), read_only=True)
        rows.append(con.execute("SELECT * FROM customers ORDER BY id").fetchall())
        con.close()
    assert rows[0] == rows[1]
    assert rows[0] != rows[2]


def _bench_diff(before: Path, after: Path) -> dict[str, set[int]]:
    con = duckdb.connect()
    con.execute(f"ATTACH '{before}' AS b (READ_ONLY)")
    con.execute(f"ATTACH '{after}' AS a (READ_ONLY)")

    def ids(sql: str) -> set[int]:
        return {int(r[0]) for r in con.execute(sql).fetchall()}

    diff = {
        "added": ids("SELECT id FROM a.customers ANTI JOIN b.customers USING (id)"),
        "removed": ids("SELECT id FROM b.customers ANTI JOIN a.customers USING (id)"),
        "changed": ids(
            "SELECT id FROM (SELECT * FROM a.customers EXCEPT SELECT * FROM b.customers) "
            "SEMI JOIN b.customers USING (id)"
        ),
    }
    for kind in ("added", "removed", "changed"):
        diff[f"recorded_{kind}"] = ids(f"SELECT id FROM a.last_mutation WHERE kind = '{kind}'")
    con.close()
    return diff


def test_bench_mutate_changes_exactly_the_requested_rows(bench_table: Path, tmp_path: Path) -> None:
    path = tmp_path / "m.duckdb"
    shutil.copy(bench_table, path)
    result = _bench().mutate(path, change_pct=2.5, add_pct=0.5, remove_pct=1.0, seed=3)
    assert result == {
        "rows_before": 100_000,
        "rows_after": 100_000 - 1_000 + 500,
        "changed": 2_500,
        "added": 500,
        "removed": 1_000,
        "changed_ids": 2_500,
        "added_ids": 500,
        "removed_ids": 1_000,
    }
    diff = _bench_diff(bench_table, path)
    assert len(diff["changed"]) == 2_500
    assert len(diff["added"]) == 500
    assert len(diff["removed"]) == 1_000
    for kind in ("added", "removed", "changed"):
        assert diff[kind] == diff[f"recorded_{kind}"]
    assert min(diff["added"]) == 100_001


def test_bench_mutate_defaults_and_determinism(bench_table: Path, tmp_path: Path) -> None:
    bench = _bench()
    results = []
    for name in ("x.duckdb", "y.duckdb"):
        shutil.copy(bench_table, tmp_path / name)
        results.append(bench.mutate(tmp_path / name))
    assert results[0] == results[1]
    assert (results[0]["changed_ids"], results[0]["added_ids"], results[0]["removed_ids"]) == (
        1_000,
        1_000,
        1_000,
    )
    assert _bench_diff(tmp_path / "x.duckdb", tmp_path / "y.duckdb")["changed"] == set()
    with pytest.raises(ValueError, match="change_pct"):
        bench.mutate(tmp_path / "x.duckdb", change_pct=120)
