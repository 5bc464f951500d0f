"""Approvals in the web app: the ``/approvals`` page, ``/api/v1/approvals``, and where a save
goes when approval is on (``approval: {required: true}``, see docs/git.md).

- :func:`save_project_file` is how the web app's editors save a project file: with approval
  on, an editor's save is committed on the editor's draft branch and the checked-out files
  do not change; an admin's save is committed on the checked-out branch as before, and is
  approved by that save when the commit under it was approved (an admin never approves,
  by saving, someone else's change they have not seen).
- Editors and admins see what waits: commits checked out that no admin approved, and the
  draft branches, each with the ``diff-config`` review of what it changes (in words, with
  the plan of each sync it touches). Only admins approve (a commit; or a draft, which is
  merged into the approved branch) and reject (a draft, whose branch is deleted). Every
  decision is in the audit log.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from dataclasses import asdict
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter
from fastapi import Depends
from fastapi import Form
from fastapi import HTTPException
from fastapi import Query
from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.responses import RedirectResponse
from fastapi.responses import Response
from pydantic import BaseModel
from pydantic import Field

from backhaul import approval
from backhaul import drafts
from backhaul.config.project import Project
from backhaul.errors import BackhaulError
from backhaul.errors import SaveConflict
from backhaul.gitsave import Author
from backhaul.gitsave import SaveResult
from backhaul.gitsave import save_files
from backhaul.state.store import RunStore
from backhaul.web.api.base import ERRORS
from backhaul.web.api.base import json_router
from backhaul.web.auth import Admin
from backhaul.web.auth import Editor
from backhaul.web.auth import Role
from backhaul.web.auth import User
from backhaul.web.deps import ProjectDep
from backhaul.web.deps import StoreDep
from backhaul.web.deps import UsersDep
from backhaul.web.deps import get_store
from backhaul.web.deps import templates
from backhaul.web.opening import draft_branch
from backhaul.web.opening import pending_note

api_router = json_router("/api/v1/approvals", tag="approvals")
page_router = APIRouter(include_in_schema=False)


# -- saving -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Saved:
    """A save, and the draft branch it went to (None: the checked-out branch)."""

    result: SaveResult
    draft: str | None
    approved: bool  # an admin's save approved by that save

    @property
    def note(self) -> str | None:
        """What the editor is told besides "saved"."""
        if self.draft and self.result.changed:
            return pending_note(self.draft)
        return None


def save_project_file(
    request: Request,
    project: Project,
    user: User,
    rel: str,
    text: str,
    *,
    message: str,
    base: str | None,
) -> Saved:
    """:func:`backhaul.gitsave.save_file` for ``user``, to a draft branch when approval is
    on and the user is not an admin. Raises what ``save_file`` raises."""
    bases = None if base is None else {rel: base}
    results, draft, approved = save_project_files(
        request, project, user, {rel: text}, message=message, bases=bases
    )
    return Saved(results[0], draft, approved)


def save_project_files(
    request: Request,
    project: Project,
    user: User,
    files: dict[str, str | None],
    *,
    message: str,
    bases: dict[str, str] | None,
) -> tuple[list[SaveResult], str | None, bool]:
    """:func:`backhaul.gitsave.save_files` for ``user``: on a draft branch (named after the
    first file) when approval is on and the user is not an admin. Returns the results, the
    draft branch (None: the checked-out branch) and whether an admin's save approved its
    own commit. Raises what ``save_files`` raises."""
    store = get_store(request)
    author = Author.for_user(user.username)
    branch = draft_branch(project, store, user, next(iter(files)))
    if branch is not None:
        results = save_files(
            project.root,
            files,
            author=author,
            message=message,
            bases=bases,
            branch=branch,
            start=project.config.approval.branch,
        )
        return results, branch, False
    on = approval.required(project, store)
    results = save_files(project.root, files, author=author, message=message, bases=bases)
    commit = next((r.commit for r in results if r.commit), None)
    approved = False
    if on and commit:
        parent = approval.resolve(project.root, f"{commit}^")
        book = approval.ApprovalStore(store)
        if parent is not None and book.get(project.config.name, parent) is not None:
            approval.approve(project, store, commit, by=user.username, via="save")
            approved = True
    return results, None, approved


# -- what waits ---------------------------------------------------------------------------


class ApprovalOut(BaseModel):
    commit: str
    approved_by: str
    approved_at: datetime
    via: str = Field(description="web, cli, or save (an admin's own save in the web app)")
    draft: str | None


class CommitOut(BaseModel):
    commit: str
    author: str
    at: datetime
    subject: str


class SyncPlanOut(BaseModel):
    sync: str
    status: str = Field(description="added, removed or changed")
    changes: list[str]
    add: int | None = None
    change: int | None = None
    remove: int | None = None
    errors: list[str] = Field(default_factory=list)


class ReviewOut(BaseModel):
    text: str = Field(description="`backhaul diff-config` of the change, as text")
    definitions: list[str] = Field(description="Changes of models, destinations, sources")
    syncs: list[SyncPlanOut]
    error: str | None = Field(None, description="Why the change could not be reviewed")


class DraftOut(BaseModel):
    branch: str
    tip: str
    base: str | None
    author: str
    at: datetime
    subject: str
    files: list[str]
    commits: int
    review: ReviewOut | None = None


class ApprovalsOut(BaseModel):
    required: bool
    branch: str = Field(description="approval.branch: where approved drafts are merged")
    head: str | None = Field(description="The commit checked out (None: not in Git)")
    approved: bool = Field(description="The commit checked out is approved")
    dirty: bool
    approved_base: str | None = Field(description="The nearest approved commit behind HEAD")
    commits: list[CommitOut] = Field(description="Unapproved commits, newest first")
    review: ReviewOut | None = Field(None, description="approved_base (or HEAD~) → HEAD")
    drafts: list[DraftOut]
    recent: list[ApprovalOut]


class DraftDecisionIn(BaseModel):
    tip: str | None = Field(
        None, description="The draft commit reviewed; refused (409) when the draft moved since"
    )


class DraftApprovedOut(BaseModel):
    branch: str
    commit: str = Field(description="The approved branch's new commit")
    approval: ApprovalOut | None = Field(
        description="Its approval; null when the branch's commit before the merge was not "
        "approved (the result then waits for an admin's approval of its own)"
    )


def _approval_out(found: approval.Approval) -> ApprovalOut:
    return ApprovalOut.model_validate(found, from_attributes=True)


def review_of(project: Project, old: str, new: str) -> ReviewOut:
    """``backhaul diff-config OLD --to NEW``: the change in words, with each sync's plan."""
    from backhaul.review.diff import diff_config
    from backhaul.review.render import text

    try:
        found = diff_config(project.root, old, to=new)
    except BackhaulError as exc:
        return ReviewOut(text="", definitions=[], syncs=[], error=exc.message)
    syncs = []
    for s in found.syncs:
        plan = s.plan
        syncs.append(
            SyncPlanOut(
                sync=s.name,
                status=s.status,
                changes=[c.text for c in s.changes] + [f"through {b}" for b in s.because],
                add=plan.added if plan else None,
                change=plan.changed if plan else None,
                remove=plan.removed if plan else None,
                errors=list(plan.errors) if plan else [],
            )
        )
    definitions = [f"{c.scope} {c.name}: {c.text}" for c in found.definitions]
    return ReviewOut(text=text(found), definitions=definitions, syncs=syncs)


