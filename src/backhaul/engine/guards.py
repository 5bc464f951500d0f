"""Safety guards checked after planning and before anything is sent."""

from __future__ import annotations

from backhaul.config.models import OnRemove
from backhaul.engine.plan.local import Plan
from backhaul.errors import GuardError


def check_guards(plan: Plan, *, removal: OnRemove, max_remove_pct: float, force: bool) -> None:
    """Raise :class:`GuardError` when the plan looks like a broken model, unless forced."""
    if force or plan.full_resync:
        return
    if plan.counts.queried == 0 and plan.snapshot_rows > 0:
        raise GuardError(
            f"the model returned 0 rows but the last run delivered {plan.snapshot_rows}; "
            "nothing was sent. If the model really is empty now, rerun with --force"
        )
    if removal is OnRemove.NOTHING or plan.snapshot_rows == 0:
        return
    pct = 100.0 * plan.counts.removed / plan.snapshot_rows
    if pct > max_remove_pct:
        raise GuardError(
            f"{plan.counts.removed} of {plan.snapshot_rows} records ({pct:.1f}%) would be "
            f"{'deleted' if removal is OnRemove.DELETE else 'cleared'}, above the limit of "
            f"{max_remove_pct:g}% (max_remove_pct); nothing was sent. Check the model, or "
            "rerun with --force"
        )
