"""The approvals page's buttons: each posts a form, and the page it redirects back to says
what was done or, when it could not be, why."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import httpx
import pytest
from tests.audiences.builder_env import BuilderEnv
from tests.audiences.builder_env import git
from tests.audiences.builder_env import people_project
from tests.audiences.builder_env import served
from tests.audiences.projects import write

from backhaul.web.auth import Role

pytestmark = pytest.mark.integration


@pytest.fixture
def env(tmp_path: Path) -> Iterator[BuilderEnv]:
    root = people_project(tmp_path)
    write(root, "backhaul.yml", "name: audiences\napproval:\n  required: true\n  branch: main\n")
    with served(root) as found:
        yield found


@pytest.fixture
def admin(env: BuilderEnv) -> Iterator[httpx.Client]:
    with closing(env.client(Role.ADMIN)) as client:
        yield client


def test_approving_a_commit_says_so_on_the_page(env: BuilderEnv, admin: httpx.Client) -> None:
    commit = git(env.root, "rev-parse", "HEAD").strip()
    answer = admin.post(f"/approvals/commits/{commit}")
    assert answer.status_code == 303
    where = urlsplit(answer.headers["location"])
    assert where.path == "/approvals"
    assert parse_qs(where.query) == {"done": [f"commit {commit[:10]} approved"]}
    page = admin.get(answer.headers["location"]).text
    assert f'<p class="notice" id="approval-done">commit {commit[:10]} approved</p>' in page
    assert 'id="approval-error"' not in page


def test_a_refused_decision_says_why_on_the_page(env: BuilderEnv, admin: httpx.Client) -> None:
    answer = admin.post("/approvals/drafts/backhaul/draft-nobody-x/reject", data={"tip": ""})
    assert answer.status_code == 303
    where = urlsplit(answer.headers["location"])
    assert where.path == "/approvals"
    assert list(parse_qs(where.query)) == ["error"]
    page = admin.get(answer.headers["location"]).text
    assert 'id="approval-error"' in page
    assert 'id="approval-done"' not in page


def test_the_page_without_a_notice_shows_none(admin: httpx.Client) -> None:
    page = admin.get("/approvals").text
    assert 'id="approval-done"' not in page and 'id="approval-error"' not in page
