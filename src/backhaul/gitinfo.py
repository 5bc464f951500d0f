"""What Git says about the project folder: the commit a run starts from, whether the
project's files differ from it, and the history of one file.

Read-only and best effort: outside a Git repository (or without ``git``) every answer is
empty, never an error, because a run does not need Git.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from pathlib import Path

# What makes a project, relative to its folder; state, targets and notes are left out, so
# a run's own files never make the tree look changed.
PROJECT_PATHS = (
    "backhaul.yml",
    "backhaul.yaml",
    "sources",
    "models",
    "destinations",
    "syncs",
    "audiences",
    "audience_schemas",
    "priority_lists",
    "channels",
)
_SEP = "\x1f"


def git_output(folder: Path, *args: str, timeout: float = 10) -> str | None:
    """What ``git -C folder ARGS`` prints; None when git is missing, fails or times out."""
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


@dataclass(frozen=True, slots=True)
class Head:
    """The commit checked out, and whether the project's files differ from it (changed,
    staged or new files not ignored)."""

    commit: str
    dirty: bool


def head(folder: Path) -> Head | None:
    """The project folder's ``HEAD`` and whether its files are uncommitted; None outside Git
    (or in a repository without a commit)."""
    commit = git_output(folder, "rev-parse", "HEAD")
    if not commit or not commit.strip():
        return None
    paths = [p for p in PROJECT_PATHS if (folder / p).exists()]
    status = git_output(folder, "status", "--porcelain", "--untracked-files=all", "--", *paths)
    return Head(commit.strip(), bool(status and status.strip()))


@dataclass(frozen=True, slots=True)
class FileCommit:
    """One commit that changed a file."""

    commit: str
    author: str
    at: datetime
    subject: str

    @property
    def short(self) -> str:
        return self.commit[:10]


def file_history(folder: Path, rel: str, limit: int = 20) -> list[FileCommit]:
    """The latest ``limit`` commits that changed ``rel`` (following renames), newest first."""
    fmt = _SEP.join(("%H", "%an", "%aI", "%s"))
    out = git_output(folder, "log", f"-n{limit}", "--follow", f"--format={fmt}", "--", rel)
    found: list[FileCommit] = []
    for line in (out or "").splitlines():
        parts = line.split(_SEP)
        if len(parts) != 4:
            continue
        commit, author, at, subject = parts
        found.append(
            FileCommit(commit, author, datetime.fromisoformat(at).astimezone(UTC), subject)
        )
    return found


def file_at(folder: Path, commit: str, rel: str) -> str | None:
    """``rel`` as it was at ``commit`` (None: no such commit or no such file there)."""
    if not commit or not all(c in "0123456789abcdef" for c in commit.lower()):
        return None
    prefix = git_output(folder, "rev-parse", "--show-prefix")
    if prefix is None:
        return None
    return git_output(folder, "show", f"{commit}:{prefix.strip()}{rel}")


def commit_text(commit: str | None, dirty: bool | None) -> str:
    """How a run's revision reads: ``commit 1a2b3c4d5e``, ``... with uncommitted changes``,
    or ``not in Git``."""
    if not commit:
        return "not in Git"
    return f"commit {commit[:10]}" + (" with uncommitted changes" if dirty else "")


__all__ = [
    "PROJECT_PATHS",
    "FileCommit",
    "Head",
    "commit_text",
    "file_at",
    "file_history",
    "git_output",
    "head",
]
