"""A :class:`~backhaul.review.changes.Review` as text, a pull-request comment (Markdown)
or JSON (the shape docs/review.md documents; ``version`` changes if it ever must)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from backhaul.review.changes import Change
from backhaul.review.changes import PlanOutcome
from backhaul.review.changes import Review
from backhaul.review.changes import SyncReview

JSON_VERSION = 1


def _sentence(change: Change, plan: PlanOutcome | None) -> str:
    consequence = change.consequence
    if change.resends and plan is not None and not plan.errors:
        consequence += f" ({plan.changed} rows)"
    subject = f"{change.scope} {change.name}: " if change.scope != "sync" else ""
    return subject + change.text + (f": {consequence}" if consequence else "")


def _counts(plan: PlanOutcome) -> str:
    text = f"{plan.added} to add, {plan.changed} to change, {plan.removed} to remove"
    if plan.retried:
        text += f", {plan.retried} rejected earlier to retry"
    if plan.invalid:
        text += f", {plan.invalid} invalid (not sent)"
    return text


def _heading(review: Review, code: str = "") -> str:
    def rev(label: str, commit: str) -> str:
        return f"{code}{label}{code} ({code}{commit[:7]}{code})"

    new = (
        "the working tree"
        if review.new_commit is None
        else rev(review.new_label, review.new_commit)
    )
    return f"from {rev(review.old_label, review.old_commit)} to {new}"


def _old_note(review: Review) -> str:
    return (
        f"The project at {review.old_label} does not load ({review.old_error}); "
        "every sync is shown as added."
    )


def _sync_lines(sync: SyncReview) -> list[str]:
    lines = [_sentence(c, sync.plan) for c in sync.changes]
    if sync.because:
        lines.append("uses what changed: " + ", ".join(sync.because))
    return lines


def text(review: Review) -> str:
    """Plain text for a terminal."""
    out = [f"Changes {_heading(review)}"]
    if review.old_error:
        out.append(_old_note(review))
    if not review.syncs and not review.definitions:
        out.append("No changes.")
    for sync in review.syncs:
        out += ["", f"sync {sync.name} ({sync.status})"]
        out += [f"  {line}" for line in _sync_lines(sync)]
        if sync.plan is not None:
            if sync.plan.errors:
                out += [f"  cannot plan: {error}" for error in sync.plan.errors]
            else:
                out.append(f"  plan now: {_counts(sync.plan)}")
    if review.definitions:
        out += ["", "other definitions"]
        out += [f"  {_sentence(c, None)}" for c in review.definitions]
    return "\n".join(out) + "\n"


def _cell(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ")


def markdown(review: Review) -> str:
    """A pull-request comment: a heading, a table of planned counts, a section per sync."""
    out = ["## Backhaul configuration review", "", f"Changes {_heading(review, '`')}.", ""]
    if review.old_error:
        out += [_old_note(review), ""]
    if not review.syncs and not review.definitions:
        out += ["No changes to syncs, models, destinations, sources or `backhaul.yml`."]
        return "\n".join(out) + "\n"
    if review.syncs:
        out += ["| sync | status | to add | to change | to remove |", "|---|---|---:|---:|---:|"]
        for sync in review.syncs:
            plan = sync.plan
            if plan is None:
                counts = ["-", "-", "-"]
            elif plan.errors:
                counts = ["cannot plan", "", ""]
            else:
                counts = [str(plan.added), str(plan.changed), str(plan.removed)]
            out.append(f"| `{_cell(sync.name)}` | {sync.status} | " + " | ".join(counts) + " |")
    for sync in review.syncs:
        out += ["", f"### Sync `{sync.name}` ({sync.status})", ""]
        out += [f"- {line}" for line in _sync_lines(sync)]
        if sync.plan is not None and sync.plan.errors:
            out += ["", "Cannot plan it:", ""] + [f"- {e}" for e in sync.plan.errors]
        elif sync.plan is not None:
            out += ["", f"Plan now: {_counts(sync.plan)}."]
    if review.definitions:
        out += ["", "### Other definitions", ""]
        out += [f"- {_sentence(c, None)}" for c in review.definitions]
    return "\n".join(out) + "\n"


def _change_json(change: Change) -> dict[str, Any]:
    # `resends` only decides how the change is worded; it is not part of the JSON.
    out = asdict(change)
    del out["resends"]
    return out


def _plan_json(plan: PlanOutcome | None) -> dict[str, Any] | None:
    if plan is None:
        return None
    return {
        "added": plan.added,
        "changed": plan.changed,
        "removed": plan.removed,
        "retried": plan.retried,
        "invalid": plan.invalid,
        "errors": list(plan.errors),
    }


def as_json(review: Review) -> dict[str, Any]:
    """The documented JSON object (docs/review.md)."""
    return {
        "version": JSON_VERSION,
        "from": {
            "revision": review.old_label,
            "commit": review.old_commit,
            "loads": review.old_error is None,
            "error": review.old_error,
        },
        "to": {"revision": review.new_label, "commit": review.new_commit},
        "syncs": [
            {
                "name": s.name,
                "status": s.status,
                "because": s.because,
                "changes": [_change_json(c) for c in s.changes],
                "plan": _plan_json(s.plan),
            }
            for s in review.syncs
        ],
        "definitions": [_change_json(c) for c in review.definitions],
    }


__all__ = ["JSON_VERSION", "as_json", "markdown", "text"]
