"""Runs only from approved commits: the gate, and the approvals kept in the metadata store.

With ``approval: {required: true}`` in backhaul.yml a run may start only when

- the project folder is in Git and its files (:data:`backhaul.gitinfo.PROJECT_PATHS`) have
  no uncommitted changes, and
- the commit checked out (``HEAD``) was approved by an admin.

An approval covers exactly one commit: a commit made on top of an approved one, from the
web app or with ``git commit``, waits for its own approval. :func:`check` is the one gate;
``engine.runner.run_sync`` calls it before it opens anything, so every run meets it
(``backhaul run``, the scheduler, the workers, the web app's Run now, the Python API);
``engine.launch.run_checked`` records a refusal as a failed run.
Dry runs (``plan``) send nothing and are not gated.

Approvals live in the metadata store (table ``approvals``), not in Git: anyone who can push
can write a Git note or a tag, but only an admin of the web app, or an operator holding
the store's credentials (``backhaul approve``), can write the store.

Switching approval off is itself a change that needs approval: each approval records
whether the approved commit's backhaul.yml required approval, and approval stays required
while the nearest approved commit behind ``HEAD`` (or the project's latest approval) says
so, whatever an unapproved commit's backhaul.yml says.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from sqlalchemy import Row
from sqlalchemy import desc
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from backhaul import gitinfo
from backhaul.config.project import Project
from backhaul.errors import ApprovalRequired
from backhaul.errors import BackhaulError
from backhaul.state.tables import approvals

if TYPE_CHECKING:  # for annotations only: the store module loads pyarrow and Alembic
    from backhaul.state.store import RunStore

# How far back from HEAD the nearest approved commit is looked for.
HISTORY_DEPTH = 500
APPROVE_HINT = (
    "approve it in the web app at /approvals or run `backhaul approve {commit}` as an admin"
)


@dataclass(frozen=True, slots=True)
class Approval:
    """One approved commit.

    Attributes:
        project: The project's name (``name:`` in backhaul.yml).
        commit: The full commit id.
        approved_by: The admin (a web user name, or the name given to ``backhaul approve``).
        approved_at: When.
        via: ``web`` (the approvals page), ``cli`` (``backhaul approve``) or ``save`` (an
            admin's own save in the web app).
        required: Whether that commit's backhaul.yml required approval.
        draft: The draft branch whose merge made the commit, if any.
    """

    project: str
    commit: str
    approved_by: str
    approved_at: datetime
    via: str
    required: bool
    draft: str | None = None

    @property
    def short(self) -> str:
        return self.commit[:10]


class ApprovalStore:
    """Reads and writes ``approvals`` in the run store's database."""

    def __init__(self, store: RunStore) -> None:
        self.engine = store.engine

    @staticmethod
    def _record(row: Row[Any]) -> Approval:
        return Approval(
            row.project,
            row.commit,
            row.approved_by,
            row.approved_at,
            row.via,
            bool(row.required),
            row.draft,
        )

    def get(self, project: str, commit: str) -> Approval | None:
        """The approval of ``commit``, if it has one."""
        query = select(approvals).where(
            approvals.c.project == project, approvals.c.commit == commit
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else self._record(row)

    def among(self, project: str, commits: list[str]) -> dict[str, Approval]:
        """The approved ones of ``commits``, by commit."""
        found: dict[str, Approval] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(commits), 200):
                chunk = commits[start : start + 200]
                query = select(approvals).where(
                    approvals.c.project == project, approvals.c.commit.in_(chunk)
                )
                for row in conn.execute(query):
                    found[row.commit] = self._record(row)
        return found

    def recent(self, project: str, limit: int = 20) -> list[Approval]:
        """The latest ``limit`` approvals of ``project``, newest first."""
        query = (
            select(approvals)
            .where(approvals.c.project == project)
            .order_by(desc(approvals.c.approved_at))
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [self._record(row) for row in conn.execute(query)]

    def add(self, approval: Approval) -> Approval:
        """Record ``approval``; a commit approved before keeps its first approval."""
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(approvals).values(
                        project=approval.project,
                        commit=approval.commit,
                        approved_by=approval.approved_by,
                        approved_at=approval.approved_at,
                        via=approval.via,
                        required=approval.required,
                        draft=approval.draft,
                    )
                )
        except IntegrityError:
            pass  # approved already (maybe by another admin at the same moment)
        found = self.get(approval.project, approval.commit)
        assert found is not None
        return found


def _git(folder: Path, *args: str) -> str | None:
    return gitinfo.git_output(folder, *args, timeout=30)


def resolve(folder: Path, revision: str) -> str | None:
    """The full commit id ``revision`` names in the repository of ``folder`` (None: none)."""
    if not revision or revision.startswith("-") or not revision.isprintable():
        return None
    out = _git(
        folder, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{revision}^{{commit}}"
    )
    return out.strip() if out else None


def history(folder: Path, tip: str = "HEAD", limit: int = HISTORY_DEPTH) -> list[str]:
    """Commits reachable from ``tip``, newest first (at most ``limit``)."""
    out = _git(folder, "rev-list", f"--max-count={limit}", tip, "--")
    return (out or "").split()


def _required_at(folder: Path, commit: str) -> bool | None:
    """``approval.required`` of backhaul.yml at ``commit``; None when there is no file,
    True when it cannot be read (a broken file never switches approval off)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    prefix = (_git(folder, "rev-parse", "--show-prefix") or "").strip()
    for name in ("backhaul.yml", "backhaul.yaml"):
        text = _git(folder, "show", f"{commit}:{prefix}{name}")
        if text is None:
            continue
        try:
            data = YAML(typ="safe").load(text)
        except YAMLError:
            return True
        section = data.get("approval") if isinstance(data, dict) else None
        if section is None:
            return False
        value = section.get("required", False) if isinstance(section, dict) else True
        return value is not False
    return None


def requires_approval_at(folder: Path, commit: str) -> bool:
    """Whether backhaul.yml at ``commit`` sets ``approval.required`` (True when it cannot
    be read)."""
    return _required_at(folder, commit) is not False


def _required_in_history(folder: Path) -> bool:
    """Whether a recent commit behind ``HEAD`` that touched ``approval`` in backhaul.yml
    required approval."""
    out = _git(
        folder,
        "log",
        "-n",
        "20",
        "-G",
        "approval",
        "--format=%H",
        "HEAD",
        "--",
        "backhaul.yml",
        "backhaul.yaml",
    )
    return any(_required_at(folder, commit) for commit in (out or "").split())


def required(project: Project, store: RunStore) -> bool:
    """Whether runs of ``project`` need an approved commit now.

    True when backhaul.yml says so. Otherwise approval stays required until a commit that
    switches it off is approved: while the project's latest approval was of a backhaul.yml
    that required it; else while the nearest approved commit behind ``HEAD`` did; and, when
    this store holds no approval behind ``HEAD`` (a new store, say), while a recent commit
    behind ``HEAD`` required it.
    """
    if project.config.approval.required:
        return True
    book = ApprovalStore(store)
    name = project.config.name
    latest = book.recent(name, 1)
    if latest and latest[0].required:
        return True
    if latest:
        commits = history(project.root)
        known = book.among(name, commits)
        for commit in commits:
            if commit in known:
                return known[commit].required
    return _required_in_history(project.root)  # outside Git: False


def check(project: Project, store: RunStore) -> gitinfo.Head | None:
    """The gate: return when ``project`` may run now, else raise :class:`ApprovalRequired`
    saying which commit and what to do next.

    Returns:
        The project's ``HEAD`` as the gate read it when approval is required (the run records
        it rather than asking Git again), else None.

    Raises:
        ApprovalRequired: approval is required and the project is not in Git, its files
            have uncommitted changes, or its commit is not approved.
    """
    if not required(project, store):
        return None
    head = gitinfo.head(project.root)
    if head is None:
        raise ApprovalRequired(
            f"runs need an approved commit (approval in backhaul.yml), but {project.root} "
            "is not in a Git repository with a commit: commit the project and have an admin "
            "approve it"
        )
    short = head.commit[:10]
    if head.dirty:
        raise ApprovalRequired(
            f"the project's files have uncommitted changes on top of commit {short}; with "
            "approval on, only approved commits run: commit the changes and have the commit "
            "approved, or discard them (`git status` lists them)"
        )
    if ApprovalStore(store).get(project.config.name, head.commit) is None:
        raise ApprovalRequired(
            f"commit {short} is not approved to run: " + APPROVE_HINT.format(commit=short)
        )
    return head


def approve(
    project: Project,
    store: RunStore,
    revision: str,
    *,
    by: str,
    via: str,
    draft: str | None = None,
) -> Approval:
    """Record that ``by`` approved the commit ``revision`` names (kept if approved before).

    Raises:
        BackhaulError: ``revision`` is not a commit of the project's repository, or ``by``
            is empty.
    """
    if not by.strip():
        raise BackhaulError("say who approves: an approval needs a name")
    commit = resolve(project.root, revision)
    if commit is None:
        raise BackhaulError(
            f"`{revision}` is not a commit of the repository holding {project.root}; "
            "`backhaul approvals` lists the commits waiting"
        )
    return ApprovalStore(store).add(
        Approval(
            project.config.name,
            commit,
            by.strip(),
            datetime.now(UTC),
            via,
            requires_approval_at(project.root, commit),
            draft,
        )
    )


@dataclass(frozen=True, slots=True)
class Pending:
    """What waits on the approved branch: ``HEAD`` and the commits since the last approval.

    Attributes:
        head: The commit checked out.
        commits: Unapproved commits from ``HEAD`` back to the last approved one, newest first
            (empty: ``HEAD`` is approved).
        base: The nearest approved commit behind them (None: none in reach).
        dirty: The project's files have uncommitted changes.
    """

    head: str
    commits: list[gitinfo.FileCommit]
    base: str | None
    dirty: bool


def pending(project: Project, store: RunStore) -> Pending | None:
    """The checked-out commits awaiting approval; None outside Git."""
    head = gitinfo.head(project.root)
    if head is None:
        return None
    commits = history(project.root)
    known = ApprovalStore(store).among(project.config.name, commits)
    waiting: list[str] = []
    base = None
    for commit in commits:
        if commit in known:
            base = commit
            break
        waiting.append(commit)
    return Pending(head.commit, describe(project.root, waiting), base, head.dirty)


def describe(folder: Path, commits: list[str]) -> list[gitinfo.FileCommit]:
    """Author, date and subject of each of ``commits``, in the same order."""
    if not commits:
        return []
    sep = "\x1f"
    out = _git(folder, "show", "-s", f"--format=%H{sep}%an{sep}%aI{sep}%s", *commits[:50], "--")
    found = []
    for line in (out or "").splitlines():
        parts = line.split(sep)
        if len(parts) == 4:
            at = datetime.fromisoformat(parts[2]).astimezone(UTC)
            found.append(gitinfo.FileCommit(parts[0], parts[1], at, parts[3]))
    return found


__all__ = [
    "APPROVE_HINT",
    "Approval",
    "ApprovalStore",
    "Pending",
    "approve",
    "check",
    "describe",
    "history",
    "pending",
    "required",
    "requires_approval_at",
    "resolve",
]
