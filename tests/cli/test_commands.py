"""The `backhaul` commands on real projects: output, state and the documented exit codes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner
from typer.testing import Result

from backhaul.cli.app import app
from backhaul.testing.receiver import WebhookReceiver
from conftest import Builder
from conftest import run_cli
from conftest import sqlite_rows

pytestmark = pytest.mark.integration

MAPPINGS = [{"column": "id", "field": "id"}, {"column": "email", "field": "email"}]


def cli(project: Builder, *args: str) -> Result:
    return CliRunner().invoke(app, [*args, "-C", str(project.root)])


@pytest.fixture
def synced(project: Builder) -> Builder:
    """A project with one SQLite sync `s` over 10 users."""
    project.users(10)
    project.sqlite_destination()
    project.sync("s", mode="mirror", mappings=MAPPINGS)
    return project


def test_init_validate_run_on_a_fresh_folder(fast_tmp: Path) -> None:
    folder = fast_tmp / "fresh"

    init = run_cli("init", str(folder))
    assert init.returncode == 0, init.stderr
    assert (folder / "backhaul.yml").is_file()

    validate = run_cli("validate", "-C", str(folder))
    assert validate.returncode == 0, validate.stderr
    assert validate.stdout.startswith("ok:")

    first = run_cli("run", "--all", "--json", "-C", str(folder))
    assert first.returncode == 0, first.stderr
    summaries = json.loads(first.stdout)
    assert summaries and all(s["status"] == "succeeded" for s in summaries)
    assert all(s["counts"]["succeeded"] == s["counts"]["queried"] > 0 for s in summaries)
    assert "Traceback" not in first.stderr
    states = list((folder / ".backhaul" / "syncs").glob("*.duckdb"))
    assert len(states) == len(summaries)

    second = CliRunner().invoke(app, ["run", "--all", "--json", "-C", str(folder)])
    assert second.exit_code == 0
    assert all(s["counts"]["succeeded"] == 0 for s in json.loads(second.stdout))


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM users; -- all of them",
        "SELECT *, ';--' AS note FROM users ; /* twice */ ;\n-- the end",
    ],
)
def test_a_model_ending_in_a_semicolon_and_a_comment_validates_plans_and_runs(
    synced: Builder, sql: str
) -> None:
    synced.model("users", sql)
    assert cli(synced, "validate").exit_code == 0
    plan = cli(synced, "plan", "s", "--json")
    assert plan.exit_code == 0, plan.output
    assert json.loads(plan.stdout)["counts"]["added"] == 10
    run = cli(synced, "run", "s", "--json")
    assert run.exit_code == 0, run.output
    [summary] = json.loads(run.stdout)
    assert summary["counts"]["succeeded"] == 10


def test_a_model_of_two_statements_fails_validate_as_it_fails_the_run(synced: Builder) -> None:
    # Checked nested, as a run reads it: validate never runs the first statement on its own.
    synced.model("users", "CREATE TABLE made_by_validate AS SELECT 1 AS id;\nSELECT * FROM users")
    results = [cli(synced, "validate"), cli(synced, "plan", "s"), cli(synced, "run", "s")]
    error = "error: models/users.sql:1: sql: the model SQL fails in the warehouse: Parser Error"
    for result in results:
        assert result.exit_code == 2, result.output
        assert result.stderr.count(error) == 1, result.stderr
    tables = synced.sql("SELECT table_name FROM information_schema.tables")
    assert "made_by_validate" not in str(tables)


def test_run_json_prints_only_json_on_stdout(synced: Builder) -> None:
    result = cli(synced, "run", "s", "--json")

    assert result.exit_code == 0
    [summary] = json.loads(result.stdout)
    assert summary["sync"] == "s" and summary["status"] == "succeeded"
    assert summary["counts"]["added"] == 10 and summary["counts"]["succeeded"] == 10
    assert summary["dry_run"] is False
    assert summary["run_id"] in result.stderr  # progress goes to stderr with --json
    assert len(sqlite_rows(synced.root / "dest.sqlite")) == 10


def test_plan_json_is_a_dry_run(synced: Builder) -> None:
    result = cli(synced, "plan", "s", "--json", "--sample", "2")

    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["dry_run"] is True and data["counts"]["added"] == 10
    assert len(data["samples"]["add"]) == 2
    assert not synced.state_file("s").exists()
    assert not (synced.root / "dest.sqlite").exists()


def test_status_shows_last_run_and_snapshot(synced: Builder, receiver: WebhookReceiver) -> None:
    synced.webhook_destination(receiver)
    synced.sync("w", destination="hook", mappings=MAPPINGS)
    receiver.faults.reject({"4": "nope"})
    cli(synced, "run", "s")
    cli(synced, "run", "w")

    result = cli(synced, "status")

    assert result.exit_code == 0
    rows = {ln.split()[1]: ln for ln in result.stdout.splitlines() if ln.startswith("│ ")}
    assert "succeeded" in rows["s"] and "users → db" in rows["s"]
    assert rows["s"].split("│")[6].strip() == "10"  # snapshot rows
    assert rows["s"].split("│")[7].strip() == "0"
    assert "partial" in rows["w"]
    assert rows["w"].split("│")[6].strip() == "9"
    assert rows["w"].split("│")[7].strip() == "1"  # pending rejection


def test_runs_lists_each_run_with_counts(synced: Builder) -> None:
    ids = []
    for _ in range(2):
        ids.append(json.loads(cli(synced, "run", "s", "--json").stdout)[0]["run_id"])

    result = cli(synced, "runs", "s")

    assert result.exit_code == 0
    lines = [ln for ln in result.stdout.splitlines() if any(i in ln for i in ids)]
    assert len(lines) == 2
    assert ids[1] in lines[0]  # newest first
    assert lines[1].split("│")[5].strip() == "10"  # added in the first run
    assert cli(synced, "runs", "nope").exit_code == 2


def test_run_show_by_prefix(synced: Builder) -> None:
    synced.model("users", "SELECT * FROM (VALUES (1, 'a@x'), (1, 'b@x'), (2, 'c@x')) t(id, email)")
    run_id = json.loads(cli(synced, "run", "s", "--json").stdout)[0]["run_id"]

    result = cli(synced, "run-show", run_id[:6])

    assert result.exit_code == 0
    assert f"run {run_id}" in result.stdout
    line = next(ln for ln in result.stdout.splitlines() if "duplicate primary key" in ln)
    assert line.split("│")[1].strip() == "1"
    data = json.loads(cli(synced, "run-show", run_id[:8], "--json").stdout)
    assert data["run_id"] == run_id and data["counts"]["invalid"] == 2
    assert data["invalid"][0]["key"] == "1"

    missing = cli(synced, "run-show", "ffffffffffff")
    assert missing.exit_code == 1
    assert "no run `ffffffffffff`" in missing.stderr


def test_run_show_refuses_a_row_log_that_is_a_pipe_and_shows_the_rest(synced: Builder) -> None:
    run_id = json.loads(cli(synced, "run", "s", "--json").stdout)[0]["run_id"]
    log = synced.root / ".backhaul" / "row_logs" / run_id / "outcomes.parquet"
    log.unlink()
    os.mkfifo(log)  # reading it would wait for a writer forever

    # In a process of its own, as a user runs it; the call's timeout fails a wait.
    found = run_cli("run-show", run_id, "--key", "3", "-C", str(synced.root))
    assert found.returncode == 1
    assert f"row log {log} is a named pipe (FIFO), not a file" in " ".join(found.stderr.split())
    assert f"run {run_id}" in found.stdout  # the record is shown all the same
    assert "no rejected or invalid row of this run has a key like '3'" in found.stdout
    as_json = run_cli("run-show", run_id, "--key", "3", "--json", "-C", str(synced.root))
    assert as_json.returncode == 1
    data = json.loads(as_json.stdout)
    assert data["found"] == [] and "is a named pipe (FIFO)" in data["row_log_error"]
    shown = run_cli("run-show", run_id, "--json", "-C", str(synced.root))
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["counts"]["added"] == 10


def test_run_show_finds_the_rows_the_store_keeps_when_the_row_log_is_a_pipe(
    synced: Builder,
) -> None:
    synced.model("users", "SELECT * FROM (VALUES (1, 'a@x'), (1, 'b@x'), (2, 'c@x')) t(id, email)")
    run_id = json.loads(cli(synced, "run", "s", "--json").stdout)[0]["run_id"]
    log = synced.root / ".backhaul" / "row_logs" / run_id / "outcomes.parquet"
    log.unlink()
    os.mkfifo(log)

    found = run_cli("run-show", run_id, "--key", "1", "--json", "-C", str(synced.root))
    assert found.returncode == 1
    data = json.loads(found.stdout)
    assert [(r["key"], r["status"]) for r in data["found"]] == [("1", "invalid")]
    assert "is a named pipe (FIFO)" in data["row_log_error"]


def test_reset_forgets_state_and_the_next_run_sends_everything(synced: Builder) -> None:
    cli(synced, "run", "s")
    assert synced.state_file("s").exists()

    result = cli(synced, "reset", "s")

    assert result.exit_code == 0 and "forgotten" in result.stdout
    assert not synced.state_file("s").exists()
    again = json.loads(cli(synced, "run", "s", "--json").stdout)[0]
    assert again["counts"]["added"] == 10
    assert cli(synced, "reset", "s").exit_code == 0
    assert "already empty" in cli(synced, "reset", "s").stdout
    assert cli(synced, "reset", "unknown").exit_code == 2


def test_schema_writes_json_schemas(fast_tmp: Path) -> None:
    out = fast_tmp / "schemas"

    result = CliRunner().invoke(app, ["schema", "--out", str(out)])

    assert result.exit_code == 0
    files = sorted(out.glob("*.json"))
    assert files
    for path in files:
        assert path.name in result.stdout
        schema = json.loads(path.read_text(encoding="utf-8"))
        assert isinstance(schema, dict) and ("properties" in schema or "$defs" in schema)
    sync_schema = next(p for p in files if "sync" in p.name).read_text(encoding="utf-8")
    assert "max_remove_pct" in sync_schema


def test_select_by_tag_runs_only_tagged_syncs(project: Builder) -> None:
    project.users(5)
    project.sqlite_destination()
    project.sync("a", tags=["x"], mappings=MAPPINGS)
    project.sync("b", tags=["x", "y"], mappings=MAPPINGS)
    project.sync("c", mappings=MAPPINGS)

    result = cli(project, "run", "--select", "tag:x", "--json")

    assert result.exit_code == 0
    assert sorted(s["sync"] for s in json.loads(result.stdout)) == ["a", "b"]
    assert project.state_file("a").exists() and project.state_file("b").exists()
    assert not project.state_file("c").exists()
    assert cli(project, "run", "--select", "x").exit_code == 2


def test_exit_code_0_on_success(synced: Builder) -> None:
    assert cli(synced, "run", "s").exit_code == 0
    assert cli(synced, "run", "s").exit_code == 0


def test_exit_code_1_when_a_guard_stops_the_run(synced: Builder) -> None:
    cli(synced, "run", "s")
    synced.sql("DELETE FROM users WHERE id <= 5")

    result = cli(synced, "run", "s")

    assert result.exit_code == 1
    assert "max_remove_pct" in result.stdout + result.stderr
    assert len(sqlite_rows(synced.root / "dest.sqlite")) == 10
    assert cli(synced, "run", "s", "--force").exit_code == 0
    assert len(sqlite_rows(synced.root / "dest.sqlite")) == 5


def test_exit_code_2_on_a_configuration_error(synced: Builder) -> None:
    result = cli(synced, "run", "nope")

    assert result.exit_code == 2
    assert "unknown sync `nope`" in result.stderr
    nothing = cli(synced, "run", "--select", "tag:none")
    assert nothing.exit_code == 2 and "no sync selected" in nothing.stderr
    assert not synced.state_file("s").exists()


def test_exit_code_3_on_invalid_rows(synced: Builder) -> None:
    synced.model("users", "SELECT * FROM (VALUES (1, 'a'), (NULL, 'b')) t(id, email)")

    result = cli(synced, "run", "s")

    assert result.exit_code == 3
    assert sqlite_rows(synced.root / "dest.sqlite") == [(1, "a")]


def test_exit_code_1_wins_over_3_across_syncs(project: Builder) -> None:
    project.users(10)
    project.sqlite_destination()
    project.model("dups", "SELECT * FROM (VALUES (1, 'a'), (1, 'b')) t(id, email)")
    project.sync("bad_rows", model="dups", mappings=MAPPINGS)
    project.sync("guarded", mode="mirror", max_remove_pct=1, mappings=MAPPINGS)
    assert cli(project, "run", "guarded").exit_code == 0
    project.sql("DELETE FROM users WHERE id = 1")

    result = cli(project, "run", "bad_rows", "guarded", "--json")

    assert result.exit_code == 1
    statuses = {s["sync"]: s["status"] for s in json.loads(result.stdout)}
    # Every row of `bad_rows` is a duplicate: nothing valid could be sent, so it failed.
    assert statuses == {"bad_rows": "failed", "guarded": "guarded"}
