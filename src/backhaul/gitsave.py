"""Save a project file from the web app: write it, validate the project, commit it.

One function, :func:`save_file` (:func:`save_files` for files that change together), used by every editor of the web app (the audience builder
today, the editors of sources, models, destinations and syncs next). The steps, under a
lock held for the whole save:

1. refuse when the repository is in the middle of a merge, rebase or cherry-pick, or when
   the file has changes that are not committed (made outside Backhaul): saving would
   commit someone else's work under the signed-in user's name;
2. refuse when the file changed on disk since the editor opened it (``base`` differs);
3. write the new text atomically, then run the same checks as ``backhaul validate
   --offline``; on any problem put the previous text back and raise
   :class:`InvalidContent` with every problem (file, line, key, message);
4. commit only that file, authored by the signed-in user. Nothing else is committed, even
   when other files are staged or changed. A failed commit (a refusing hook) puts the
   previous text back too.

Outside a Git repository the file is written and validated the same way; the caller
records the save in the audit log. Git is driven through its command line (see
docs/architecture.md for why).

With ``branch`` (a draft branch when approval is on, see :mod:`backhaul.drafts`) the files
are committed on that branch instead, without touching the checked-out files: the branch's
versions are read and checked against ``bases``, the project is validated as that branch
would hold it (unpacked in a temporary folder), and the commit is made with Git's
plumbing (no hooks run).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from contextlib import suppress
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING

from backhaul.errors import ConfigError
from backhaul.errors import InvalidContent
from backhaul.errors import SaveConflict
from backhaul.errors import SaveError
from backhaul.files import NotReadable
from backhaul.files import not_a_file
from backhaul.files import read_text_if_any

if TYPE_CHECKING:
    from backhaul.config.project import Project

GIT_TIMEOUT_S = 60
LOCK_FILE = "backhaul-save.lock"
_IN_PROGRESS = {
    "MERGE_HEAD": "merge",
    "CHERRY_PICK_HEAD": "cherry-pick",
    "REVERT_HEAD": "revert",
    "rebase-merge": "rebase",
    "rebase-apply": "rebase",
}


@dataclass(frozen=True)
class Author:
    """Who a commit is by: the signed-in user."""

    name: str
    email: str

    @classmethod
    def for_user(cls, username: str, domain: str = "users.backhaul.invalid") -> Author:
        """An author for a web user; web users have no e-mail address of their own."""
        return cls(username, f"{username}@{domain}")


@dataclass(frozen=True)
class Problem:
    """One validation problem, placed at a file, line and key when known."""

    message: str
    file: str | None = None
    line: int | None = None
    key: str | None = None

    @property
    def text(self) -> str:
        """``file:line: key: message``, as the CLI prints it."""
        return ConfigError.format(self.message, self.file, self.line, self.key)


@dataclass(frozen=True)
class SaveResult:
    """What a save did.

    Attributes:
        path: The file, relative to the project folder.
        changed: False when the text was already on disk (nothing written or committed).
        commit: The new commit's id; None outside Git or when nothing changed.
        text: The text now in the file.
    """

    path: str
    changed: bool
    commit: str | None
    text: str


Validator = Callable[[Path], list[Problem]]


def text_hash(text: str | None) -> str:
    """The ``base`` an editor sends back: a hash of the text it opened ("" for no file)."""
    if text is None:
        return ""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def project_problems(root: Path) -> list[Problem]:
    """The checks of ``backhaul validate --offline`` on the project in ``root``."""
    return _checked(root)[1]


def _checked(root: Path) -> tuple[Project | None, list[Problem]]:
    """The project in ``root`` and its problems under the checks of ``backhaul validate
    --offline`` (no project when it does not load)."""
    from backhaul.config.checks import check_project
    from backhaul.config.loader import load_project
    from backhaul.errors import ConfigErrors

    try:
        project = load_project(root)
    except ConfigErrors as exc:
        return None, [_problem(e) for e in exc.errors]
    except ConfigError as exc:
        return None, [_problem(exc)]
    return project, [_problem(e) for e in check_project(project, open_sources=False)]


@contextmanager
def project_with(root: Path, files: dict[str, str]) -> Iterator[Project]:
    """The project in ``root`` as it would be with ``files`` saved, validated as a save
    validates it, while nothing in ``root`` is written (to try a file before saving it).

    The definitions (``backhaul.yml`` and the folders the loader reads) are copied into a
    temporary folder and ``files`` written there; everything else (data files, a dbt
    project, Git) is linked, not copied. The project yielded lives in that folder, removed
    afterwards: take its definitions, not its ``root``.

    Raises:
        InvalidContent: The project would not validate with ``files``; every problem.
        SaveError: A file is outside the project's definitions.
    """
    from backhaul.config.loader import FOLDERS
    from backhaul.config.loader import PROJECT_FILES

    root = root.resolve()
    copied = {*FOLDERS, *PROJECT_FILES}
    with tempfile.TemporaryDirectory(prefix="backhaul-try-") as tmp:
        folder = Path(tmp).resolve()
        for entry in root.iterdir():
            if entry.name not in copied:
                (folder / entry.name).symlink_to(entry)
            elif entry.is_dir():
                shutil.copytree(entry, folder / entry.name, ignore_dangling_symlinks=True)
            else:
                shutil.copyfile(entry, folder / entry.name)
        for rel, text in files.items():
            target = (folder / rel).resolve()
            top = Path(rel).parts[0] if Path(rel).parts else ""
            if top not in FOLDERS or not target.is_relative_to(folder / top):
                raise SaveError(f"`{rel}` is not a definition in the project folder")
            _write(target, text)
        project, problems = _checked(folder)
        if problems or project is None:
            raise InvalidContent(problems)
        yield project


def _problem(error: ConfigError) -> Problem:
    return Problem(error.reason, error.file, error.line, error.key)


@dataclass
class Repo:
    """The Git work tree a project lives in, driven through ``git``."""

    top: Path
    git_dir: Path
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def find(cls, folder: Path) -> Repo | None:
        """The repository holding ``folder``; None when it is not in one (or git is missing)."""
        try:
            out = _git(folder, "rev-parse", "--show-toplevel", "--absolute-git-dir")
        except (SaveError, FileNotFoundError):
            return None
        top, git_dir = out.splitlines()[:2]
        return cls(Path(top).resolve(), Path(git_dir))

    def path_of(self, target: Path) -> str:
        """``target`` as Git names it: relative to the top of the work tree."""
        return target.relative_to(self.top).as_posix()

    def run(self, *args: str, env: dict[str, str] | None = None) -> str:
        return _git(self.top, *args, env={**self.env, **(env or {})})

    def in_progress(self) -> str | None:
        """The operation the repository is in the middle of, if any."""
        for name, what in _IN_PROGRESS.items():
            if (self.git_dir / name).exists():
                return what
        return None

    def has_head(self) -> bool:
        try:
            self.run("rev-parse", "--verify", "--quiet", "HEAD")
        except SaveError:
            return False
        return True

    def uncommitted(self, rel: str) -> bool:
        """The file differs from the last commit (in the index or the work tree)."""
        return bool(self.run("status", "--porcelain", "--untracked-files=all", "--", rel).strip())

    def commit(self, rel: str | list[str], message: str, author: Author) -> str:
        """Commit only ``rel`` (one path or several), by ``author``; returns the commit id."""
        rels = [rel] if isinstance(rel, str) else rel
        self.run("add", "--all", "--", *rels)
        env = {"GIT_AUTHOR_NAME": author.name, "GIT_AUTHOR_EMAIL": author.email}
        if not self._configured("user.name") or not self._configured("user.email"):
            # No identity for the server: the user commits as well as authors.
            env |= {"GIT_COMMITTER_NAME": author.name, "GIT_COMMITTER_EMAIL": author.email}
        self.run("commit", "--quiet", "--only", "-m", message, "--", *rels, env=env)
        return self.run("rev-parse", "HEAD").strip()

    def current_branch(self) -> str | None:
        """The branch checked out (None: a detached ``HEAD``)."""
        try:
            return self.run("symbolic-ref", "--quiet", "--short", "HEAD").strip() or None
        except SaveError:
            return None

    def tip(self, branch: str) -> str | None:
        """The commit ``branch`` points at (None: no such branch)."""
        try:
            return self.run("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}").strip()
        except SaveError:
            return None

    def show(self, commit: str, path: str) -> str | None:
        """``path`` (from the top of the repository) at ``commit``; None when not there."""
        try:
            return self.run("cat-file", "blob", f"{commit}:{path}")
        except SaveError:
            return None

    def commit_on(
        self,
        branch: str,
        parent: str,
        files: dict[str, str | None],
        message: str,
        author: Author,
    ) -> str:
        """Commit ``files`` (path from the top of the repository -> text, None: delete) on
        ``branch`` on top of ``parent``, without the working tree or the index; the branch
        must still be at ``parent`` (else refused)."""
        with tempfile.TemporaryDirectory(prefix="backhaul-draft-") as tmp:
            index = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            self.run("read-tree", parent, env=index)
            for n, (path, text) in enumerate(files.items()):
                if text is None:
                    self.run("update-index", "--force-remove", "--", path, env=index)
                    continue
                staged = Path(tmp) / f"blob{n}"
                staged.write_text(text, encoding="utf-8", newline="")
                blob = self.run("hash-object", "-w", f"--path={path}", "--", str(staged)).strip()
                listed = self.run("ls-tree", parent, "--", path).split()
                mode = listed[0] if listed and listed[0] in ("100644", "100755") else "100644"
                self.run("update-index", "--add", "--cacheinfo", f"{mode},{blob},{path}", env=index)
            tree = self.run("write-tree", env=index).strip()
        env = {"GIT_AUTHOR_NAME": author.name, "GIT_AUTHOR_EMAIL": author.email}
        if not self._configured("user.name") or not self._configured("user.email"):
            env |= {"GIT_COMMITTER_NAME": author.name, "GIT_COMMITTER_EMAIL": author.email}
        commit = self.run("commit-tree", tree, "-p", parent, "-m", message, env=env).strip()
        old = self.tip(branch) or "0" * 40
        if old not in ("0" * 40, parent):
            raise SaveConflict(f"branch `{branch}` moved during the save: save again")
        self.run("update-ref", "-m", message, f"refs/heads/{branch}", commit, old)
        return commit

    def unstage(self, rel: str | list[str]) -> None:
        """Put the index entries of ``rel`` back to the last commit (or drop new files)."""
        rels = [rel] if isinstance(rel, str) else rel
        if self.has_head():
            self.run("reset", "--quiet", "HEAD", "--", *rels)
        else:
            self.run("rm", "--cached", "--quiet", "--ignore-unmatch", "--", *rels)

    def _configured(self, key: str) -> bool:
        try:
            return bool(self.run("config", "--get", key).strip())
        except SaveError:
            return False


def _git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    full = {**os.environ, **(env or {}), "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=full,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise SaveError(f"git {args[0]} took longer than {GIT_TIMEOUT_S} s; try again") from exc
    if done.returncode != 0:
        why = (done.stderr or done.stdout).strip().splitlines()
        detail = why[-1] if why else f"exit code {done.returncode}"
        raise SaveError(f"git {args[0]} failed: {detail}", detail=done.stderr)
    return done.stdout


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One save at a time per project, across threads and processes (``serve --workers``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if (found := not_a_file(path)) is not None:
        raise SaveError(f"cannot lock {path} to save: it {found}; remove it and save again")
    # Not blocking: a named pipe put there since would otherwise wait for a reader.
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        raise SaveError(f"cannot lock {path} to save: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _write(target: Path, text: str | None) -> None:
    """Replace ``target`` atomically with ``text``; None removes it."""
    if text is None:
        target.unlink(missing_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read(target: Path) -> str | None:
    """The file's text as it is (line endings kept), or None when there is none."""
    try:
        return read_text_if_any(target)
    except NotReadable as exc:
        raise SaveError(f"cannot save over {target}: it {exc.reason}") from None


