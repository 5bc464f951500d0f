"""With `approval: {required: true}` a run starts only from a commit an admin approved, with
no uncommitted project files; every way of starting a run meets the same gate: the Python
API, `backhaul run`, the scheduler in process and `backhaul worker` on the Postgres queue.
Dry runs are not gated; approval off changes nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import Builder
from tests.schedule.test_workers import Workers
from tests.schedule.test_workers import _defer
from tests.schedule.test_workers import _until

from backhaul import api
from backhaul.approval import ApprovalStore
from backhaul.approval import approve
from backhaul.approval import required
from backhaul.errors import BackhaulError
from backhaul.schedule.local import LocalLauncher
from backhaul.schedule.scheduler import Scheduler
from backhaul.state.store import RunRecord
from backhaul.summary import RunStatus

pytestmark = pytest.mark.integration


def git(root: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Ed Itor", "GIT_AUTHOR_EMAIL": "ed@example.com"}
    env |= {"GIT_COMMITTER_NAME": "Ed Itor", "GIT_COMMITTER_EMAIL": "ed@example.com"}
    done = subprocess.run(
        ["git", *args], cwd=root, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def make_repo(project: Builder, *, required: bool = True, **extra: Any) -> None:
    """A committed project with sync `s` (SQLite destination), approval on or off."""
    project.write(
        "backhaul.yml",
        {"name": "t", "approval": {"required": required, "branch": "main"}, **extra},
    )
    project.users(3)
    project.sqlite_destination()
    project.sync("s", batch_size=10)
    (project.root / ".gitignore").write_text(".backhaul/\n*.duckdb*\n*.sqlite\n", encoding="utf-8")
    git(project.root, "init", "-q", "-b", "main")
    git(project.root, "add", ".")
    git(project.root, "commit", "-qm", "First sync")


def head(project: Builder) -> str:
    return git(project.root, "rev-parse", "HEAD")


def cli_approve(project: Builder, *args: str) -> subprocess.CompletedProcess[str]:
    return project.cli("approve", *args, "--by", "ada")


def last_run(project: Builder, sync: str = "s") -> RunRecord:
    with api.open_store(project.load()) as store:
        found = store.last_run(sync)
    assert found is not None
    return found


@pytest.fixture
def repo(project: Builder) -> Builder:
    make_repo(project)
    return project


def test_an_unapproved_commit_is_refused_until_approved_then_runs(repo: Builder) -> None:
    first = head(repo)
    refused = repo.run("s")
    assert refused.status is RunStatus.FAILED and refused.exit_code == 2
    assert f"commit {first[:10]} is not approved to run" in (refused.error or "")
    assert "/approvals" in (refused.error or "")
    assert f"backhaul approve {first[:10]}" in (refused.error or "")
    assert last_run(repo).status is RunStatus.FAILED  # recorded like any refused run

    # A dry run sends nothing: it is not gated.
    assert repo.plan("s").counts.added == 3

    done = cli_approve(repo)
    assert done.returncode == 0, done.stderr
    assert f"commit {first[:10]} approved by ada" in done.stdout
    assert repo.run("s").status is RunStatus.SUCCEEDED


def test_a_direct_git_commit_on_an_approved_one_waits_for_its_own_approval(
    repo: Builder,
) -> None:
    assert cli_approve(repo).returncode == 0
    assert repo.run("s").status is RunStatus.SUCCEEDED

    repo.sync("s", batch_size=20)
    git(repo.root, "commit", "-qam", "Bigger batches")
    second = head(repo)
    out = repo.cli("run", "s")  # the CLI: refused, exit code 2, the commit named
    assert out.returncode == 2
    assert f"commit {second[:10]} is not approved to run" in out.stderr
    assert f"backhaul approve {second[:10]}" in out.stderr

    listed = repo.cli("approvals")
    assert listed.returncode == 0, listed.stderr
    assert (
        "Bigger batches" in listed.stdout and f"HEAD {second[:10]} is not approved" in listed.stdout
    )

    assert cli_approve(repo, second[:10]).returncode == 0
    out = repo.cli("run", "s")
    assert out.returncode == 0, out.stderr
    assert last_run(repo).git_commit == second


def test_an_approved_run_asks_git_for_its_head_once(
    repo: Builder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run records the HEAD the gate read: two git processes, not four."""
    assert cli_approve(repo).returncode == 0
    real = shutil.which("git")
    assert real is not None
    log = tmp_path / "git-calls.log"
    shim = tmp_path / "bin" / "git"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\nexec "{real}" "$@"\n', encoding="utf-8")
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim.parent}{os.pathsep}{os.environ['PATH']}")

    assert repo.run("s").status is RunStatus.SUCCEEDED
    calls = log.read_text(encoding="utf-8").splitlines()
    assert len(calls) == 2, calls
    assert len([c for c in calls if c.endswith("rev-parse HEAD")]) == 1, calls
    assert len([c for c in calls if " status --porcelain " in c]) == 1, calls
    assert last_run(repo).git_commit == head(repo)


