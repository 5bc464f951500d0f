"""Draft branches on a real repository: `save_file(branch=...)` commits without touching the
checked-out files and validates the project as the branch would hold it; merging a draft
fast-forwards or refuses a conflict with nothing changed."""

from __future__ import annotations

import pytest
from tests.approval.test_gate import git
from tests.approval.test_gate import head
from tests.approval.test_gate import make_repo
from tests.conftest import Builder
from tests.conftest import dump_yaml

from backhaul import drafts
from backhaul.errors import InvalidContent
from backhaul.errors import SaveConflict
from backhaul.gitsave import Author
from backhaul.gitsave import save_file
from backhaul.gitsave import text_hash

ANA = Author.for_user("ana")
BO = Author.for_user("bo")


@pytest.fixture
def repo(project: Builder) -> Builder:
    make_repo(project)
    return project


def sync_text(batch_size: int) -> str:
    maps = [{"column": "id", "field": "id"}, {"column": "email", "field": "email"}]
    return dump_yaml(
        {"model": "users", "destination": "db", "mappings": maps, "batch_size": batch_size}
    )


def test_a_draft_save_leaves_the_checkout_alone(repo: Builder) -> None:
    first = head(repo)
    before = (repo.root / "syncs/s.yml").read_text()
    branch = drafts.branch_for("ana", "syncs/s.yml")
    assert branch == "backhaul/draft-ana-syncs-s"
    saved = save_file(
        repo.root,
        "syncs/s.yml",
        sync_text(20),
        author=ANA,
        message="Bigger",
        branch=branch,
        base=text_hash(before),
    )
    assert saved.changed and saved.commit == git(repo.root, "rev-parse", branch)
    assert head(repo) == first and (repo.root / "syncs/s.yml").read_text() == before
    assert git(repo.root, "status", "--porcelain") == ""
    assert git(repo.root, "show", f"{branch}:syncs/s.yml") == sync_text(20).rstrip("\n")
    (found,) = drafts.drafts(repo.root, "main")
    assert (found.branch, found.base, found.files, found.author) == (
        branch,
        first,
        ("syncs/s.yml",),
        "ana",
    )

    # The next save is checked against the draft's version, not the checked-out one.
    with pytest.raises(SaveConflict, match="changed on `backhaul/draft-ana-syncs-s`"):
        save_file(
            repo.root,
            "syncs/s.yml",
            sync_text(30),
            author=ANA,
            message="x",
            branch=branch,
            base=text_hash(before),
        )


def test_an_invalid_draft_is_refused_and_no_branch_is_made(repo: Builder) -> None:
    branch = drafts.branch_for("ana", "syncs/s.yml")
    with pytest.raises(InvalidContent) as caught:
        save_file(
            repo.root,
            "syncs/s.yml",
            "model: nowhere\ndestination: db\n",
            author=ANA,
            message="Broken",
            branch=branch,
        )
    assert any(p.file == "syncs/s.yml" for p in caught.value.problems)
    assert git(repo.root, "branch", "--list", branch) == ""


def test_a_conflicting_draft_is_refused_with_nothing_changed(repo: Builder) -> None:
    ana = drafts.branch_for("ana", "syncs/s.yml")
    bo = drafts.branch_for("bo", "syncs/s.yml")
    save_file(repo.root, "syncs/s.yml", sync_text(20), author=ANA, message="20", branch=ana)
    save_file(repo.root, "syncs/s.yml", sync_text(30), author=BO, message="30", branch=bo)
    merged = drafts.merge(repo.root, "main", ana, by=Author.for_user("admin"))
    assert merged.commit == head(repo) and merged.before != merged.commit  # fast-forward
    after = head(repo)
    with pytest.raises(SaveConflict, match="does not merge into `main`"):
        drafts.merge(repo.root, "main", bo, by=Author.for_user("admin"))
    assert head(repo) == after and git(repo.root, "status", "--porcelain") == ""
    assert not (repo.root / ".git/MERGE_HEAD").exists()
    drafts.discard(repo.root, bo)
    assert drafts.drafts(repo.root, "main") == []


def commit_on(repo: Builder, branch: str, files: dict[str, str | None], message: str) -> None:
    """Commit ``files`` (None: delete) on ``branch``, made from main when new."""
    exists = git(repo.root, "branch", "--list", branch)
    git(repo.root, "switch", "-q", *(() if exists else ("-c",)), branch)
    for rel, text in files.items():
        if text is None:
            git(repo.root, "rm", "-q", rel)
        else:
            (repo.root / rel).parent.mkdir(parents=True, exist_ok=True)
            (repo.root / rel).write_text(text, encoding="utf-8")
            git(repo.root, "add", rel)
    git(repo.root, "commit", "-qm", message)
    git(repo.root, "switch", "-q", "main")


def test_the_changes_of_a_users_drafts_are_net_of_their_commits(repo: Builder) -> None:
    new = drafts.branch_for("ana", "destinations/new.yml")
    commit_on(repo, new, {"destinations/new.yml": "type: sqlite\n"}, "Create")
    commit_on(repo, new, {"destinations/new.yml": "type: sqlite\npath: x\n"}, "Edit")
    tmp = drafts.branch_for("ana", "destinations/tmp.yml")
    commit_on(repo, tmp, {"destinations/tmp.yml": "type: sqlite\n"}, "Create")
    commit_on(repo, tmp, {"destinations/tmp.yml": None}, "Drop again")
    gone = drafts.branch_for("ana", "syncs/s.yml")
    commit_on(repo, gone, {"syncs/s.yml": None}, "Delete")
    commit_on(repo, drafts.branch_for("bo", "syncs/s.yml"), {"syncs/s.yml": "x: 1\n"}, "Bo's")
    # main moves on after the drafts left it: its own changes are not the drafts'.
    (repo.root / "notes.txt").write_text("later\n", encoding="utf-8")
    git(repo.root, "add", "notes.txt")
    git(repo.root, "commit", "-qm", "Later")

    found = {(c.branch, c.path): c.change for c in drafts.changes_by(repo.root, "main", "ana")}
    assert found == {(new, "destinations/new.yml"): "added", (gone, "syncs/s.yml"): "deleted"}
    (bos,) = drafts.changes_by(repo.root, "main", "bo")
    assert (bos.path, bos.change) == ("syncs/s.yml", "changed")
    assert drafts.changes_by(repo.root, "main", "cy") == []
