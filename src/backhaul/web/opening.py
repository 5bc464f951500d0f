"""Which version of a project file an editor opens: the checked-out one, or the signed-in
user's pending draft of it.

With approval on (``approval: {required: true}``), an editor's save is committed on their
draft branch (:mod:`backhaul.drafts`) and the checked-out files stay the approved ones.
The editors and the audience builder then open the file as that draft holds it, so the
editor sees their own change and the next save is checked against (and added to) the
draft. Everyone else, and the editor on files they have no draft of, opens the
checked-out files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from backhaul import approval
from backhaul import drafts
from backhaul.config.project import Project
from backhaul.errors import ConfigError
from backhaul.files import NotReadable
from backhaul.files import read_text
from backhaul.gitsave import Repo
from backhaul.state.store import RunStore
from backhaul.web.auth import Role
from backhaul.web.auth import User


def read_file(project: Project, rel: str) -> str | None:
    """A project file's text as it is on disk now (None: no such file).

    Read as the loader reads project files (:func:`backhaul.files.read_text`): a path that
    is not a regular file (a FIFO, a device), too large or not UTF-8 is refused with a
    :class:`ConfigError` naming it, instead of blocking or filling memory.
    """
    path = project.root / rel
    if not os.path.lexists(path):
        return None
    try:
        return read_text(path)
    except NotReadable as exc:
        raise ConfigError(exc.reason, file=rel) from None


def drafting(project: Project, store: RunStore, user: User) -> bool:
    """Whether ``user``'s saves go to draft branches: approval is on and they are an
    editor, not an admin."""
    if not user.role.allows(Role.EDITOR) or user.role.allows(Role.ADMIN):
        return False
    return approval.required(project, store)


def draft_branch(project: Project, store: RunStore, user: User, rel: str) -> str | None:
    """The branch ``user``'s save of ``rel`` goes to: their draft branch when approval is
    on and they are an editor, not an admin (None: the checked-out branch)."""
    if not drafting(project, store, user):
        return None
    return drafts.branch_for(user.username, rel)


def drafted_files(project: Project, store: RunStore, user: User) -> dict[str, drafts.FileChange]:
    """The files ``user`` opens from a pending draft that changes them, by path relative
    to the project folder (empty when their saves are not drafts).

    The same rule as :func:`opened`: ``rel`` is opened from the draft branch
    :func:`draft_branch` names for it, so a file another of the user's drafts happens to
    hold is not counted. One git read for all of them, for pages that list the project.
    """
    if not drafting(project, store, user):
        return {}
    approved = project.config.approval.branch
    found = drafts.changes_by(project.root, approved, user.username)
    return {c.path: c for c in found if c.branch == drafts.branch_for(user.username, c.path)}


def pending_note(branch: str) -> str:
    """What the editor is told when they open their pending draft, and after each save
    that went to it: one notice, so the two never drift apart."""
    return (
        f"You are editing your pending draft {branch}: it is not approved yet, so it does "
        "not run and others see the approved version. Saving adds to this draft; an admin "
        "approves it at /approvals."
    )


@dataclass(frozen=True)
class Opened:
    """Where an editor reads the files it opens.

    Attributes:
        project: The project served.
        draft: The signed-in user's pending draft branch of the file (None: none; the
            checked-out files are read).
        tip: That draft's newest commit, which the files are read from.
    """

    project: Project
    draft: str | None = None
    tip: str | None = None

    def read(self, rel: str) -> str | None:
        """``rel`` (relative to the project folder) as the editor opens it; None: no file."""
        if self.tip is None:
            return read_file(self.project, rel)
        repo = Repo.find(self.project.root)
        if repo is None:
            return read_file(self.project, rel)
        target = (self.project.root / rel).resolve()
        return repo.show(self.tip, repo.path_of(target))

    @property
    def note(self) -> str | None:
        """The notice the page shows when a pending draft is open."""
        return pending_note(self.draft) if self.draft else None


def opened(project: Project, store: RunStore, user: User, rel: str) -> Opened:
    """Where ``user`` opens ``rel`` (and the files saved with it, a model's ``.sql``): the
    tip of their pending draft of it when there is one, else the checked-out files."""
    branch = draft_branch(project, store, user, rel) if rel else None
    repo = Repo.find(project.root) if branch else None
    tip = repo.tip(branch) if repo is not None and branch else None
    if tip is None:
        return Opened(project)
    return Opened(project, branch, tip)


__all__ = [
    "Opened",
    "draft_branch",
    "drafted_files",
    "drafting",
    "opened",
    "pending_note",
    "read_file",
]
