"""Draft branches: editors' web saves waiting for an admin (``approval: {required: true}``).

An editor's save is committed to ``backhaul/draft-<user>-<file>`` without touching the
checked-out files (:func:`backhaul.gitsave.save_file` with ``branch=``), so what runs stays
the approved commit. An admin merges a draft into the approved branch (:func:`merge`:
a fast-forward when the draft starts from its tip, else a merge commit by the admin) or
deletes it (:func:`discard`). Git is driven through its command line, as in gitsave.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import Literal

from backhaul.errors import SaveConflict
from backhaul.errors import SaveError
from backhaul.gitinfo import git_output
from backhaul.gitsave import LOCK_FILE
from backhaul.gitsave import Author
from backhaul.gitsave import Repo
from backhaul.gitsave import _locked

PREFIX = "backhaul/draft-"
_SEP = "\x1f"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "x"


def branch_for(username: str, rel: str) -> str:
    """The draft branch of ``username``'s changes to ``rel`` (``audiences/vip.yml`` ->
    ``backhaul/draft-ana-audiences-vip``)."""
    stem = rel.rsplit(".", 1)[0] if "." in rel.rsplit("/", 1)[-1] else rel
    return f"{PREFIX}{_slug(username)}-{_slug(stem)}"


@dataclass(frozen=True, slots=True)
class Draft:
    """One draft branch.

    Attributes:
        branch: ``backhaul/draft-...``.
        tip: Its newest commit.
        base: Where it leaves the approved branch (their merge base).
        author: The author of its newest commit.
        at: When that commit was made.
        subject: Its message's first line.
        files: The files it changes, relative to the top of the repository.
        commits: How many commits it holds beyond ``base``.
    """

    branch: str
    tip: str
    base: str | None
    author: str
    at: datetime
    subject: str
    files: tuple[str, ...]
    commits: int


def _repo(root: Path) -> Repo:
    repo = Repo.find(root)
    if repo is None:
        raise SaveError(f"{root} is not in a Git repository: drafts need Git")
    return repo


def _quiet(repo: Repo, *args: str) -> str | None:
    try:
        return repo.run(*args)
    except SaveError:
        return None


def drafts(root: Path, approved: str) -> list[Draft]:
    """Every draft branch, newest first, measured against the branch ``approved``."""
    repo = Repo.find(root)
    if repo is None:
        return []
    fmt = _SEP.join(
        (
            "%(refname:short)",
            "%(objectname)",
            "%(authorname)",
            "%(authordate:iso-strict)",
            "%(subject)",
        )
    )
    out = _quiet(
        repo, "for-each-ref", "--sort=-authordate", f"--format={fmt}", f"refs/heads/{PREFIX}*"
    )
    found: list[Draft] = []
    for line in (out or "").splitlines():
        parts = line.split(_SEP)
        if len(parts) != 5:
            continue
        branch, tip, author, at, subject = parts
        base_out = _quiet(repo, "merge-base", approved, tip)
        base = base_out.strip() if base_out else None
        files: tuple[str, ...] = ()
        count = 0
        if base:
            names = _quiet(repo, "diff", "--name-only", base, tip, "--") or ""
            files = tuple(n for n in names.splitlines() if n)
            count = int((_quiet(repo, "rev-list", "--count", f"{base}..{tip}") or "0").strip())
        found.append(
            Draft(
                branch,
                tip,
                base,
                author,
                datetime.fromisoformat(at).astimezone(UTC),
                subject,
                files,
                count,
            )
        )
    return found


Change = Literal["added", "changed", "deleted"]


@dataclass(frozen=True, slots=True)
class FileChange:
    """How one draft branch changes one file, from where it left the approved branch to
    its tip.

    Attributes:
        branch: ``backhaul/draft-...``.
        path: The file, relative to the folder asked about.
        change: ``added`` (not there before), ``changed`` or ``deleted`` (not at the tip).
    """

    branch: str
    path: str
    change: Change


def changes_by(folder: Path, approved: str, username: str) -> list[FileChange]:
    """What ``username``'s draft branches change under ``folder``, file by file.

    Read with one ``git log`` over all of that user's drafts (not one command per draft
    or per file), so a page listing the project can afford it on every request. The
    result may hold other users' branches whose name starts like this user's
    (``ana`` and ``ana-b``): the caller keeps those :func:`branch_for` names.
    """
    out = git_output(
        folder,
        "-c",
        "core.quotePath=off",
        "log",
        "--source",
        "--relative",
        "--no-renames",
        "--name-status",
        "--reverse",
        f"--format={_SEP}%S",
        f"--glob=refs/heads/{PREFIX}{_slug(username)}-*",
        "--not",
        f"refs/heads/{approved}",
        "--",
    )
    # Oldest commit first: the first status says whether the file was there before the
    # draft, the last whether it is there at the tip.
    before: dict[tuple[str, str], bool] = {}
    after: dict[tuple[str, str], bool] = {}
    branch = ""
    for line in (out or "").splitlines():
        if line.startswith(_SEP):
            branch = line[1:].removeprefix("refs/heads/")
            continue
        status, _, path = line.partition("\t")
        if not path or not branch:
            continue
        key = (branch, path)
        before.setdefault(key, not status.startswith("A"))
        after[key] = not status.startswith("D")
    found: list[FileChange] = []
    for key, was in before.items():
        now = after[key]
        if was or now:  # a file added and deleted again on the draft is no change
            change: Change = "changed" if was and now else "added" if now else "deleted"
            found.append(FileChange(key[0], key[1], change))
    return found


def find(root: Path, approved: str, branch: str) -> Draft:
    """The draft ``branch``.

    Raises:
        SaveError: there is no such draft.
    """
    for draft in drafts(root, approved):
        if draft.branch == branch:
            return draft
    raise SaveError(f"there is no draft `{branch}` (approved or rejected already?)")


@dataclass(frozen=True, slots=True)
class Merged:
    """A merged draft: the approved branch's commit before and after."""

    before: str
    commit: str


