"""`run --all` and `run --select`: a sync whose config is broken fails alone.

It is recorded as a failed run carrying its one-line error (seen by `runs`, `status`
and the web app); the other syncs still run and deliver; the exit code is the worst.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest

from backhaul import api
from backhaul.config.loader import load_project
from backhaul.engine.launch import run_many
from backhaul.engine.launch import worst_exit_code
from backhaul.summary import RunStatus
from backhaul.testing.server import LoopbackServer
from backhaul.web.app import close_app
from backhaul.web.app import create_app
from backhaul.web.auth import Role
from conftest import Builder
from conftest import sqlite_rows

pytestmark = pytest.mark.integration

UNSET = f"BH_TEST_UNSET_{uuid.uuid4().hex[:8].upper()}"


def _project(project: Builder) -> Builder:
    project.users(4)
    project.destination("db_a", type="sqlite", path="a.sqlite", table="contacts", create_table=True)
    project.destination("db_c", type="sqlite", path="c.sqlite", table="contacts", create_table=True)
    project.destination(
        "broken", type="postgres", url=f"postgresql://u:${{env:{UNSET}}}@127.0.0.1/x", table="t"
    )
    project.sync("a", destination="db_a", tags=["nightly"])
    project.sync("b", destination="broken", tags=["nightly"])
    project.sync("c", destination="db_c")
    return project


def _line_of(path: Path, needle: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(i for i, text in enumerate(lines, 1) if needle in text)


def test_run_all_runs_the_others_and_records_the_broken_one(project: Builder) -> None:
    _project(project)

    result = project.cli("run", "--all")

    assert result.returncode == 2, result.stdout + result.stderr
    errors = [ln for ln in result.stderr.splitlines() if ln.strip()]
    where = f"destinations/broken.yml:{_line_of(project.root / 'destinations/broken.yml', 'url:')}"
    assert errors == [
        f"error: {where}: url: environment variable {UNSET} is not set (referenced by `url`): "
        f"export it, or write `${{env:{UNSET}:-default}}`"
    ]
    assert "Traceback" not in result.stdout + result.stderr
    # The summary table lists every sync with its outcome.
    rows = {ln.split("│")[1].strip(): ln for ln in result.stdout.splitlines() if ln.count("│") > 3}
    assert {"a", "b", "c"} <= set(rows)
    assert "succeeded" in rows["a"] and "failed" in rows["b"] and "succeeded" in rows["c"]
    assert len(sqlite_rows(project.root / "a.sqlite")) == 4
    assert len(sqlite_rows(project.root / "c.sqlite")) == 4
    assert not project.state_file("b").exists()

    with api.open_store(project.load()) as store:
        failed = store.last_run("b")
    assert failed is not None and failed.status is RunStatus.FAILED
    assert failed.error is not None and failed.error.startswith(f"{where}: url: ")
    assert failed.counts.added == 0 and failed.counts.succeeded == 0

    runs = project.cli("runs", "b")
    status = project.cli("status")
    assert runs.returncode == status.returncode == 0
    assert "failed" in runs.stdout and "destinations/broken.yml" in runs.stdout
    status_b = next(ln for ln in status.stdout.splitlines() if ln.startswith("│ b "))
    assert "failed" in status_b
    assert "destinations/broken.yml" in status.stdout


def test_select_by_tag_runs_only_the_tagged_and_the_broken_one_fails_alone(
    project: Builder,
) -> None:
    _project(project)

    result = project.cli("run", "--select", "tag:nightly")

    assert result.returncode == 2
    assert len(sqlite_rows(project.root / "a.sqlite")) == 4
    assert not (project.root / "c.sqlite").exists()
    with api.open_store(project.load()) as store:
        assert store.last_run("c") is None
        last_b = store.last_run("b")
    assert last_b is not None and last_b.status is RunStatus.FAILED


def test_the_exit_code_is_the_worst_outcome(project: Builder) -> None:
    _project(project)
    project.write(
        "destinations/broken.yml",
        {"type": "sqlite", "path": "b.sqlite", "table": "contacts", "create_table": True},
    )
    project.sql(
        "CREATE OR REPLACE TABLE users AS SELECT * FROM users UNION ALL "
        "SELECT NULL, 'nobody@example.com', 'no id', 0"
    )

    # A null key is an invalid row: a partial run (3). No config error now: worst is 3.
    result = project.cli("run", "--all")

    assert result.returncode == 3, result.stdout + result.stderr


def test_a_scheduler_can_run_many_syncs_through_the_same_entry_point(
    project: Builder,
) -> None:
    _project(project)
    loaded = load_project(project.root)

    with api.open_store(loaded) as store:
        results = run_many(loaded, ["a", "b", "c"], store=store, trigger="schedule")

    assert [r.status for r in results] == [
        RunStatus.SUCCEEDED,
        RunStatus.FAILED,
        RunStatus.SUCCEEDED,
    ]
    assert results[1].exit_code == 2 and worst_exit_code(results) == 2
    assert results[1].problems and UNSET in results[1].problems[0]


@pytest.mark.parametrize("role", [Role.VIEWER])
def test_the_web_app_shows_the_failed_run_and_its_error(project: Builder, role: Role) -> None:
    _project(project)
    assert project.cli("run", "--all").returncode == 2
    app = create_app(project.root)
    try:
        app.state.users.add("v", "viewer-password-1", role)
        token, _ = app.state.users.create_token("v", "tests")
        server = LoopbackServer(app, name="backhaul-web").start()
        try:
            with httpx.Client(
                base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
            ) as client:
                items = client.get("/api/v1/runs", params={"sync": "b"}).json()
                sync_page = client.get("/syncs/b")
        finally:
            server.stop()
    finally:
        close_app(app)

    assert items[0]["status"] == "failed"
    assert "destinations/broken.yml" in items[0]["error"]
    assert "failed" in sync_page.text


def test_a_sync_whose_snapshot_is_damaged_fails_alone(project: Builder) -> None:
    _project(project)
    project.write(
        "destinations/broken.yml",
        {"type": "sqlite", "path": "b.sqlite", "table": "contacts", "create_table": True},
    )
    assert project.cli("run", "--all").returncode == 0
    project.sql("UPDATE users SET email = 'new@x' WHERE id = 1")
    project.state_file("b").write_bytes(b"")  # an empty snapshot file: state is broken

    result = project.cli("run", "--all")

    assert result.returncode == 1, result.stdout + result.stderr
    errors = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: b: the snapshot of sync `b`")
    assert dict(sqlite_rows(project.root / "a.sqlite"))[1] == "new@x"
    assert dict(sqlite_rows(project.root / "c.sqlite"))[1] == "new@x"
    with api.open_store(project.load()) as store:
        last_b = store.last_run("b")
    assert last_b is not None and last_b.status is RunStatus.FAILED
    assert last_b.error is not None and "backhaul reset b" in last_b.error
    status = project.cli("status")
    status_b = next(ln for ln in status.stdout.splitlines() if ln.startswith("│ b "))
    assert "damaged" in status_b and "busy" not in status_b


def _fixed(project: Builder) -> None:
    project.write(
        "destinations/broken.yml",
        {"type": "sqlite", "path": "b.sqlite", "table": "contacts", "create_table": True},
    )


def test_a_sync_file_that_is_not_yaml_fails_alone(project: Builder) -> None:
    _project(project)
    _fixed(project)
    project.write("syncs/d.yml", "model: users\ndestination: db_a\nmappings: [\n")

    result = project.cli("run", "--all")

    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    errors = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: syncs/d.yml:"), errors
    rows = {ln.split("│")[1].strip(): ln for ln in result.stdout.splitlines() if ln.count("│") > 3}
    assert {"a", "b", "c", "d"} <= set(rows)
    assert "failed" in rows["d"] and all("succeeded" in rows[n] for n in "abc")
    assert len(sqlite_rows(project.root / "a.sqlite")) == 4
    assert not project.state_file("d").exists()

    # `runs` and `status` show it; `validate` still refuses the whole project.
    runs = project.cli("runs", "d")
    status = project.cli("status")
    assert runs.returncode == status.returncode == 0, runs.stderr + status.stderr
    assert "failed" in runs.stdout and "syncs/d.yml" in runs.stdout
    status_d = next(ln for ln in status.stdout.splitlines() if ln.startswith("│ d "))
    assert "failed" in status_d and "(invalid file)" in status_d
    assert project.cli("validate", "--offline").returncode == 2

    # Named alone, it fails alone with the same line; `plan` refuses it the same way.
    alone = project.cli("run", "d")
    assert alone.returncode == 2 and alone.stderr.count("syncs/d.yml:") == 1
    plan = project.cli("plan", "d")
    assert plan.returncode == 2 and "syncs/d.yml:" in plan.stderr
    assert project.cli("plan", "a").returncode == 0


def test_a_destination_file_that_is_invalid_fails_only_the_syncs_that_use_it(
    project: Builder,
) -> None:
    _project(project)
    project.write(
        "destinations/broken.yml",
        {"type": "sqlite", "path": "b.sqlite", "table": "contacts", "no_such_key": 1},
    )

    result = project.cli("run", "--all")

    assert result.returncode == 2, result.stdout + result.stderr
    errors = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: destinations/broken.yml:"), errors
    assert "no_such_key" in errors[0]
    assert len(sqlite_rows(project.root / "a.sqlite")) == 4
    assert len(sqlite_rows(project.root / "c.sqlite")) == 4
    with api.open_store(project.load_isolated()) as store:
        last_b = store.last_run("b")
    assert last_b is not None and last_b.status is RunStatus.FAILED
    assert last_b.error is not None and last_b.error.startswith("destinations/broken.yml:")


def test_a_broken_project_file_still_stops_everything(project: Builder) -> None:
    _project(project)
    _fixed(project)
    (project.root / "backhaul.yml").write_text("name: [\n", encoding="utf-8")

    result = project.cli("run", "--all")

    assert result.returncode == 2
    assert result.stderr.startswith("error: backhaul.yml:")
    assert not (project.root / "a.sqlite").exists()


def test_the_scheduler_records_a_broken_sync_and_schedules_the_others(project: Builder) -> None:
    _project(project)
    _fixed(project)
    project.write("backhaul.yml", {"name": "t", "scheduler": {"spread_first_runs_seconds": 0}})
    project.sync("hourly", destination="db_c", schedule={"every": "1h"})
    project.write("syncs/d.yml", "model: users\ndestination: db_a\nschedule: {every: [\n")

    result = project.cli("scheduler", "--once")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "started hourly" in result.stderr
    with api.open_store(project.load_isolated()) as store:
        last_d = store.last_run("d")
        last_hourly = store.last_run("hourly")
    assert last_d is not None and last_d.status is RunStatus.FAILED
    assert last_d.trigger == "schedule" and (last_d.error or "").startswith("syncs/d.yml:")
    assert last_hourly is not None and last_hourly.status is RunStatus.SUCCEEDED