def save_file(
    root: Path,
    rel: str,
    text: str,
    *,
    author: Author,
    message: str,
    base: str | None = None,
    validate: Validator = project_problems,
    lock_dir: Path | None = None,
    branch: str | None = None,
    start: str = "HEAD",
) -> SaveResult:
    """Write ``root/rel``, validate the project, and commit the file when in Git.

    Args:
        root: The project folder.
        rel: The file, relative to ``root`` (``audiences/vip.yml``).
        text: Its new content.
        author: The signed-in user.
        message: The commit message.
        base: :func:`text_hash` of the text the editor opened ("" for a new file); when
            given and the file now holds something else, the save is refused.
        validate: Returns the problems of the project in a folder; default: the checks of
            ``backhaul validate --offline``.
        lock_dir: Where the lock file goes outside Git (default: ``root/.backhaul``).
        branch: Commit on this branch (created from ``start`` when missing) rather than
            on the checked-out one; the working tree is left as it is. Ignored when it
            is the branch checked out; refused outside Git.
        start: Where a new ``branch`` starts (a branch name or commit).

    Raises:
        SaveConflict: A merge or rebase is in progress, the file has uncommitted changes,
            or it changed since ``base``.
        InvalidContent: The project would not validate; the old text is back.
        SaveError: Git failed (a hook refused the commit...); the old text is back.
    """
    bases = None if base is None else {rel: base}
    results = save_files(
        root,
        {rel: text},
        author=author,
        message=message,
        bases=bases,
        validate=validate,
        lock_dir=lock_dir,
        branch=branch,
        start=start,
    )
    return results[0]