def merge(root: Path, approved: str, branch: str, *, by: Author, tip: str | None = None) -> Merged:
    """Merge the draft ``branch`` into the checked-out branch ``approved`` and delete it.

    A fast-forward when the draft starts from the approved branch's tip; otherwise a merge
    commit authored and committed by ``by``. ``tip`` (the commit the admin reviewed)
    refuses a draft that moved since. Returns the approved branch's commits before and
    after.

    Raises:
        SaveConflict: the checkout is not on ``approved``, the draft moved, a merge is in
            progress, or the draft conflicts with the approved branch (nothing changed).
        SaveError: git failed otherwise (a hook refused the merge...).
    """
    repo = _repo(root)
    with _locked(repo.git_dir / LOCK_FILE):
        current = (_quiet(repo, "symbolic-ref", "--quiet", "--short", "HEAD") or "").strip()
        if current != approved:
            raise SaveConflict(
                f"the project's checkout is on `{current or 'a detached HEAD'}`, not the "
                f"approved branch `{approved}` (approval.branch): check out `{approved}` "
                "on the server, then approve again"
            )
        busy = repo.in_progress()
        if busy:
            raise SaveConflict(
                f"the Git repository is in the middle of a {busy}: finish or abort it first"
            )
        now = _draft_tip(repo, branch, tip, reload="reload the page")
        before = repo.run("rev-parse", "HEAD").strip()
        env = {
            "GIT_AUTHOR_NAME": by.name,
            "GIT_AUTHOR_EMAIL": by.email,
            "GIT_COMMITTER_NAME": by.name,
            "GIT_COMMITTER_EMAIL": by.email,
        }
        if _quiet(repo, "merge", "--ff-only", "--quiet", now) is None:
            try:
                repo.run(
                    "merge", "--no-ff", "--quiet", "-m", f"Approve draft {branch}", now, env=env
                )
            except SaveError as exc:
                _quiet(repo, "merge", "--abort")
                raise SaveConflict(
                    f"draft `{branch}` does not merge into `{approved}` ({exc.message}): "
                    "reject it and make the change again on the current version"
                ) from None
        head = repo.run("rev-parse", "HEAD").strip()
        repo.run("update-ref", "-d", f"refs/heads/{branch}", now)
        return Merged(before, head)


def _draft_tip(repo: Repo, branch: str, reviewed: str | None, *, reload: str) -> str:
    """The commit the draft ``branch`` is at, which must still be ``reviewed`` (when given)."""
    now = (_quiet(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}") or "").strip()
    if not now:
        raise SaveError(f"there is no draft `{branch}` (approved or rejected already?)")
    if reviewed is not None and now != reviewed:
        raise SaveConflict(
            f"draft `{branch}` changed since you reviewed it: {reload} and review it again"
        )
    return now


def discard(root: Path, branch: str, *, tip: str | None = None) -> None:
    """Delete the draft ``branch`` (its commits stay in Git's object store until pruned).

    Raises:
        SaveError: there is no such draft, or it moved since ``tip``.
    """
    if not branch.startswith(PREFIX):
        raise SaveError(f"`{branch}` is not a draft branch")
    repo = _repo(root)
    with _locked(repo.git_dir / LOCK_FILE):
        now = _draft_tip(repo, branch, tip, reload="reload")
        repo.run("update-ref", "-d", f"refs/heads/{branch}", now)


__all__ = [
    "PREFIX",
    "Change",
    "Draft",
    "FileChange",
    "Merged",
    "branch_for",
    "changes_by",
    "discard",
    "drafts",
    "find",
    "merge",
]
