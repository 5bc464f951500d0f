"""The one Slack message that sums up a run (``mode: run_digest``), laid out within limits.

A title with the run's counts, then the first rows (each rendered with the destination's
row templates), then ``…and K more``. The message must fit Slack's limits (top-level text
length, blocks per message, characters per section text), so rows are listed only while
both the text and the blocks still fit; the rows left out are counted in ``K``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field

MORE_RESERVE = 40  # room kept in the text for the "…and K more" line


class SlackLimits(BaseModel):
    """Slack's message limits as Backhaul lays a digest out (Slack's documented values as
    commonly cited; lower them if Slack refuses digests with ``msg_too_long`` or
    ``invalid_blocks``)."""

    model_config = ConfigDict(extra="forbid")

    text_chars: int = Field(
        40_000, ge=200, description="Longest top-level message text (Slack: about 40,000)."
    )
    blocks: int = Field(50, ge=3, le=50, description="Most blocks in one message (Slack: 50).")
    section_chars: int = Field(
        3000, ge=50, description="Longest text of one section block (Slack: 3,000)."
    )


@dataclass(frozen=True)
class DigestRow:
    """One listed row: its rendered text and, with a ``blocks`` template, its blocks."""

    text: str
    blocks: list[dict[str, Any]] | None = None


@dataclass
class Digest:
    """The laid-out message and how many of the offered rows it lists."""

    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)
    listed: int = 0
    more: int = 0


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, ending in ``…`` when cut."""
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def section(text: str, limit: int) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, limit) or " "}}


def lay_out(title: str, rows: Sequence[DigestRow], total: int, limits: SlackLimits) -> Digest:
    """The digest of ``total`` rows listing as many of ``rows`` as fit ``limits``.

    ``rows`` are the first rows, rendered; ``total`` counts every row the message carries.
    """
    head = clip(title, limits.section_chars)
    lines = [head]
    used = len(head)
    blocks: list[dict[str, Any]] = [section(head, limits.section_chars)]
    room = limits.blocks - 1  # the last block is kept for "…and K more"
    listed = 0
    for row in rows:
        line = clip(row.text, limits.section_chars)
        own = row.blocks if row.blocks is not None else [section(line, limits.section_chars)]
        if len(blocks) + len(own) > room or used + 1 + len(line) + MORE_RESERVE > limits.text_chars:
            break
        lines.append(line)
        used += 1 + len(line)
        blocks += own
        listed += 1
    more = total - listed
    if more > 0:
        tail = f"…and {more} more"
        lines.append(tail)
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": tail}]})
    return Digest("\n".join(lines), blocks, listed, more)


def default_title(sync: str, counts: dict[str, int], operation: str) -> str:
    """``*sync*: 12 rows (10 added · 2 changed · 0 removed)``, retried ones when there are."""
    total = counts["count"]
    parts = [f"{counts['added']} added", f"{counts['changed']} changed"]
    if counts["retried"]:
        parts.append(f"{counts['retried']} retried")
    parts.append(f"{counts['removed']} removed")
    name = f"*{sync}*: " if sync else ""
    return f"{name}{total} row{'s' if total != 1 else ''} ({' · '.join(parts)}; {operation})"


def change_counts(changes: Sequence[str], total: int) -> dict[str, int]:
    """Rows by planned change (``add``, ``change``, ``retry``, ``remove``) and in all."""
    counts = {"count": total, "added": 0, "changed": 0, "retried": 0, "removed": 0}
    names = {"add": "added", "change": "changed", "retry": "retried", "remove": "removed"}
    for change in changes:
        name = names.get(change)
        if name is not None:
            counts[name] += 1
    if not changes:  # a batch without planned changes: every row counts as added
        counts["added"] = total
    return counts


__all__ = [
    "Digest",
    "DigestRow",
    "SlackLimits",
    "change_counts",
    "clip",
    "default_title",
    "lay_out",
]
