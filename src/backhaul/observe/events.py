"""Typed run events. The CLI, the web app and alerts consume these; the engine only emits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from backhaul.summary import Counts
from backhaul.summary import RunSummary


@dataclass(frozen=True)
class RunStarted:
    run_id: str
    sync: str
    refused: bool = False  # the sync failed its checks: recorded as failed, nothing runs


class RunPhase(StrEnum):
    """The steps of a run, in order, each announced by a :class:`PhaseStarted`.

    Reading the model happens inside ``plan`` (the planner streams or attaches it). A run
    with nothing to send skips ``send``; ``hooks`` comes only when the sync has post hooks
    (pre hooks run before :class:`RunStarted`, as part of starting).
    """

    PLAN = "plan"  # read the model, diff it against the snapshot, check the guards
    SEND = "send"  # deliver the outbox in batches, checkpointing each acknowledged one
    COMMIT = "commit"  # fold the checkpoints into the snapshot
    HOOKS = "hooks"  # the sync's post hooks on its source


@dataclass(frozen=True)
class PhaseStarted:
    run_id: str
    sync: str
    phase: RunPhase


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


class WaitKind(StrEnum):
    """Why a run waited on its destination."""

    RATE_LIMIT = "rate_limit"  # the destination asked for a pause (429, Retry-After, its headers)
    RETRY = "retry"  # backoff before sending a failed call or batch again
    THROTTLE = "throttle"  # the client-side limiter keeping under the configured rate


@dataclass(frozen=True)
class Waiting:
    """The run waits (rate limit, retry), or a summary of client-side throttling.

    ``seconds`` is the wait about to happen (for ``throttle``: the time calls were held back
    since the last such summary); ``reason`` says why, for one line of output;
    ``waited_s`` is the run's total waiting time so far.
    """

    run_id: str
    sync: str
    kind: WaitKind
    seconds: float
    reason: str
    waited_s: float = 0.0


@dataclass(frozen=True)
class RunFinished:
    summary: RunSummary


RunEvent = RunStarted | PhaseStarted | Planned | BatchDone | Notice | Waiting | RunFinished
EventSink = Callable[[RunEvent], None]


def ignore(event: RunEvent) -> None:
    """The default sink."""
    return None


def tee(*sinks: EventSink) -> EventSink:
    """One sink that hands every event to each of ``sinks`` in turn."""

    def each(event: RunEvent) -> None:
        for sink in sinks:
            sink(event)

    return each
