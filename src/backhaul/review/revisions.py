"""Read a project as it was at a Git revision, into a temporary folder.

The git CLI does the reading (``git archive REV``), so the user's working tree, index and
checked-out branch are never touched. The archive is unpacked with :mod:`tarfile`'s
``data`` filter, which refuses links and paths that would land outside the folder.
"""

from __future__ import annotations

import os
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from backhaul.errors import BackhaulError


class RevisionError(BackhaulError):
    """A revision cannot be read: not a Git repository, or no such commit."""

    exit_code = 2


@dataclass(frozen=True)
class Repository:
    """The Git repository holding a project folder."""

    top: Path  # the work tree's top folder
    prefix: str  # the project folder relative to ``top`` ("" at the top), POSIX style


@dataclass(frozen=True)
class Revision:
    """One revision unpacked on disk."""

    name: str  # as the user wrote it (``HEAD``, ``origin/main``)
    commit: str  # the full commit id
    folder: Path  # the project folder inside the unpacked tree (may not exist)


def _env() -> dict[str, str]:
    # Messages in English whatever the user's locale: one of them is recognised below.
    return {**os.environ, "LC_ALL": "C"}


def _git(top: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            ["git", "-C", str(top), *args],
            capture_output=True,
            check=False,
            timeout=300,
            env=_env(),
        )
    except FileNotFoundError:
        raise RevisionError("git is not installed; install it to compare revisions") from None


def repository(folder: Path) -> Repository:
    """The repository ``folder`` belongs to.

    Raises:
        RevisionError: ``folder`` is not inside a Git work tree.
    """
    done = _git(folder, "rev-parse", "--show-toplevel", "--show-prefix")
    lines = done.stdout.decode("utf-8", "replace").splitlines()
    if done.returncode != 0 or not lines:
        raise RevisionError(
            f"{folder} is not in a Git repository; diff-config compares Git revisions "
            "(run `git init` and commit the project first)"
        )
    prefix = lines[1].strip().rstrip("/") if len(lines) > 1 else ""
    return Repository(Path(lines[0]), prefix)


def resolve(repo: Repository, name: str) -> str:
    """The commit id ``name`` points at.

    Raises:
        RevisionError: ``name`` is not a commit of the repository.
    """
    if not name or name.startswith("-"):
        raise RevisionError(f"`{name}` is not a revision; give a commit, branch or tag")
    done = _git(
        repo.top, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{name}^{{commit}}"
    )
    if done.returncode != 0:
        raise RevisionError(
            f"unknown revision `{name}` in {repo.top}; give a commit, branch or tag "
            "(`git log --oneline` lists commits; fetch remote branches first)"
        )
    return done.stdout.decode().strip()


@contextmanager
def unpacked(repo: Repository, name: str) -> Iterator[Revision]:
    """The project folder of revision ``name`` in a temporary folder, removed afterwards.

    The folder does not exist when the revision has no files under the project's path.

    Raises:
        RevisionError: ``name`` is not a commit, or git could not archive it.
    """
    commit = resolve(repo, name)
    with tempfile.TemporaryDirectory(prefix="backhaul-rev-") as tmp:
        target = Path(tmp) / "tree"
        target.mkdir()
        paths = [repo.prefix] if repo.prefix else []
        # Streamed: a repository may also hold large files (a warehouse, seeds).
        with subprocess.Popen(
            ["git", "-C", str(repo.top), "archive", "--format=tar", commit, "--", *paths],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_env(),
        ) as proc:
            assert proc.stdout is not None and proc.stderr is not None
            try:
                with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
                    tar.extractall(target, filter="data")
            except tarfile.ReadError:
                pass  # nothing archived: git says why on stderr
            stderr = proc.stderr.read()
        if proc.returncode != 0 and b"did not match" not in stderr:
            lines = stderr.decode("utf-8", "replace").strip().splitlines()
            raise RevisionError(f"git could not read `{name}`: {lines[-1] if lines else '?'}")
        yield Revision(name, commit, target / repo.prefix if repo.prefix else target)


__all__ = ["Repository", "Revision", "RevisionError", "repository", "resolve", "unpacked"]
