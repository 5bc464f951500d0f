"""The planner's SQL for warehouses without a live server here: generated, then parsed back.

Snowflake, BigQuery, Redshift and Databricks cannot be reached from the test machines, so
their statements are checked as SQL: each one parses in its own dialect with sqlglot, and
uses that warehouse's hash, types and scratch tables.
"""

from __future__ import annotations

import pytest
import sqlglot

from backhaul.config.models import ColumnMapping
from backhaul.config.models import StaticMapping
from backhaul.config.models import TemplateMapping
from backhaul.engine.plan.warehouse_sql import DIALECTS
from backhaul.engine.plan.warehouse_sql import PlannerSql
from backhaul.engine.plan.warehouse_sql import fingerprint_columns
from backhaul.engine.plan.warehouse_sql import mapping_spec
from backhaul.engine.plan.warehouse_sql import portable_type
from backhaul.engine.plan.warehouse_sql import table_prefix

MODEL = "SELECT id, org, email, plan FROM analytics.users"
HASH = {
    "postgres": "MD5(",
    "duckdb": "md5_number_upper(",
    "snowflake": "MD5_NUMBER_UPPER64(",
    "bigquery": "FARM_FINGERPRINT(",
    "redshift": "STRTOL(SUBSTRING(MD5(",
    "databricks": "XXHASH64(",
}
TEXT = {
    "snowflake": "AS VARCHAR)",
    "bigquery": "AS STRING)",
    "redshift": "AS VARCHAR(MAX))",
    "databricks": "AS STRING)",
    "postgres": "AS TEXT)",
    "duckdb": "AS TEXT)",
}


def planner(dialect: str, **extra: object) -> PlannerSql:
    return PlannerSql(
        dialect=dialect,
        schema="backhaul_planner",
        prefix=table_prefix("pql-to-crm"),
        key_columns=("org", "id"),
        key_types=(portable_type("VARCHAR", dialect), portable_type("BIGINT", dialect)),
        match_types=(portable_type("VARCHAR", dialect),),
        fp_columns=("email", "plan"),
        spec="0123456789abcdef",
        **extra,  # type: ignore[arg-type]
    )


def statements(p: PlannerSql) -> list[str]:
    before, txn, after = p.fold()
    return [
        p.create_schema(),
        *p.create_tables(),
        p.current(MODEL),
        *p.plan(resend_all=False, has_rejected=True),
        p.plan_rows(),
        p.extract(MODEL),
        p.snapshot_rows(),
        p.drop_resolved_rejections(["add", "change", "retry", "remove"]),
        *p.commit_acked("r1", p.scratch("acked")),
        p.commit_rejected("r1", p.scratch("rej")),
        *before,
        *txn,
        *after,
        p.canary(),
        *p.set_meta("fp_canary", "1"),
        p.drop_plan(),
    ]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_every_statement_parses_back_in_its_dialect(dialect: str) -> None:
    for sql in statements(planner(dialect)):
        parsed = sqlglot.parse(sql, read=dialect)
        assert len(parsed) == 1 and parsed[0] is not None, sql


@pytest.mark.parametrize("dialect", DIALECTS)
def test_fingerprint_is_the_warehouse_hash_of_length_prefixed_text(dialect: str) -> None:
    fp = planner(dialect).fp_expr()
    assert fp.startswith(HASH[dialect]) or HASH[dialect] in fp
    assert "'0123456789abcdef'" in fp  # the mapping spec is folded in
    assert TEXT[dialect] in fp
    assert fp.count("LENGTH(") == 2  # one per covered column
    assert "COALESCE(" in fp


@pytest.mark.parametrize("dialect", ["snowflake", "bigquery", "redshift", "databricks"])
def test_diff_is_a_full_outer_join_with_retries_and_duplicates(dialect: str) -> None:
    p = planner(dialect)
    create_plan = p.plan(resend_all=False, has_rejected=True)[1]
    assert "FULL OUTER JOIN backhaul_planner.pql_to_crm_" in create_plan
    assert "c.fp <> s.fp" in create_plan
    assert "LEFT JOIN backhaul_planner." in create_plan and "_rejected AS r" in create_plan
    dups = p.plan(resend_all=False, has_rejected=False)[3]
    assert "HAVING COUNT(*) > 1" in dups
    resend = p.plan(resend_all=True, has_rejected=False)[1]
    assert "c.fp <> s.fp" not in resend and "_rejected" not in resend