def state(project: Project, store: RunStore, *, reviews: bool) -> ApprovalsOut:
    """What waits for approval, with reviews when asked (they plan each touched sync)."""
    settings = project.config.approval
    waiting = approval.pending(project, store)
    found = drafts.drafts(project.root, settings.branch)
    review = None
    if reviews and waiting is not None and waiting.commits:
        old = waiting.base or f"{waiting.commits[-1].commit}~"
        review = review_of(project, old, waiting.head)
    return ApprovalsOut(
        required=approval.required(project, store),
        branch=settings.branch,
        head=waiting.head if waiting else None,
        approved=bool(waiting and not waiting.commits),
        dirty=bool(waiting and waiting.dirty),
        approved_base=waiting.base if waiting else None,
        commits=[
            CommitOut(commit=c.commit, author=c.author, at=c.at, subject=c.subject)
            for c in (waiting.commits if waiting else [])
        ],
        review=review,
        drafts=[
            DraftOut(
                **asdict(d),
                review=review_of(project, d.base, d.tip) if reviews and d.base else None,
            )
            for d in found
        ],
        recent=[
            _approval_out(a) for a in approval.ApprovalStore(store).recent(project.config.name)
        ],
    )


# -- decisions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """An admin's decision on a commit or a draft, with what carrying it out needs.

    The API's routes and the page's buttons take the same request, admin and stores and
    differ only in how they answer, so those arrive once, as this dependency. Every
    decision is audited.
    """

    request: Request
    user: Admin
    project: ProjectDep
    store: StoreDep
    users: UsersDep

    def approve_commit(self, commit: str) -> approval.Approval:
        found = approval.approve(self.project, self.store, commit, by=self.user.username, via="web")
        self._audit("approve_commit", found.commit, {})
        return found

    def approve_draft(self, branch: str, tip: str | None) -> tuple[str, approval.Approval | None]:
        """Merge the draft and approve the result, unless the commit it was merged into was
        not approved: the admin reviewed the draft, not the unapproved commits under it, so
        the result then waits for its own approval. Returns the new commit and its approval."""
        project, store, username = self.project, self.store, self.user.username
        settings = project.config.approval
        drafts.find(project.root, settings.branch, branch)
        merged = drafts.merge(
            project.root, settings.branch, branch, by=Author.for_user(username), tip=tip
        )
        found = None
        if approval.ApprovalStore(store).get(project.config.name, merged.before) is not None:
            found = approval.approve(
                project, store, merged.commit, by=username, via="web", draft=branch
            )
        details = {"commit": merged.commit, "tip": tip, "approved": found is not None}
        self._audit("approve_draft", branch, details)
        self._reload()
        return merged.commit, found

    def reject_draft(self, branch: str, tip: str | None) -> None:
        drafts.find(self.project.root, self.project.config.approval.branch, branch)
        drafts.discard(self.project.root, branch, tip=tip)
        self._audit("reject_draft", branch, {"tip": tip})

    def _audit(self, action: str, target: str, details: dict[str, Any]) -> None:
        ip = self.request.client.host if self.request.client else None
        self.users.audit(self.user.username, action, target, details, ip)

    def _reload(self) -> None:
        from backhaul.api import load_project
        from backhaul.web.reload import adopt

        # A project that does not load is reported by the file watcher; the old one serves.
        state = self.request.app.state
        with suppress(BackhaulError):
            adopt(state, load_project(state.project.root))


DecisionDep = Annotated[Decision, Depends()]


def _http(exc: BackhaulError) -> HTTPException:
    return HTTPException(409 if isinstance(exc, SaveConflict) else 400, exc.message)


# -- API ----------------------------------------------------------------------------------


@api_router.get("", response_model=ApprovalsOut, responses=ERRORS)
def get_approvals(
    project: ProjectDep,
    store: StoreDep,
    review: Annotated[bool, Query(description="Add the diff-config review of each")] = False,
) -> ApprovalsOut:
    """Whether approval is on, the commit checked out, unapproved commits and drafts."""
    return state(project, store, reviews=review)


@api_router.post("/commits/{commit}", response_model=ApprovalOut, responses=ERRORS)
def approve_commit_route(
    commit: str,
    decision: DecisionDep,
) -> ApprovalOut:
    """Approve a commit to run (admin)."""
    try:
        return _approval_out(decision.approve_commit(commit))
    except BackhaulError as exc:
        raise _http(exc) from None


@api_router.post("/drafts/{branch:path}/approve", response_model=DraftApprovedOut, responses=ERRORS)
def approve_draft_route(
    branch: str,
    decision: DecisionDep,
    body: DraftDecisionIn | None = None,
) -> DraftApprovedOut:
    """Merge a draft into the approved branch and approve the result (admin)."""
    tip = body.tip if body else None
    try:
        commit, found = decision.approve_draft(branch, tip)
    except BackhaulError as exc:
        raise _http(exc) from None
    out = _approval_out(found) if found is not None else None
    return DraftApprovedOut(branch=branch, commit=commit, approval=out)


@api_router.post("/drafts/{branch:path}/reject", status_code=204, responses=ERRORS)
def reject_draft_route(
    branch: str,
    decision: DecisionDep,
    body: DraftDecisionIn | None = None,
) -> Response:
    """Delete a draft branch (admin)."""
    try:
        decision.reject_draft(branch, body.tip if body else None)
    except BackhaulError as exc:
        raise _http(exc) from None
    return Response(status_code=204)


# -- page ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PageNotice:
    """What the page says on top after one of its buttons: what was done, or why not.

    The buttons redirect back to the page with it in the query string, where the page
    reads it (as a dependency), so both ends of that round trip are written here.
    """

    done: Annotated[str, Query(max_length=300)] = ""
    error: Annotated[str, Query(max_length=1000)] = ""

    def back(self) -> Response:
        """Back to the page, showing this notice."""
        query = urlencode({k: v for k, v in (("done", self.done), ("error", self.error)) if v})
        return RedirectResponse("/approvals" + (f"?{query}" if query else ""), status_code=303)


@page_router.get("/approvals", response_class=HTMLResponse)
def approvals_page(
    request: Request,
    user: Editor,
    project: ProjectDep,
    store: StoreDep,
    notice: Annotated[PageNotice, Depends()],
) -> Response:
    """What waits for approval, each with its review; admins approve and reject."""
    context = {
        "user": user,
        "title": "Approvals",
        "state": state(project, store, reviews=True),
        "can_approve": user.role.allows(Role.ADMIN),
        "done": notice.done,
        "error": notice.error,
    }
    return templates.TemplateResponse(request, "approvals.html", context)


def _decided(carry_out: Callable[[], str]) -> Response:
    """Carry out a button's decision and go back to the page, saying what was done, or,
    when it could not be, why."""
    try:
        done = carry_out()
    except BackhaulError as exc:
        return PageNotice(error=exc.message).back()
    return PageNotice(done=done).back()


TipField = Annotated[str, Form(max_length=64)]


@page_router.post("/approvals/commits/{commit}")
def approve_commit_form(commit: str, decision: DecisionDep) -> Response:
    """The page's Approve button of a commit."""
    return _decided(lambda: f"commit {decision.approve_commit(commit).short} approved")


@page_router.post("/approvals/drafts/{branch:path}/approve")
def approve_draft_form(branch: str, decision: DecisionDep, tip: TipField = "") -> Response:
    """The page's Approve button of a draft."""

    def approve() -> str:
        commit, found = decision.approve_draft(branch, tip or None)
        if found is not None:
            return f"draft {branch} merged as commit {commit[:10]} and approved"
        under = decision.project.config.approval.branch
        return (
            f"draft {branch} merged as commit {commit[:10]}; it is not approved yet "
            f"because {under} held unapproved commits: review and approve it below"
        )

    return _decided(approve)


@page_router.post("/approvals/drafts/{branch:path}/reject")
def reject_draft_form(branch: str, decision: DecisionDep, tip: TipField = "") -> Response:
    """The page's Reject button of a draft."""

    def reject() -> str:
        decision.reject_draft(branch, tip or None)
        return f"draft {branch} rejected"

    return _decided(reject)


__all__ = [
    "Saved",
    "api_router",
    "page_router",
    "review_of",
    "save_project_file",
    "save_project_files",
    "state",
]
