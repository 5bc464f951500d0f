"""Review a project change: load both sides, compare them, plan what the change implies.

The old side is always a Git revision, unpacked in a temporary folder. The new side is
the working tree, or another revision; a revision's definitions are then planned against
the working tree's warehouse and state, because the plan shows what the change would do
now.
"""

from __future__ import annotations

import dataclasses
from contextlib import ExitStack
from pathlib import Path

from backhaul.config.project import Project
from backhaul.errors import BackhaulError
from backhaul.errors import ConfigError
from backhaul.errors import ConfigErrors
from backhaul.review.changes import PlanOutcome
from backhaul.review.changes import Review
from backhaul.review.changes import SyncReview
from backhaul.review.changes import compare
from backhaul.review.revisions import Repository
from backhaul.review.revisions import repository
from backhaul.review.revisions import unpacked

WORKING_TREE = "working tree"


def _load(folder: Path) -> Project:
    from backhaul.api import load_project

    return load_project(folder, isolate=True)


def _first_error(exc: BackhaulError) -> str:
    if not isinstance(exc, ConfigErrors):
        return exc.message
    more = f" (and {len(exc.errors) - 1} more)" if len(exc.errors) > 1 else ""
    return exc.errors[0].message + more


def _project_root(folder: Path) -> Path:
    from backhaul.config.loader import find_root

    try:
        return find_root(folder)[0]
    except ConfigError:
        return folder.resolve()


def plan_outcome(project: Project, sync: str) -> PlanOutcome:
    """The dry run of ``sync``: nothing is sent and no state changes."""
    from backhaul import api

    try:
        counts = api.plan(project, sync, sample=0).counts
    except ConfigErrors as exc:
        return PlanOutcome(errors=tuple(e.message for e in exc.errors))
    except BackhaulError as exc:
        return PlanOutcome(errors=(exc.message,))
    return PlanOutcome(counts.added, counts.changed, counts.removed, counts.retried, counts.invalid)


def _new_side(
    stack: ExitStack, repo: Repository, root: Path, to: str | None
) -> tuple[Project, str | None]:
    if to is None:
        try:
            return _load(root), None
        except BackhaulError as exc:
            raise ConfigError(
                f"the project in {root} does not load: {_first_error(exc)}; "
                "`backhaul validate` lists every problem"
            ) from None
    revision = stack.enter_context(unpacked(repo, to, root))
    try:
        project = _load(revision.folder)
    except BackhaulError as exc:
        raise ConfigError(f"the project at `{to}` does not load: {_first_error(exc)}") from None
    # Definitions from the revision; warehouse files and state from the working tree.
    return dataclasses.replace(project, root=root), revision.commit


def diff_config(
    folder: Path, old: str = "HEAD", *, to: str | None = None, plan: bool = True
) -> Review:
    """Compare the project in ``folder`` at revision ``old`` with the working tree (or with
    revision ``to``), and plan every sync the change concerns.

    Raises:
        RevisionError: ``folder`` is not in a Git repository, or a revision is unknown.
        ConfigError: the new side of the comparison does not load.
    """
    root = _project_root(folder)
    repo = repository(root)
    with ExitStack() as stack:
        before = stack.enter_context(unpacked(repo, old, root))
        old_project: Project | None = None
        old_error: str | None = None
        if not any((before.folder / name).is_file() for name in ("backhaul.yml", "backhaul.yaml")):
            old_error = f"there is no backhaul.yml at {old}"
        else:
            try:
                old_project = _load(before.folder)
            except BackhaulError as exc:
                old_error = _first_error(exc)
        new_project, new_commit = _new_side(stack, repo, root, to)
        changes, syncs = compare(old_project, new_project, old)
        if plan:
            for review in syncs:
                _attach_plan(new_project, review)
    return Review(
        old_label=old,
        old_commit=before.commit,
        new_label=to or WORKING_TREE,
        new_commit=new_commit,
        old_error=old_error,
        changes=changes,
        syncs=syncs,
    )


def _attach_plan(project: Project, review: SyncReview) -> None:
    if review.status != "removed":
        review.plan = plan_outcome(project, review.name)


__all__ = ["WORKING_TREE", "diff_config", "plan_outcome"]