def test_scratch_tables_are_temporary_where_the_warehouse_has_them() -> None:
    assert planner("snowflake").current(MODEL).startswith("CREATE TEMPORARY TABLE bh_cur")
    assert planner("redshift").current(MODEL).startswith("CREATE TEMPORARY TABLE bh_cur")
    for dialect in ("bigquery", "databricks"):
        cur = planner(dialect).current(MODEL)
        assert cur.startswith("CREATE TABLE backhaul_planner.pql_to_crm_"), cur
        assert "_work_cur AS" in cur


def test_types_are_rendered_per_dialect() -> None:
    snap = {d: planner(d).create_tables()[0] for d in DIALECTS}
    assert "k0 STRING, k1 INT64, fp INT64, m0 STRING" in snap["bigquery"]
    assert "fp DECIMAL(20, 0)" in snap["snowflake"]
    assert "k0 VARCHAR(MAX)" in snap["redshift"]
    assert "k0 STRING, k1 BIGINT, fp BIGINT" in snap["databricks"]
    assert "fp UBIGINT" in snap["duckdb"] and "fp BIGINT" in snap["postgres"]
    assert portable_type("UBIGINT", "snowflake") == "DECIMAL(38, 0)"
    assert portable_type("INTEGER[]", "postgres") == "JSON"


@pytest.mark.parametrize("dialect", ["snowflake", "bigquery", "redshift", "databricks"])
def test_checkpoint_and_fold_statements(dialect: str) -> None:
    p = planner(dialect)
    merge = p.commit_rejected("run1", p.scratch("rej"))
    assert merge.startswith("MERGE INTO backhaul_planner.")
    assert "attempts = r.attempts + 1" in merge and "'run1'" in merge
    before, txn, _ = p.fold()
    # The newest ack wins, but a key's new record beats the removal of its old one.
    assert (
        "ROW_NUMBER() OVER (PARTITION BY k0, k1 ORDER BY CASE WHEN op = 'rekey' THEN 1 ELSE 0 "
        "END" in before[1]
    )
    assert "acked_at DESC" in before[1]
    assert "SELECT k0, k1, fp, m0, rid, op FROM" in before[1]
    assert txn[0].startswith("DELETE FROM backhaul_planner.pql_to_crm_")
    assert "WHERE NOT op IN ('remove', 'rekey')" in txn[1] or "op NOT IN" in txn[1]
    assert "ADD COLUMN IF NOT EXISTS rid" in p.add_record_ids()[0] or dialect not in (
        "postgres",
        "duckdb",
    )


def test_model_sql_reaches_the_warehouse_untouched() -> None:
    odd = "SELECT id, org, email, plan FROM t WHERE email ILIKE '%@x' -- a comment"
    for dialect in DIALECTS:
        assert f"(\n{odd}\n) AS m" in planner(dialect).extract(odd)


def test_sync_names_map_to_distinct_table_prefixes() -> None:
    assert table_prefix("users") == "users"
    assert table_prefix("a-b") != table_prefix("a_b")
    assert table_prefix("A-b").startswith("a_b_")


def test_spec_changes_with_static_values_casts_and_templates() -> None:
    base = [ColumnMapping(column="email", field="email")]
    specs = {
        mapping_spec(base),
        mapping_spec([ColumnMapping(column="email", field="email", cast="string")]),
        mapping_spec([*base, StaticMapping(value="web", field="src")]),
        mapping_spec([*base, StaticMapping(value="app", field="src")]),
        mapping_spec([*base, TemplateMapping(template="{{ plan }}!", field="t")]),
    }
    assert len(specs) == 5
    cols = fingerprint_columns(
        [
            *base,
            StaticMapping(value="x", field="s"),
            TemplateMapping(template="{{plan}}", field="t"),
        ],
        {"t": ("plan",)},
    )
    assert cols == ["email", "plan"]
