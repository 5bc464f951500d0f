"""Destinations without record ids: a key whose match value changes, in mirror mode.

The SQL tables and files here match records by e-mail, not by the primary key. When a
key's e-mail changes, the row under the old e-mail is deleted before the new one is
written, so the destination ends equal to the model, with no orphan row.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from backhaul.summary import RunStatus
from conftest import Builder
from conftest import sqlite_rows

pytestmark = pytest.mark.integration

MAPPINGS = [
    {"column": "email", "field": "email"},
    {"column": "name", "field": "name"},
]
REKEY = "UPDATE users SET email = 'moved' || id || '@example.org' WHERE id % 20 = 0"


def email_sync(project: Builder, destination: str, **extra: object) -> None:
    project.sync(
        "s",
        destination=destination,
        mappings=MAPPINGS,
        match={"fields": ["email"]},
        mode="mirror",
        max_remove_pct=100,
        **extra,
    )


def model(project: Builder) -> list[tuple[object, ...]]:
    return sorted(project.sql("SELECT email, name FROM users"))


def test_sql_table_deletes_the_row_under_the_old_email(project: Builder) -> None:
    project.users(200)
    dest = project.sqlite_destination()
    email_sync(project, "db", batch_size=7)
    assert project.run("s").status is RunStatus.SUCCEEDED
    project.sql(REKEY, "UPDATE users SET name = 'renamed' WHERE id = 3")

    run = project.run("s")

    assert run.status is RunStatus.SUCCEEDED, run.error
    assert run.counts.changed == 11 and run.counts.succeeded == 11
    assert sorted(sqlite_rows(dest, order="email")) == model(project)
    ops = [o.operation for o in project.rows(run.run_id)]
    assert ops.count("upsert") == 11 and "delete" not in ops  # one outcome per key
    assert project.run("s").counts.planned == 0


def test_two_keys_swapping_emails_end_right(project: Builder) -> None:
    project.users(5)
    dest = project.sqlite_destination()
    email_sync(project, "db")
    project.run("s")
    project.sql(
        "UPDATE users SET email = CASE id WHEN 1 THEN 'u2@example.com' "
        "ELSE 'u1@example.com' END WHERE id IN (1, 2)"
    )

    run = project.run("s")

    assert run.status is RunStatus.SUCCEEDED, run.error
    assert sorted(sqlite_rows(dest, order="email")) == model(project)


def test_upsert_mode_leaves_the_old_row(project: Builder) -> None:
    project.users(20)
    dest = project.sqlite_destination()
    project.sync("s", mappings=MAPPINGS, match={"fields": ["email"]}, mode="upsert")
    project.run("s")
    project.sql(REKEY)

    run = project.run("s")

    # Upsert mode never deletes: the row under the old e-mail stays (documented).
    assert run.status is RunStatus.SUCCEEDED, run.error
    emails = {r[0] for r in sqlite_rows(dest, order="email")}
    assert {"u20@example.com", "moved20@example.org"} <= emails and len(emails) == 21


def test_on_remove_clear_clears_the_row_under_the_old_email(project: Builder) -> None:
    project.users(20)
    dest = project.sqlite_destination()
    email_sync(project, "db", on_remove="clear")
    project.run("s")
    project.sql(REKEY)

    run = project.run("s")

    assert run.status is RunStatus.SUCCEEDED, run.error
    rows = {r[0]: r[1] for r in sqlite_rows(dest, order="email")}
    assert rows["u20@example.com"] is None and rows["moved20@example.org"] == "name 20"


@pytest.mark.parametrize("planner", ["local", "warehouse"])
def test_current_file_drops_the_record_under_the_old_email(project: Builder, planner: str) -> None:
    project.users(100)
    project.destination("out", type="file", format="csv", path="out/{sync}.csv", layout="current")
    email_sync(project, "out", planner=planner)
    project.run("s")
    project.sql(REKEY)

    run = project.run("s")

    assert run.status is RunStatus.SUCCEEDED, run.error
    with (project.root / "out" / "s.csv").open(newline="", encoding="utf-8") as f:
        rows = sorted((r["email"], r["name"]) for r in csv.DictReader(f))
    assert rows == model(project)


def test_rekey_sample_in_a_dry_run(project: Builder) -> None:
    project.users(40)
    project.sqlite_destination()
    email_sync(project, "db")
    project.run("s")
    project.sql(REKEY)

    preview = project.plan("s")

    assert preview.counts.changed == 2
    assert sorted(preview.samples["rekey"], key=lambda r: str(r["key"])) == [
        {"key": "20", "email (old)": "u20@example.com"},
        {"key": "40", "email (old)": "u40@example.com"},
    ]
    assert sorted(r["key"] for r in preview.samples["change"]) == ["20", "40"]
    emails = {r[0] for r in sqlite_rows(Path(project.root / "dest.sqlite"), order="email")}
    assert "u20@example.com" in emails and "moved20@example.org" not in emails  # nothing sent
