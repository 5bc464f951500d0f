"""Review a project change before it runs: what changed, in words, and what it would do.

``diff_config`` compares the project at a Git revision with the working tree (or another
revision); ``render`` turns the result into text, a pull-request comment or JSON.
"""

from __future__ import annotations

from backhaul.errors import RevisionError
from backhaul.review.changes import Change
from backhaul.review.changes import PlanOutcome
from backhaul.review.changes import Review
from backhaul.review.changes import SyncReview
from backhaul.review.diff import diff_config

__all__ = ["Change", "PlanOutcome", "Review", "RevisionError", "SyncReview", "diff_config"]
