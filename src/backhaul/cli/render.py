"""Rendering run events and records for a terminal (Rich) or for logs (plain lines)."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn
from rich.progress import MofNCompleteColumn
from rich.progress import Progress
from rich.progress import SpinnerColumn
from rich.progress import TaskID
from rich.progress import TextColumn
from rich.progress import TimeElapsedColumn
from rich.table import Table

from backhaul.observe.events import BatchDone
from backhaul.observe.events import Notice
from backhaul.observe.events import PhaseStarted
from backhaul.observe.events import Planned
from backhaul.observe.events import RunEvent
from backhaul.observe.events import RunFinished
from backhaul.observe.events import RunPhase
from backhaul.observe.events import RunStarted
from backhaul.observe.events import Waiting
from backhaul.observe.events import WaitKind
from backhaul.observe.waits import seconds_text
from backhaul.observe.waits import wait_line
from backhaul.pyvalues import shown
from backhaul.summary import Counts
from backhaul.summary import RunStatus
from backhaul.summary import RunSummary

WAIT_LINES = 5  # wait lines printed one per wait before repeats are held back
WAIT_EVERY = 10.0  # after that, at most one wait line this many seconds apart
WAIT_SHOWN = 0.1  # seconds of waiting worth a line in the summary

STATUS_STYLE = {
    RunStatus.SUCCEEDED: "green",
    RunStatus.PARTIAL: "yellow",
    RunStatus.FAILED: "red",
    RunStatus.GUARDED: "red",
    RunStatus.CANCELLED: "red",
    RunStatus.RUNNING: "cyan",
}


def delivered_line(c: Counts) -> str:
    """What the destination acknowledged, by kind; skipped rows needed no call."""
    return (
        f"delivered {c.succeeded:,} (added {c.delivered_added:,} · changed "
        f"{c.delivered_changed + c.delivered_retried:,} · removed {c.delivered_removed:,}) · "
        f"skipped {c.skipped:,} · rejected {c.rejected:,} · invalid {c.invalid:,}"
    )


def counts_line(c: Counts) -> str:
    return (
        f"queried {c.queried:,} · added {c.added:,} · changed {c.changed:,} · "
        f"removed {c.removed:,} · retried {c.retried:,} · unchanged {c.unchanged:,} · "
        f"invalid {c.invalid:,}"
    )


class RunReporter:
    """An event sink: progress bars on a terminal, a few plain lines otherwise."""

    def __init__(
        self, console: Console, *, quiet: bool = False, errors: Console | None = None
    ) -> None:
        self.console = console
        self.errors = errors  # where a run's error goes (stderr), if not with the rest
        self.quiet = quiet
        self.live = console.is_terminal and not quiet
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        self.started = time.monotonic()
        self.last_line = 0.0
        self.wait_lines = 0  # wait lines printed in this run
        self.last_wait = 0.0  # when the last one was printed
        self.held_waits = 0  # waits not printed since then

    def __call__(self, event: RunEvent) -> None:
        if self.quiet:
            return
        if isinstance(event, RunStarted):
            if event.refused:
                return  # its errors are printed when it finishes
            self.started = time.monotonic()
            self.wait_lines = self.held_waits = 0
            self.console.print(f"[bold]{event.sync}[/]: run {event.run_id}")
        elif isinstance(event, PhaseStarted) and event.phase is RunPhase.PLAN:
            self.console.print(f"  {event.sync}: extracting and planning…")
        elif isinstance(event, Planned):
            self.console.print(f"  planned: {counts_line(event.counts)}")
            if event.to_send and self.live:
                self.progress = Progress(
                    SpinnerColumn(),
                    TextColumn("  sending"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]} rows/s"),
                    TimeElapsedColumn(),
                    console=self.console,
                    transient=True,
                )
                self.progress.start()
                self.task = self.progress.add_task("send", total=event.to_send, rate="0")
        elif isinstance(event, BatchDone):
            elapsed = max(time.monotonic() - self.started, 1e-6)
            rate = f"{event.sent / elapsed:,.0f}"
            if self.progress is not None and self.task is not None:
                self.progress.update(self.task, completed=event.sent, rate=rate)
            elif time.monotonic() - self.last_line > 2 or event.sent == event.total:
                self.last_line = time.monotonic()
                self.console.print(
                    f"  sent {event.sent:,}/{event.total:,} "
                    f"(ok {event.succeeded:,}, rejected {event.rejected:,}; {rate} rows/s)"
                )
        elif isinstance(event, Notice):
            self.console.print(f"  [yellow]note:[/] {escape(event.message)}")
        elif isinstance(event, Waiting):
            self._waiting(event)
        elif isinstance(event, RunFinished) and event.summary.refused:
            out = self.errors or self.console
            for line in event.summary.problems:
                out.print(f"[red]error:[/] {escape(line)}", highlight=False)
        elif isinstance(event, RunFinished):
            if self.progress is not None:
                self.progress.stop()
                self.progress = None
            print_summary(
                self.console, event.summary, errors=self.errors, held_waits=self.held_waits
            )

    def _waiting(self, event: Waiting) -> None:
        """One line per wait; on a long run repeats are held back and counted."""
        now = time.monotonic()
        if event.kind is WaitKind.THROTTLE:  # already a summary, at most one a minute
            self.console.print(f"  {escape(wait_line(event))}", highlight=False)
            return
        if self.wait_lines >= WAIT_LINES and now - self.last_wait < WAIT_EVERY:
            self.held_waits += 1
            return
        more = f" ({self.held_waits} more waits since the last line)" if self.held_waits else ""
        self.console.print(f"  {escape(wait_line(event))}{more}", highlight=False)
        self.wait_lines += 1
        self.last_wait = now
        self.held_waits = 0


def print_summary(
    console: Console, s: RunSummary, *, errors: Console | None = None, held_waits: int = 0
) -> None:
    """The outcome of a run; its error, if any, goes to ``errors`` as one line when given.

    ``held_waits`` counts wait lines that were not printed (long runs).
    """
    style = STATUS_STYLE.get(s.status, "white")
    c = s.counts
    console.print(f"  [{style}]{s.status.value}[/] in {s.duration_s:.2f}s: {delivered_line(c)}")
    if s.wait_s >= WAIT_SHOWN:
        unshown = f"; {held_waits} waits not shown above" if held_waits else ""
        console.print(
            f"  waited {seconds_text(s.wait_s)} for the destination (rate limits, retries, "
            f"client-side throttling{unshown}); details: backhaul run-show {s.run_id}",
            highlight=False,
        )
    if s.error and errors is not None:
        errors.print(f"[{style}]error:[/] {escape(s.sync)}: {escape(s.error)}", highlight=False)
    elif s.error:
        console.print(f"  [{style}]error:[/] {escape(s.error)}", highlight=False)
    for row in s.invalid_samples[:5]:
        console.print(
            f"  invalid row {escape(shown(row['key']))}: {escape(str(row['reason']))}",
            highlight=False,
        )
    if c.rejected:
        console.print(f"  see the rejected rows with: backhaul run-show {s.run_id}")


def runs_table(console: Console, summaries: list[RunSummary]) -> None:
    """One line per sync of a multi-sync run: what happened and what was delivered."""
    table = Table("sync", "status", "secs", "delivered", "skipped", "rejected", "invalid", "error")
    for s in summaries:
        style = STATUS_STYLE.get(s.status, "white")
        c = s.counts
        table.add_row(
            escape(s.sync),
            f"[{style}]{s.status.value}[/]",
            f"{s.duration_s:.1f}",
            f"{c.succeeded:,}",
            f"{c.skipped:,}",
            f"{c.rejected:,}",
            f"{c.invalid:,}",
            escape(s.error or ""),
        )
    console.print(table)


def plan_table(console: Console, s: RunSummary) -> None:
    console.print(f"[bold]{s.sync}[/] (dry run, nothing sent): {counts_line(s.counts)}")
    if s.error:
        console.print(f"[red]guard:[/] {escape(s.error)}", highlight=False)
    for line in s.warnings:
        console.print(f"[yellow]warning:[/] {escape(line)}", highlight=False)
    for note in s.notes:
        console.print(escape(note), highlight=False)
    for op in ("rekey", "add", "change", "retry", "remove", "skip"):
        rows = s.samples.get(op)
        if not rows:
            continue
        table = Table(title=f"sample of `{op}`", title_justify="left")
        cols = list(rows[0].keys())
        for col in cols:
            table.add_column(col, overflow="fold")
        for row in rows:
            table.add_row(*[escape(_cell(row.get(col))) for col in cols])
        console.print(table)
    for row in s.invalid_samples[:10]:
        console.print(
            f"invalid row {escape(shown(row['key']))}: {escape(str(row['reason']))}",
            highlight=False,
        )


def _cell(value: Any) -> str:
    return shown(value, limit=60)
