"""Runs are tied to the commit they started from: the commit and whether the project's
files differed from it are recorded, shown on the run and sync pages, and the sync page
lists its file's history with each revision readable as it was."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.conftest import Builder
from tests.web.conftest import login

from backhaul import api
from backhaul import gitinfo
from backhaul.state.reader import RunRecord
from backhaul.testing.server import LoopbackServer
from backhaul.web.app import close_app
from backhaul.web.app import create_app
from backhaul.web.auth import Role

pytestmark = pytest.mark.integration

PASSWORD = "viewer-password-1234"


def git(root: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Ana Data", "GIT_AUTHOR_EMAIL": "ana@example.com"}
    env |= {"GIT_COMMITTER_NAME": "Ana Data", "GIT_COMMITTER_EMAIL": "ana@example.com"}
    done = subprocess.run(
        ["git", *args], cwd=root, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.fixture
def repo(project: Builder) -> Builder:
    project.users(3)
    project.sqlite_destination()
    project.sync("s", batch_size=10)
    (project.root / ".gitignore").write_text(".backhaul/\n*.duckdb*\n*.sqlite\n", encoding="utf-8")
    git(project.root, "init", "-q", "-b", "main")
    git(project.root, "add", ".")
    git(project.root, "commit", "-qm", "First sync")
    return project


@pytest.fixture
def viewer(repo: Builder) -> Iterator[httpx.Client]:
    app = create_app(repo.root)
    app.state.users.add("vera", PASSWORD, Role.VIEWER)
    server = LoopbackServer(app).start()
    client = httpx.Client(base_url=server.url, timeout=30)
    try:
        assert login(client, "vera", PASSWORD).status_code == 303
        yield client
    finally:
        client.close()
        server.stop()
        close_app(app)


def _last(repo: Builder) -> RunRecord:
    with api.open_store(repo.load()) as store:
        found = store.last_run("s")
    assert found is not None
    return found


def test_a_run_records_its_commit_and_whether_the_files_differed(repo: Builder) -> None:
    first = git(repo.root, "rev-parse", "HEAD")
    assert repo.run("s").status.value == "succeeded"
    clean = _last(repo)
    assert (clean.git_commit, clean.git_dirty) == (first, False)

    # State, the warehouse and the destination file changed: not project files.
    assert repo.run("s").status.value == "succeeded"
    assert _last(repo).git_dirty is False

    repo.sync("s", batch_size=20)  # edited, not committed
    assert repo.run("s").status.value == "succeeded"
    edited = _last(repo)
    assert (edited.git_commit, edited.git_dirty) == (first, True)

    git(repo.root, "commit", "-qam", "Bigger batches")
    assert repo.run("s").status.value == "succeeded"
    committed = _last(repo)
    assert committed.git_commit != first and committed.git_dirty is False

    (repo.root / "syncs" / "new.yml").write_text("model: users\n", encoding="utf-8")
    assert gitinfo.head(repo.root) == gitinfo.Head(committed.git_commit, True)  # untracked


def test_outside_git_nothing_is_recorded(project: Builder) -> None:
    project.users(2)
    project.sqlite_destination()
    project.sync("s")
    assert project.run("s").status.value == "succeeded"
    with api.open_store(project.load()) as store:
        found = store.last_run("s")
    assert found is not None and (found.git_commit, found.git_dirty) == (None, None)
    assert gitinfo.head(project.root) is None
    assert gitinfo.file_history(project.root, "syncs/s.yml") == []


def test_pages_link_each_run_to_the_revision_it_ran(repo: Builder, viewer: httpx.Client) -> None:
    first = git(repo.root, "rev-parse", "HEAD")
    assert repo.run("s").status.value == "succeeded"
    repo.sync("s", batch_size=20)
    git(repo.root, "commit", "-qam", "Bigger batches")
    second = git(repo.root, "rev-parse", "HEAD")
    repo.sync("s", batch_size=30)  # uncommitted
    assert repo.run("s").status.value == "succeeded"
    dirty_run = _last(repo)

    page = viewer.get("/syncs/s").text
    assert page.index("Bigger batches") < page.index("First sync")  # newest first
    assert f'href="/syncs/s/revisions/{first}"' in page
    assert f'href="/syncs/s/revisions/{second}"' in page
    assert "+ changes" in page  # the dirty run is marked

    run_page = viewer.get(f"/runs/{dirty_run.run_id}").text
    assert f"commit {second[:10]} with uncommitted changes" in run_page

    old = viewer.get(f"/syncs/s/revisions/{first}")
    assert old.status_code == 200
    assert "batch_size: 10" in old.text and "batch_size: 20" not in old.text
    assert viewer.get(f"/syncs/s/revisions/{second[:8]}").text.count("batch_size: 20") == 1
    assert viewer.get("/syncs/s/revisions/0123456789abcdef").status_code == 404
    assert viewer.get("/syncs/s/revisions/HEAD~1").status_code == 422  # not a commit id
    answer = viewer.get(f"/api/v1/runs/{dirty_run.run_id}").json()
    assert (answer["git_commit"], answer["git_dirty"]) == (second, True)
