"""The lifecycle of a vendor's asynchronous job: accepted, worked on, finished.

A job's work runs when it finishes, so what a client sees while polling is what the
vendor shows: first the accepted status, then the working one, then the result. Jobs move
on when they are polled (deterministic for tests); a held job stays in its working status
until released, which lets a test stop a client in the middle of a job.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from typing import Generic
from typing import TypeVar

R = TypeVar("R")


@dataclass
class Job(Generic[R]):
    """One asynchronous job.

    Attributes:
        stages: Status names in order: accepted, working, finished (e.g. queued,
            processing, complete).
        polls_to_finish: Status reads before the job finishes; the first read moves it to
            the working status.
        work: Runs once, when the job finishes; its value becomes ``result``.
    """

    total: int
    work: Callable[[], R]
    stages: tuple[str, str, str]
    polls_to_finish: int = 2
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    kind: str = ""
    status: str = ""
    polls: int = 0
    held: bool = False
    result: R | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None

    def __post_init__(self) -> None:
        self.status = self.status or self.stages[0]

    @property
    def done(self) -> bool:
        """Finished or stopped: the status will not change again."""
        return self.status not in self.stages[:2]

    def poll(self) -> None:
        """Count one status read and move the job on."""
        if self.done:
            return
        self.polls += 1
        if self.started_at is None:
            self.status = self.stages[1]
            self.started_at = time.time()
        if not self.held and self.polls >= self.polls_to_finish:
            self.finish()

    def finish(self) -> None:
        """Run the work now and take the finished status."""
        if self.done:
            return
        self.started_at = self.started_at or time.time()
        self.result = self.work()
        self.status = self.stages[2]
        self.finished_at = time.time()

    def stop(self, status: str) -> None:
        """End the job without running its work (e.g. ``cancelled``)."""
        if not self.done:
            self.status = status
            self.finished_at = time.time()


__all__ = ["Job"]
