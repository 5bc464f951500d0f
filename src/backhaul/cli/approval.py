"""`backhaul approve` and `backhaul approvals`: the approval of commits from the command line.

The CLI runs as the operator who holds the metadata store's credentials, which is what an
approval is written to; it records the name given with ``--by`` (default: Git's
``user.name`` in the project's repository).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Annotated
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from backhaul.cli.common import JsonOption
from backhaul.cli.common import ProjectDir
from backhaul.cli.common import _console
from backhaul.cli.common import _load
from backhaul.cli.common import handles_errors
from backhaul.cli.common import print_json
from backhaul.errors import BackhaulError


def _git_user(root: Path) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "config", "--get", "user.name"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


@handles_errors
def approve_command(
    commit: Annotated[
        str, typer.Argument(metavar="[COMMIT]", help="The commit to approve (default: HEAD).")
    ] = "HEAD",
    by: Annotated[
        str | None,
        typer.Option("--by", metavar="NAME", help="Who approves (default: Git's user.name)."),
    ] = None,
    project_dir: ProjectDir = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Approve a commit to run (with `approval: {required: true}` in backhaul.yml)."""
    from backhaul import approval
    from backhaul.api import open_store

    project = _load(project_dir, isolate=True)
    who = by if by is not None else _git_user(project.root)
    if not who.strip():
        raise BackhaulError("say who approves: `--by NAME` (or set Git's user.name)")
    with open_store(project) as store:
        found = approval.approve(project, store, commit, by=who, via="cli")
    if as_json:
        print_json(_approval_json(found))
        return
    _console().print(
        f"commit {found.short} approved by {escape(found.approved_by)} "
        f"at {found.approved_at:%Y-%m-%d %H:%M} UTC"
    )


def _approval_json(found: Any) -> dict[str, Any]:
    return {
        "commit": found.commit,
        "approved_by": found.approved_by,
        "approved_at": found.approved_at,
        "via": found.via,
        "draft": found.draft,
    }


@handles_errors
def approvals_command(project_dir: ProjectDir = Path("."), as_json: JsonOption = False) -> None:
    """What waits for approval: unapproved commits checked out, and draft branches."""
    from backhaul import approval
    from backhaul import drafts
    from backhaul.api import open_store

    project = _load(project_dir, isolate=True)
    settings = project.config.approval
    with open_store(project) as store:
        on = approval.required(project, store)
        waiting = approval.pending(project, store)
        recent = approval.ApprovalStore(store).recent(project.config.name, 5)
    found = drafts.drafts(project.root, settings.branch)
    if as_json:
        print_json(
            {
                "required": on,
                "branch": settings.branch,
                "head": waiting.head if waiting else None,
                "dirty": waiting.dirty if waiting else None,
                "approved_base": waiting.base if waiting else None,
                "commits": [
                    {"commit": c.commit, "author": c.author, "at": c.at, "subject": c.subject}
                    for c in (waiting.commits if waiting else [])
                ],
                "drafts": [
                    {
                        "branch": d.branch,
                        "tip": d.tip,
                        "author": d.author,
                        "at": d.at,
                        "subject": d.subject,
                        "files": list(d.files),
                    }
                    for d in found
                ],
                "recent": [_approval_json(a) for a in recent],
            }
        )
        return
    out = _console()
    out.print(f"approval: {'required' if on else 'off'} (approved branch {settings.branch})")
    if waiting is None:
        out.print("the project is not in Git")
        return
    if waiting.commits:
        table = Table("commit", "author", "date", "message", title="Not approved")
        for c in waiting.commits:
            table.add_row(c.short, escape(c.author), f"{c.at:%Y-%m-%d %H:%M}", escape(c.subject))
        out.print(table)
        short = waiting.head[:10]
        count = f"{len(waiting.commits)} commit(s)"
        if waiting.base:
            base = waiting.base[:10]
            out.print(
                f"HEAD {short} is not approved ({count} since {base}): review with "
                f"`backhaul diff-config {base} --to HEAD`, then `backhaul approve {short}`"
            )
        else:
            out.print(
                f"HEAD {short} is not approved ({count}, none approved before): "
                f"review them, then `backhaul approve {short}`"
            )
    else:
        out.print(f"HEAD {waiting.head[:10]} is approved")
    if waiting.dirty:
        out.print("the project's files have uncommitted changes: runs are refused until committed")
    if found:
        table = Table("draft", "author", "date", "files", "message", title="Drafts")
        for d in found:
            table.add_row(
                escape(d.branch),
                escape(d.author),
                f"{d.at:%Y-%m-%d %H:%M}",
                escape(", ".join(d.files)),
                escape(d.subject),
            )
        out.print(table)
        out.print("approve or reject drafts in the web app at /approvals")


__all__ = ["approvals_command", "approve_command"]
