"""A save is a commit: backhaul.gitsave on real Git repositories (the git command line)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from tests.audiences.projects import audience_file
from tests.audiences.projects import duckdb_project
from tests.audiences.test_operators import DATA
from tests.conftest import within

from backhaul.errors import InvalidContent
from backhaul.errors import SaveConflict
from backhaul.errors import SaveError
from backhaul.gitsave import Author
from backhaul.gitsave import Problem
from backhaul.gitsave import project_problems
from backhaul.gitsave import project_with
from backhaul.gitsave import save_file
from backhaul.gitsave import save_files
from backhaul.gitsave import text_hash

ANN = Author("ann", "ann@example.com")
GOOD = "schema: people\nconditions:\n  - {column: country, op: equals, value: FR}\n"


def git(root: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "setup", "GIT_AUTHOR_EMAIL": "setup@example.com"}
    env |= {"GIT_COMMITTER_NAME": "setup", "GIT_COMMITTER_EMAIL": "setup@example.com"}
    done = subprocess.run(
        ["git", *args], cwd=root, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 or args[0] == "merge", done.stderr
    return done.stdout


def repo(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    (root / ".gitignore").write_text(".backhaul/\n*.duckdb*\n", encoding="utf-8")
    git(root, "add", ".")
    git(root, "commit", "-qm", "start")
    return root


def no_problems(root: Path) -> list[Problem]:
    return []


def log(root: Path) -> list[str]:
    return git(root, "log", "--format=%an <%ae>|%cn|%s").splitlines()


def test_outside_git_the_file_is_written_and_validated(tmp_path: Path) -> None:
    root = duckdb_project(tmp_path / "p", DATA)
    result = save_file(root, "audiences/fr.yml", GOOD, author=ANN, message="Create fr")
    assert (result.changed, result.commit, result.path) == (True, None, "audiences/fr.yml")
    assert (root / "audiences/fr.yml").read_text(encoding="utf-8") == GOOD


def test_a_save_in_git_is_one_commit_of_that_file_by_the_user(tmp_path: Path) -> None:
    root = repo(duckdb_project(tmp_path / "p", DATA))
    (root / "README.md").write_text("changed by someone else\n", encoding="utf-8")
    (root / "notes.txt").write_text("staged by someone else\n", encoding="utf-8")
    git(root, "add", "notes.txt")
    result = save_file(root, "audiences/fr.yml", GOOD, author=ANN, message="Create fr")
    assert result.commit == git(root, "rev-parse", "HEAD").strip()
    assert log(root)[0].startswith("ann <ann@example.com>|")
    assert log(root)[0].endswith("|Create fr")
    assert git(root, "show", "--name-only", "--format=", "HEAD").split() == ["audiences/fr.yml"]
    # The other changes are still there, uncommitted, as they were.
    status = git(root, "status", "--porcelain").splitlines()
    assert sorted(status) == ["?? README.md", "A  notes.txt"]


def test_without_a_server_identity_the_user_is_also_the_committer(tmp_path: Path) -> None:
    root = repo(tmp_path / "p")
    home = tmp_path / "home"
    home.mkdir()
    saved = {k: os.environ.get(k) for k in ("HOME", "XDG_CONFIG_HOME", "GIT_CONFIG_NOSYSTEM")}
    os.environ.update(HOME=str(home), XDG_CONFIG_HOME=str(home), GIT_CONFIG_NOSYSTEM="1")
    try:
        save_file(root, "a.yml", "a: 1\n", author=ANN, message="Add a", validate=no_problems)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert log(root)[0] == "ann <ann@example.com>|ann|Add a"


def test_invalid_content_is_refused_and_the_old_text_stays(tmp_path: Path) -> None:
    root = repo(duckdb_project(tmp_path / "p", DATA))
    audience_file(root, "fr", GOOD)
    git(root, "add", ".")
    git(root, "commit", "-qm", "fr")
    bad = "schema: people\nconditions:\n  - {column: country, op: contains, value: 3}\n"
    head = git(root, "rev-parse", "HEAD")
    with pytest.raises(InvalidContent) as caught:
        save_file(root, "audiences/fr.yml", bad, author=ANN, message="Break fr")
    problems = caught.value.problems
    assert problems and all(p.file == "audiences/fr.yml" for p in problems)
    assert any(p.key == "conditions.0.value" for p in problems), problems
    assert (root / "audiences/fr.yml").read_text(encoding="utf-8") == GOOD
    assert git(root, "rev-parse", "HEAD") == head
    assert git(root, "status", "--porcelain") == ""


def test_a_file_is_tried_as_a_save_validates_it_without_writing_anything(
    tmp_path: Path,
) -> None:
    root = repo(duckdb_project(tmp_path / "p", DATA))
    before = sorted(p.relative_to(root) for p in root.rglob("*") if ".git" not in p.parts)
    with project_with(root, {"audiences/fr.yml": GOOD}) as tried:
        assert "fr" in tried.audiences and tried.root != root.resolve()
    bad = "schema: people\nconditions:\n  - {column: country, op: contains, value: 3}\n"
    with pytest.raises(InvalidContent) as caught, project_with(root, {"audiences/fr.yml": bad}):
        pass
    for outside in ("../x.yml", "backhaul.yml", "audiences/../../x.yml"):
        with pytest.raises(SaveError, match="not a definition"), project_with(root, {outside: ""}):
            pass
    after = sorted(p.relative_to(root) for p in root.rglob("*") if ".git" not in p.parts)
    assert after == before and git(root, "status", "--porcelain") == ""
    assert not (tmp_path / "x.yml").exists()
    # The problems are the ones a save of that text answers.
    with pytest.raises(InvalidContent) as saved:
        save_file(root, "audiences/fr.yml", bad, author=ANN, message="Break fr")
    assert caught.value.problems == saved.value.problems


def test_a_file_with_uncommitted_hand_edits_is_not_committed_over(tmp_path: Path) -> None:
    root = repo(tmp_path / "p")
    (root / "a.yml").write_text("a: 1\n", encoding="utf-8")
    git(root, "add", "a.yml")
    git(root, "commit", "-qm", "a")
    (root / "a.yml").write_text("a: 2  # by hand\n", encoding="utf-8")
    with pytest.raises(SaveConflict, match="changes that are not committed"):
        save_file(root, "a.yml", "a: 3\n", author=ANN, message="m", validate=no_problems)
    assert (root / "a.yml").read_text(encoding="utf-8") == "a: 2  # by hand\n"


def test_a_file_changed_since_it_was_opened_is_a_conflict(tmp_path: Path) -> None:
    root = tmp_path / "p"
    root.mkdir()
    (root / "a.yml").write_text("a: 1\n", encoding="utf-8")
    opened = text_hash("a: 0\n")
    with pytest.raises(SaveConflict, match="changed on disk since you opened it"):
        save_file(
            root, "a.yml", "a: 3\n", author=ANN, message="m", base=opened, validate=no_problems
        )
    with pytest.raises(SaveConflict):  # "new" (base "") but the file exists meanwhile
        save_file(root, "a.yml", "a: 3\n", author=ANN, message="m", base="", validate=no_problems)
    done = save_file(
        root,
        "a.yml",
        "a: 3\n",
        author=ANN,
        message="m",
        base=text_hash("a: 1\n"),
        validate=no_problems,
    )
    assert done.changed


def test_a_merge_in_progress_blocks_saves(tmp_path: Path) -> None:
    root = repo(tmp_path / "p")
    (root / "a.yml").write_text("a: 1\n", encoding="utf-8")
    git(root, "add", ".")
    git(root, "commit", "-qm", "a")
    git(root, "checkout", "-qb", "other")
    (root / "a.yml").write_text("a: 2\n", encoding="utf-8")
    git(root, "commit", "-qam", "two")
    git(root, "checkout", "-q", "main")
    (root / "a.yml").write_text("a: 3\n", encoding="utf-8")
    git(root, "commit", "-qam", "three")
    git(root, "merge", "other")  # conflicts
    assert (root / ".git" / "MERGE_HEAD").exists()
    with pytest.raises(SaveConflict, match="middle of a merge"):
        save_file(root, "b.yml", "b: 1\n", author=ANN, message="m", validate=no_problems)
    assert not (root / "b.yml").exists()


def test_a_refusing_hook_leaves_the_old_file_and_a_clean_index(tmp_path: Path) -> None:
    root = repo(tmp_path / "p")
    hook = root / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\necho 'policy: no saves today' >&2\nexit 1\n", encoding="utf-8")
    hook.chmod(0o755)
    with pytest.raises(SaveError, match="policy: no saves today"):
        save_file(root, "b.yml", "b: 1\n", author=ANN, message="m", validate=no_problems)
    assert not (root / "b.yml").exists()
    assert git(root, "status", "--porcelain") == ""


def test_saving_the_same_text_commits_nothing(tmp_path: Path) -> None:
    root = repo(tmp_path / "p")
    save_file(root, "b.yml", "b: 1\n", author=ANN, message="m", validate=no_problems)
    head = git(root, "rev-parse", "HEAD")
    again = save_file(root, "b.yml", "b: 1\n", author=ANN, message="m", validate=no_problems)
    assert (again.changed, again.commit) == (False, None)
    assert git(root, "rev-parse", "HEAD") == head


def test_a_project_in_a_subfolder_of_the_repository(tmp_path: Path) -> None:
    top = repo(tmp_path / "repo")
    root = duckdb_project(top / "analytics", DATA)
    git(top, "add", ".")
    git(top, "commit", "-qm", "project")
    result = save_file(root, "audiences/fr.yml", GOOD, author=ANN, message="Create fr")
    assert result.path == "audiences/fr.yml"
    shown = git(top, "show", "--name-only", "--format=", "HEAD").split()
    assert shown == ["analytics/audiences/fr.yml"]
    assert project_problems(root) == []


def test_paths_outside_the_project_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "p"
    root.mkdir()
    with pytest.raises(SaveError, match="outside the project"):
        save_file(root, "../x.yml", "x: 1\n", author=ANN, message="m", validate=no_problems)


def test_files_that_change_together_are_one_commit_and_a_delete_is_a_removal(
    tmp_path: Path,
) -> None:
    root = repo(tmp_path / "p")
    files = {"models/m.yml": "source: s\n", "models/m.sql": "SELECT 1 AS id\n"}
    results = save_files(root, dict(files), author=ANN, message="Add m", validate=no_problems)
    assert [r.path for r in results] == list(files) and results[0].commit == results[1].commit
    assert sorted(git(root, "show", "--name-only", "--format=", "HEAD").split()) == sorted(files)
    gone = save_files(
        root, {p: None for p in files}, author=ANN, message="Delete m", validate=no_problems
    )
    assert all(r.changed for r in gone)
    assert not any((root / p).exists() for p in files)
    assert git(root, "show", "--name-status", "--format=", "HEAD").split() == [
        "D",
        "models/m.sql",
        "D",
        "models/m.yml",
    ]
    assert log(root)[0].startswith("ann <ann@example.com>|") and log(root)[0].endswith("|Delete m")
    assert git(root, "status", "--porcelain") == ""


def test_a_refused_save_of_several_files_puts_every_file_back(tmp_path: Path) -> None:
    root = repo(tmp_path / "p")
    (root / "a.yml").write_text("a: 1\n", encoding="utf-8")
    git(root, "add", "a.yml")
    git(root, "commit", "-qm", "a")
    head = git(root, "rev-parse", "HEAD")

    def refuse(folder: Path) -> list[Problem]:
        return [Problem("no", "a.yml", 1, "a")]

    with pytest.raises(InvalidContent):
        save_files(
            root, {"a.yml": None, "b.yml": "b: 1\n"}, author=ANN, message="m", validate=refuse
        )
    assert (root / "a.yml").read_text(encoding="utf-8") == "a: 1\n"
    assert not (root / "b.yml").exists()
    assert git(root, "rev-parse", "HEAD") == head
    assert git(root, "status", "--porcelain") == ""


def test_a_pipe_where_the_file_or_the_lock_should_be_is_refused_without_waiting(
    tmp_path: Path,
) -> None:
    root = repo(tmp_path / "p")
    target = root / "audiences" / "fr.yml"
    target.parent.mkdir()
    os.mkfifo(target)
    raised = within(30, lambda: save_file(root, "audiences/fr.yml", GOOD, author=ANN, message="m"))
    assert isinstance(raised, SaveError), raised
    assert f"cannot save over {target}: it is a named pipe (FIFO)" in str(raised)
    target.unlink()

    lock = root / ".git" / "backhaul-save.lock"
    lock.unlink(missing_ok=True)
    os.mkfifo(lock)
    raised = within(30, lambda: save_file(root, "audiences/fr.yml", GOOD, author=ANN, message="m"))
    assert isinstance(raised, SaveError), raised
    assert f"cannot lock {lock} to save: it is a named pipe (FIFO)" in str(raised)
    assert not target.exists()
