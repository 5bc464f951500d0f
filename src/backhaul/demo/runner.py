"""`backhaul demo`: build the demo, sync it, change the warehouse, sync again.

Everything runs on this machine: a DuckDB warehouse file, a SQLite table standing in for
a CRM, a webhook receiver started on loopback, and a CSV export.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from backhaul.demo.project import WAREHOUSE_FILE
from backhaul.demo.project import saas_project_files
from backhaul.demo.project import write_demo_project
from backhaul.demo.warehouse import apply_changes
from backhaul.demo.warehouse import build_warehouse
from backhaul.errors import BackhaulError
from backhaul.summary import RunSummary
from backhaul.testing.emulators.base import EmulatorServer
from backhaul.testing.emulators.hubspot import HubSpotEmulator
from backhaul.testing.emulators.slack import SlackEmulator
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


def _add_hubspot_properties(base_url: str, token: str) -> None:
    """The custom contact properties the demo maps to, as a HubSpot admin would add them."""
    for name, type_, field_type in (
        ("lead_score", "number", "number"),
        ("backhaul_stage", "string", "text"),
    ):
        response = httpx.post(
            f"{base_url}/crm/v3/properties/contacts",
            headers={"Authorization": f"Bearer {token}"},
            json={
                "name": name,
                "label": name.replace("_", " ").title(),
                "type": type_,
                "fieldType": field_type,
                "groupName": "contactinformation",
            },
            timeout=10,
        )
        response.raise_for_status()


def _run_all(directory: Path, console: Console, title: str) -> list[RunSummary]:
    from backhaul import api
    from backhaul.cli.render import RunReporter
    from backhaul.engine.launch import run_checked

    project = api.load_project(directory)
    console.rule(title)
    reporter = RunReporter(console)
    with api.open_store(project) as store:
        return [
            run_checked(project, name, store=store, events=reporter, trigger="demo")
            for name in sorted(project.syncs)
        ]


def _results_table(title: str, first: list[RunSummary], second: list[RunSummary]) -> Table:
    table = Table(title=title, title_justify="left")
    for col in (
        "sync",
        "run",
        "rows in model",
        "added",
        "changed",
        "removed",
        "sent ok",
        "rejected",
        "status",
    ):
        table.add_column(col)
    for label, runs in (("1st", first), ("2nd", second)):
        for s in runs:
            c = s.counts
            table.add_row(
                s.sync,
                label,
                f"{c.queried:,}",
                f"{c.added:,}",
                f"{c.changed:,}",
                f"{c.removed:,}",
                f"{c.succeeded:,}",
                f"{c.rejected:,}",
                s.status.value,
            )
    return table


def run_demo(directory: Path, *, console: Console, keep: bool = False) -> int:
    """Build and run the demo in ``directory``; returns the process exit code."""
    directory = directory.resolve()
    _prepare_folder(directory, keep)
    hubspot = HubSpotEmulator()
    slack = SlackEmulator()
    with (
        WebhookReceiver(key_field="user_id") as receiver,
        EmulatorServer(hubspot) as hubspot_server,
        EmulatorServer(slack) as slack_server,
    ):
        _add_hubspot_properties(hubspot_server.url, hubspot.token)
        os.environ.update(hubspot.credentials())
        os.environ.update(slack.credentials())
        write_demo_project(directory, webhook_url=receiver.url)
        for rel, text in saas_project_files(
            hubspot_url=hubspot_server.url, slack_url=f"{slack_server.url}/api"
        ).items():
            (directory / rel).write_text(text, encoding="utf-8")
        stats = build_warehouse(directory / WAREHOUSE_FILE)
        console.print(
            f"Built the Northwind Analytics warehouse in {directory / WAREHOUSE_FILE}: "
            f"{stats.accounts:,} accounts, {stats.users:,} users, {stats.events:,} events."
        )
        console.print(f"A webhook receiver is listening on {receiver.url}")
        console.print(
            f"HubSpot and Slack sandbox emulators are listening on {hubspot_server.url} "
            f"and {slack_server.url}\n"
        )
        first = _run_all(directory, console, "First run: every row is new")
        calls_after_first = len(receiver.calls)

        change = apply_changes(directory / WAREHOUSE_FILE)
        console.print(
            f"\nA day passes in the warehouse ({change.as_of}): {change.new_activity} users "
            f"were active, {change.aged_out} users' older activity left the 14-day window, "
            f"{change.signed_up} signed up, {change.deleted} were deleted, and "
            f"{change.upgraded} users' account upgraded its plan."
        )
        second = _run_all(directory, console, "Second run: only the changes travel")
        calls_second = len(receiver.calls) - calls_after_first
        webhook_records = len(receiver.records)
        hubspot_contacts = len(hubspot.state().get("contacts", {}))
        slack_messages = [
            m["text"] for channel in slack.state()["channels"].values() for m in channel["messages"]
        ]

    console.print()
    console.print(_results_table("What each run sent", first, second))
    crm = directory / "crm.sqlite"
    with sqlite3.connect(crm) as db:
        contacts = db.execute("SELECT count(*) FROM contacts").fetchone()[0]
    console.print(
        f"\nCRM table {crm.name}: {contacts:,} contacts (mirror mode: deleted users were removed)."
        f"\nWebhook: {webhook_records:,} records received; the second run made "
        f"{calls_second} call(s) carrying only changed rows."
        f"\nHubSpot (sandbox): {hubspot_contacts:,} contacts, matched by email."
        f"\nSlack (sandbox): {len(slack_messages)} message(s) in #alerts; the last one:\n"
        + "\n".join("    " + line for line in (slack_messages[-1:] or [""])[0].splitlines())
        + f"\nCSV export: {directory / 'exports'}"
        f"\n\nTry next (in {directory}):"
        "\n  backhaul status"
        "\n  backhaul runs pql_to_crm"
        "\n  backhaul plan pql_to_crm"
        "\n  backhaul run-show <run id>"
    )
    failed = [s for s in first + second if s.exit_code == 1]
    return 1 if failed else 0