def save_files(
    root: Path,
    files: dict[str, str | None],
    *,
    author: Author,
    message: str,
    bases: dict[str, str] | None = None,
    validate: Validator = project_problems,
    lock_dir: Path | None = None,
    branch: str | None = None,
    start: str = "HEAD",
) -> list[SaveResult]:
    """:func:`save_file` for files that change together (a model's ``.yml`` and ``.sql``).

    ``None`` as a file's text deletes it. All files are written, the project validated
    once, and, in Git, the files that changed committed in one commit; on any problem
    every file is put back as it was. ``bases`` maps a file to the :func:`text_hash` its
    editor opened (files not in it are not checked). Returns one result per file, in
    order; a deleted file's ``text`` is "". ``branch`` and ``start`` as in
    :func:`save_file`.
    """
    root = root.resolve()
    targets: list[tuple[str, Path, str | None]] = []
    for rel, text in files.items():
        target = (root / rel).resolve()
        if not target.is_relative_to(root):
            raise SaveError(f"`{rel}` is outside the project folder")
        targets.append((rel, target, text))
    repo = Repo.find(root)
    lock = (repo.git_dir if repo else (lock_dir or root / ".backhaul")) / LOCK_FILE
    if branch is not None and repo is None:
        raise SaveError(f"{root} is not in a Git repository: cannot save on branch `{branch}`")
    with _locked(lock):
        if repo is not None and branch is not None and branch != repo.current_branch():
            return _save_on_branch(
                repo, root, targets, author, message, bases, validate, branch, start
            )
        if repo is not None and (busy := repo.in_progress()):
            names = ", ".join(t[0] for t in targets)
            raise SaveConflict(
                f"the Git repository is in the middle of a {busy}: finish or abort it, "
                f"then save again ({names} was not changed)"
            )
        befores: list[str | None] = []
        for given, target, _ in targets:
            rel = target.relative_to(root).as_posix()
            if repo is not None and repo.uncommitted(repo.path_of(target)):
                raise SaveConflict(
                    f"{rel} has changes that are not committed (made outside Backhaul): "
                    "commit or discard them, then reopen it and save again"
                )
            before = _read(target)
            wanted = (bases or {}).get(given)
            if wanted is not None and text_hash(before) != wanted:
                raise SaveConflict(
                    f"{rel} changed on disk since you opened it: reopen it to see the new "
                    "version, then make your change again"
                )
            befores.append(before)
        changed = [
            (target, text, before)
            for (_, target, text), before in zip(targets, befores, strict=True)
            if before != text
        ]
        results = [
            SaveResult(target.relative_to(root).as_posix(), before != text, None, text or "")
            for (_, target, text), before in zip(targets, befores, strict=True)
        ]
        if not changed:
            return results
        for target, text, _ in changed:
            _write(target, text)
        paths = [repo.path_of(t) for t, _, _ in changed] if repo is not None else []
        try:
            problems = validate(root)
            if problems:
                raise InvalidContent(problems)
            commit = repo.commit(paths, message, author) if repo is not None else None
        except BaseException:
            for target, _, before in changed:
                _write(target, before)
            if repo is not None:
                # The save already failed; its own error says why.
                with suppress(SaveError):
                    repo.unstage(paths)
            raise
        return [
            SaveResult(r.path, r.changed, commit if r.changed else None, r.text) for r in results
        ]