def test_uncommitted_project_files_are_refused(repo: Builder) -> None:
    assert cli_approve(repo).returncode == 0
    repo.sync("s", batch_size=30)  # edited, not committed
    refused = repo.run("s")
    assert refused.status is RunStatus.FAILED
    assert "uncommitted changes on top of commit" in (refused.error or "")
    git(repo.root, "checkout", "--", "syncs/s.yml")
    assert repo.run("s").status is RunStatus.SUCCEEDED


def test_approval_off_changes_nothing(project: Builder) -> None:
    make_repo(project, required=False)
    assert project.run("s").status is RunStatus.SUCCEEDED
    project.sync("s", batch_size=30)  # dirty, never approved
    assert project.run("s").status is RunStatus.SUCCEEDED
    with api.open_store(project.load()) as store:
        assert not required(project.load(), store)


def test_switching_approval_off_needs_an_approved_commit(repo: Builder) -> None:
    assert cli_approve(repo).returncode == 0
    repo.write("backhaul.yml", {"name": "t", "approval": {"required": False}})
    git(repo.root, "commit", "-qam", "No more approval")
    refused = repo.run("s")  # the unapproved commit cannot switch the gate off for itself
    assert refused.status is RunStatus.FAILED and "not approved" in (refused.error or "")
    assert cli_approve(repo).returncode == 0
    assert repo.run("s").status is RunStatus.SUCCEEDED
    repo.sync("s", batch_size=40)
    git(repo.root, "commit", "-qam", "Unreviewed change")
    assert repo.run("s").status is RunStatus.SUCCEEDED  # off, by an approved commit


def test_the_json_outputs_match_their_shapes(repo: Builder) -> None:
    import json

    import jsonschema

    from backhaul.cli.shapes import output_schema

    waiting = json.loads(repo.cli("approvals", "--json").stdout)
    jsonschema.validate(waiting, output_schema("approvals"))
    assert waiting["required"] is True and waiting["head"] == head(repo)
    assert [c["subject"] for c in waiting["commits"]] == ["First sync"]
    done = json.loads(cli_approve(repo, "--json").stdout)
    jsonschema.validate(done, output_schema("approve"))
    assert done["commit"] == head(repo) and done["via"] == "cli"
    after = json.loads(repo.cli("approvals", "--json").stdout)
    jsonschema.validate(after, output_schema("approvals"))
    assert after["commits"] == [] and after["recent"][0]["approved_by"] == "ada"


def test_approving_an_unknown_commit_is_a_clear_error(repo: Builder) -> None:
    out = cli_approve(repo, "deadbeef")
    assert out.returncode == 1
    assert "`deadbeef` is not a commit of the repository" in out.stderr
    with api.open_store(repo.load()) as store, pytest.raises(BackhaulError, match="a name"):
        approve(repo.load(), store, "HEAD", by=" ", via="cli")


def test_the_scheduler_records_a_refused_run_and_keeps_going(project: Builder) -> None:
    make_repo(project, scheduler={"spread_first_runs_seconds": 0})
    project.sync("s", batch_size=10, schedule={"every": "1h"})
    git(project.root, "commit", "-qam", "Hourly")
    loaded = project.load()
    with api.open_store(loaded) as store:
        launcher = LocalLauncher(loaded, store, max_parallel=1)
        try:
            started = [x.sync for x in Scheduler(loaded, store, launcher).tick(datetime.now(UTC))]
            assert started == ["s"]
            assert launcher.wait(120)
        finally:
            launcher.close()
        refused = store.last_run("s")
    assert refused is not None and refused.status is RunStatus.FAILED
    assert refused.trigger == "schedule"
    assert "is not approved to run" in (refused.error or "")


