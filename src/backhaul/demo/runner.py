"""`backhaul demo`: build the demo, sync it, change the warehouse, sync again.

Everything runs on this machine: a DuckDB warehouse file, a SQLite table standing in for
a CRM, a webhook receiver started on loopback, and a CSV export.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from rich.console import Console
from rich.table import Table

from backhaul.demo.project import WAREHOUSE_FILE, write_demo_project
from backhaul.demo.warehouse import apply_changes, build_warehouse
from backhaul.engine.summary import RunSummary
from backhaul.errors import BackhaulError
from backhaul.testing.receiver import WebhookReceiver

MARKER = ".backhaul-demo"


def _prepare_folder(directory: Path, keep: bool) -> None:
    if directory.exists() and any(directory.iterdir()):
        if not (directory / MARKER).exists():
            raise BackhaulError(
                f"{directory} exists and is not a demo folder; choose another folder"
            )
        if not keep:
            shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MARKER).write_text("built by `backhaul demo`; safe to delete\n")


def _run_all(directory: Path, console: Console, title: str) -> list[RunSummary]:
    from backhaul import api
    from backhaul.cli.render import RunReporter
    from backhaul.engine.runner import run_sync

    project = api.load_project(directory)
    console.rule(title)
    reporter = RunReporter(console)
    with api.open_store(project) as store:
        return [
            run_sync(project, name, store=store, events=reporter, trigger="demo")
            for name in sorted(project.syncs)
        ]


def _results_table(title: str, first: list[RunSummary], second: list[RunSummary]) -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("sync", "run", "rows in model", "added", "changed", "removed", "sent ok",
                "rejected", "status"):
        table.add_column(col)
    for label, runs in (("1st", first), ("2nd", second)):
        for s in runs:
            c = s.counts
            table.add_row(s.sync, label, f"{c.queried:,}", f"{c.added:,}", f"{c.changed:,}",
                          f"{c.removed:,}", f"{c.succeeded:,}", f"{c.rejected:,}",
                          s.status.value)
    return table


def run_demo(directory: Path, *, console: Console, keep: bool = False) -> int:
    """Build and run the demo in ``directory``; returns the process exit code."""
    directory = directory.resolve()
    _prepare_folder(directory, keep)
    with WebhookReceiver(key_field="user_id") as receiver:
        write_demo_project(directory, webhook_url=receiver.url)
        stats = build_warehouse(directory / WAREHOUSE_FILE)
        console.print(
            f"Built the Northwind Analytics warehouse in {directory / WAREHOUSE_FILE}: "
            f"{stats.accounts:,} accounts, {stats.users:,} users, {stats.events:,} events."
        )
        console.print(f"A webhook receiver is listening on {receiver.url}\n")
        first = _run_all(directory, console, "First run: every row is new")
        calls_after_first = len(receiver.requests)

        change = apply_changes(directory / WAREHOUSE_FILE)
        console.print(
            f"\nA day passes in the warehouse ({change.as_of}): {change.new_activity} users "
            f"were active, {change.aged_out} users' older activity left the 14-day window, "
            f"{change.signed_up} signed up, {change.deleted} were deleted, and "
            f"{change.upgraded} users' account upgraded its plan."
        )
        second = _run_all(directory, console, "Second run: only the changes travel")
        calls_second = len(receiver.requests) - calls_after_first
        webhook_records = len(receiver.records)

    console.print()
    console.print(_results_table("What each run sent", first, second))
    crm = directory / "crm.sqlite"
    with sqlite3.connect(crm) as db:
        contacts = db.execute("SELECT count(*) FROM contacts").fetchone()[0]
    console.print(
        f"\nCRM table {crm.name}: {contacts:,} contacts (mirror mode: deleted users were removed)."
        f"\nWebhook: {webhook_records:,} records received; the second run made "
        f"{calls_second} call(s) carrying only changed rows."
        f"\nCSV export: {directory / 'exports'}"
        f"\n\nTry next (in {directory}):"
        "\n  backhaul status"
        "\n  backhaul runs pql_to_crm"
        "\n  backhaul plan pql_to_crm"
        "\n  backhaul run-show <run id>"
    )
    failed = [s for s in first + second if s.exit_code == 1]
    return 1 if failed else 0
