"""Typed run events. The CLI, the web app and alerts consume these; the engine only emits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from backhaul.engine.summary import Counts, RunSummary


@dataclass(frozen=True)
class RunStarted:
    run_id: str
    sync: str


@dataclass(frozen=True)
class PhaseStarted:
    run_id: str
    sync: str
    phase: str  # "extract" | "plan" | "send" | "commit"


@dataclass(frozen=True)
class Planned:
    run_id: str
    sync: str
    counts: Counts
    to_send: int


@dataclass(frozen=True)
class BatchDone:
    run_id: str
    sync: str
    sent: int  # rows handled so far
    succeeded: int
    rejected: int
    total: int


@dataclass(frozen=True)
class Notice:
    run_id: str
    sync: str
    message: str


@dataclass(frozen=True)
class RunFinished:
    summary: RunSummary


RunEvent = RunStarted | PhaseStarted | Planned | BatchDone | Notice | RunFinished
EventSink = Callable[[RunEvent], None]


def ignore(event: RunEvent) -> None:
    """The default sink."""
    return None