@pytest.fixture
def workers(project: Builder, tmp_path: Path) -> Iterator[Workers]:
    found = Workers(project, tmp_path)
    try:
        yield found
    finally:
        found.stop_all()


def test_a_queued_run_on_a_worker_meets_the_same_gate(
    project: Builder, pg_db: str, workers: Workers
) -> None:
    make_repo(
        project,
        state={"metadata_url": pg_db},
        scheduler={"queue": True, "tick_seconds": 1, "heartbeat_seconds": 1},
    )
    _defer(project, "s")
    workers.start("w1")

    def runs() -> list[RunRecord]:
        with api.open_store(project.load()) as store:
            return list(store.runs("s", limit=10))

    _until("the refused run", lambda: len(runs()) == 1, workers)
    refused = runs()[0]
    assert refused.status is RunStatus.FAILED and refused.trigger == "queue"
    assert f"commit {head(project)[:10]} is not approved" in (refused.error or "")

    assert cli_approve(project).returncode == 0
    with api.open_store(project.load()) as store:
        assert ApprovalStore(store).get("t", head(project)) is not None
    _defer(project, "s")
    _until("the approved run", lambda: len(runs()) == 2, workers)
    _until("it to finish", lambda: runs()[0].status is not RunStatus.RUNNING, workers)
    assert runs()[0].status is RunStatus.SUCCEEDED


def test_a_wrong_setting_names_its_file_line_and_key(project: Builder) -> None:
    project.write(
        "backhaul.yml",
        "name: t\napproval:\n  required: maybe\n  branch: 'a..b'\n  reviewers: 2\n",
    )
    out = project.cli("validate", "--offline")
    assert out.returncode == 2
    assert "backhaul.yml:3: approval.required: must be a valid boolean" in out.stderr
    assert "backhaul.yml:4: approval.branch: `a..b` is not a Git branch name" in out.stderr
    assert "backhaul.yml:5: approval.reviewers: unknown key `reviewers`" in out.stderr


def test_outside_git_approval_refuses_every_run(project: Builder) -> None:
    project.write("backhaul.yml", {"name": "t", "approval": {"required": True}})
    project.users(2)
    project.sqlite_destination()
    project.sync("s")
    refused = project.run("s")
    assert refused.status is RunStatus.FAILED
    assert "is not in a Git repository with a commit" in (refused.error or "")


def test_the_low_level_run_sync_meets_the_gate_too(repo: Builder) -> None:
    from backhaul.engine.runner import run_sync
    from backhaul.errors import ApprovalRequired

    with api.open_store(repo.load()) as store, pytest.raises(ApprovalRequired, match="approve"):
        run_sync(repo.load(), "s", store=store)
    assert not repo.state_file("s").exists()  # refused before anything was opened


def test_a_review_of_a_revision_whose_sql_fails_names_the_file(repo: Builder) -> None:
    assert cli_approve(repo).returncode == 0
    repo.model("users", "SELECT * FROM users WHERE")  # a syntax error, in models/users.sql
    git(repo.root, "add", ".")
    git(repo.root, "commit", "-qm", "Broken SQL")
    git(repo.root, "checkout", "-q", "-b", "backhaul/draft-ed-models-users")
    git(repo.root, "checkout", "-q", "main")
    git(repo.root, "reset", "-q", "--hard", "HEAD~")
    out = repo.cli("diff-config", "HEAD", "--to", "backhaul/draft-ed-models-users")
    assert out.returncode == 0, out.stderr
    assert "cannot plan: models/users.sql:1: sql: the model SQL fails" in out.stdout


def test_a_new_metadata_store_does_not_switch_approval_off(repo: Builder) -> None:
    assert cli_approve(repo).returncode == 0
    other = repo.root / "elsewhere.sqlite"
    repo.write(
        "backhaul.yml",
        {
            "name": "t",
            "approval": {"required": False},
            "state": {"metadata_url": f"sqlite:///{other}"},
        },
    )
    git(repo.root, "commit", "-qam", "Approval off, and a store with no approvals")
    refused = repo.run("s")  # the history says approval was on: the new store cannot say no
    assert refused.status is RunStatus.FAILED and "not approved" in (refused.error or "")
    assert cli_approve(repo).returncode == 0  # approved in the new store: off from now on
    assert repo.run("s").status is RunStatus.SUCCEEDED
