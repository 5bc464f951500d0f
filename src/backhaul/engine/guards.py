"""Safety guards judged after planning and before anything is sent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from backhaul.config.models import OnRemove
from backhaul.errors import GuardError

if TYPE_CHECKING:
    from backhaul.engine.plan.values import Diff


@dataclass(frozen=True, slots=True)
class Verdict:
    """The guards' judgement of a plan: ``guarded`` plans send nothing.

    Attributes:
        guarded: The plan looks like a broken model and was not forced.
        message: Why, and what to do next (``None`` when not guarded).
    """

    guarded: bool = False
    message: str | None = None


def judge(
    diff: Diff, *, full_resync: bool, removal: OnRemove, max_remove_pct: float, force: bool
) -> Verdict:
    """The verdict on a plan: guarded when it looks like a broken model, unless forced."""
    if force or full_resync:
        return Verdict()
    counts, snapshot_rows = diff.counts, diff.snapshot_rows
    if counts.queried == 0 and snapshot_rows > 0:
        return Verdict(
            True,
            f"the model returned 0 rows but the last run delivered {snapshot_rows}; "
            "nothing was sent. If the model really is empty now, rerun with --force",
        )
    if removal is OnRemove.NOTHING or snapshot_rows == 0:
        return Verdict()
    pct = 100.0 * counts.removed / snapshot_rows
    if pct > max_remove_pct:
        return Verdict(
            True,
            f"{counts.removed} of {snapshot_rows} records ({pct:.1f}%) would be "
            f"{'deleted' if removal is OnRemove.DELETE else 'cleared'}, above the limit of "
            f"{max_remove_pct:g}% (max_remove_pct); nothing was sent. Check the model, or "
            "rerun with --force",
        )
    return Verdict()


def check_guards(verdict: Verdict) -> None:
    """Raise :class:`GuardError` for a guarded verdict."""
    if verdict.guarded:
        raise GuardError(verdict.message or "the run was guarded; rerun with --force")
