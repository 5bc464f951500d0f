"""Read a project as it was at a Git revision, into a temporary folder.

The git CLI does the reading (``git archive REV``), so the user's working tree, index and
checked-out branch are never touched. The archive is unpacked with :mod:`tarfile`'s
``data`` filter; a link or path that would land outside the folder is left out.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from backhaul.errors import RevisionError
from backhaul.files import read_text


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


def _inside(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
    """The ``data`` filter, skipping (not failing on) a link that leads out of the folder."""
    try:
        return tarfile.data_filter(member, dest)
    except tarfile.FilterError:
        return None


def _extract(repo: Repository, commit: str, path: str, target: Path) -> bool:
    """Unpack ``path`` ("" for everything) of ``commit`` under ``target``; False when the
    commit has no such path."""
    # Streamed: a repository may also hold large files (a warehouse, seeds).
    with subprocess.Popen(
        [
            "git",
            "-C",
            str(repo.top),
            "archive",
            "--format=tar",
            commit,
            "--",
            *filter(None, [path]),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        try:
            with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
                tar.extractall(target, filter=_inside)
        except tarfile.ReadError:
            pass  # nothing archived: git says why on stderr
        stderr = proc.stderr.read()
    if proc.returncode == 0:
        return True
    if b"did not match" in stderr:
        return False
    lines = stderr.decode("utf-8", "replace").strip().splitlines()
    raise RevisionError(f"git could not read `{commit[:12]}`: {lines[-1] if lines else '?'}")


def _dbt_folder(project: Path) -> str | None:
    """``dbt_project`` of the unpacked ``backhaul.yml``, when it names a relative folder."""
    from ruamel.yaml import YAML

    for name in ("backhaul.yml", "backhaul.yaml"):
        try:
            data = YAML(typ="safe").load(read_text(project / name))
        except Exception:  # a broken file is the loader's to report
            continue
        value = data.get("dbt_project") if isinstance(data, dict) else None
        return value if isinstance(value, str) and not Path(value).is_absolute() else None
    return None


def _with_dbt(repo: Repository, commit: str, tree: Path, project: Path, working: Path) -> None:
    """Give the unpacked project its dbt project, and the working tree's manifest when the
    revision has none: ``target/`` is a build output, rarely committed."""
    folder = _dbt_folder(project)
    if folder is None:
        return
    there = (project / folder).resolve()
    if not there.is_relative_to(tree.resolve()):
        return
    if not there.exists():
        _extract(repo, commit, there.relative_to(tree.resolve()).as_posix(), tree)
    from backhaul.dbt.manifest import target_path

    theirs = target_path(there) / "manifest.json"
    ours = target_path((working / folder).resolve()) / "manifest.json"
    if there.is_dir() and ours.is_file() and not theirs.exists():
        theirs.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ours, theirs)


@contextmanager
def unpacked(repo: Repository, name: str, working: Path | None = None) -> Iterator[Revision]:
    """The project folder of revision ``name`` in a temporary folder, removed afterwards.

    The folder does not exist when the revision has no files under the project's path.
    With ``working`` (the project folder in the working tree), a dbt project that
    ``backhaul.yml`` names outside the project folder is unpacked too, and lent the working
    tree's manifest when the revision has none.

    Raises:
        RevisionError: ``name`` is not a commit, or git could not archive it.
    """
    commit = resolve(repo, name)
    with tempfile.TemporaryDirectory(prefix="backhaul-rev-") as tmp:
        tree = Path(tmp) / "tree"
        tree.mkdir()
        _extract(repo, commit, repo.prefix, tree)
        project = tree / repo.prefix if repo.prefix else tree
        if working is not None and project.is_dir():
            _with_dbt(repo, commit, tree, project, working)
        yield Revision(name, commit, project)


__all__ = ["Repository", "Revision", "repository", "resolve", "unpacked"]