def _save_on_branch(
    repo: Repo,
    root: Path,
    targets: list[tuple[str, Path, str | None]],
    author: Author,
    message: str,
    bases: dict[str, str] | None,
    validate: Validator,
    branch: str,
    start: str,
) -> list[SaveResult]:
    """:func:`save_files` on a branch that is not checked out (the caller holds the lock)."""
    from backhaul.review.revisions import repository
    from backhaul.review.revisions import unpacked

    parent = repo.tip(branch)
    if parent is None:
        try:
            parent = repo.run("rev-parse", "--verify", "--quiet", f"{start}^{{commit}}").strip()
        except SaveError:
            raise SaveError(f"cannot start branch `{branch}`: `{start}` is not a commit") from None
    changed: dict[str, str | None] = {}
    results: list[SaveResult] = []
    for given, target, text in targets:
        rel = target.relative_to(root).as_posix()
        in_git = repo.path_of(target)
        before = repo.show(parent, in_git)
        wanted = (bases or {}).get(given)
        if wanted is not None and text_hash(before) != wanted:
            raise SaveConflict(
                f"{rel} changed on `{branch}` since you opened it: reopen it to see the new "
                "version, then make your change again"
            )
        if before != text:
            changed[in_git] = text
        results.append(SaveResult(rel, before != text, None, text or ""))
    if not changed:
        return results
    with unpacked(repository(root), parent, root) as revision:
        folder = revision.folder
        if not folder.is_dir():
            raise SaveError(f"`{branch}` holds no project at {root}")
        for _, target, text in targets:
            _write(folder / target.relative_to(root), text)
        problems = validate(folder)
    if problems:
        raise InvalidContent(problems)
    commit = repo.commit_on(branch, parent, changed, message, author)
    return [SaveResult(r.path, r.changed, commit if r.changed else None, r.text) for r in results]


__all__ = [
    "Author",
    "Problem",
    "Repo",
    "SaveResult",
    "Validator",
    "project_problems",
    "project_with",
    "save_file",
    "save_files",
    "text_hash",
]
