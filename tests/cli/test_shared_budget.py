"""Two ``backhaul run`` processes writing to one HubSpot account share its rate-limit budget.

Each process is a real interpreter with its own limiter; the budget lives in the Postgres
metadata store. The HubSpot emulator refuses (429) every call over its rolling window and
counts the refusals: none when the two destinations name the same ``account:``, some when
they name different ones (so each process keeps only to its own window). Then the daily
quota: ``plan`` warns before sending, and ``run`` stops at the quota.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.hubspot import DEFAULT_TOKEN
from backhaul.testing.emulators.hubspot import HubSpotEmulator
from conftest import Builder

pytestmark = pytest.mark.integration

LIMIT = 5  # calls per WINDOW seconds at the emulator, and in each destination file
WINDOW = 0.5
REDIS_URL = "redis://127.0.0.1:6379/0"
ROWS = 40  # per sync, one call each: a process alone needs eight windows


@pytest.fixture
def hub() -> Iterator[tuple[HubSpotEmulator, str]]:
    emulator = HubSpotEmulator(burst_limit=LIMIT, burst_seconds=WINDOW, daily_limit=None)
    with EmulatorServer(emulator) as server:
        yield emulator, server.url


def two_syncs(
    root: Any, state: dict[str, str], url: str, accounts: tuple[str, str], **rate: Any
) -> Builder:
    project = Builder(root, project_extra={"state": state})
    project.sql(
        "CREATE TABLE users AS SELECT i::BIGINT AS id, 'u' || i || '@example.com' AS email, "
        f"'name ' || i AS name FROM range(1, {2 * ROWS + 1}) t(i)"
    )
    project.model("first_half", f"SELECT * FROM users WHERE id <= {ROWS}")
    project.model("second_half", f"SELECT * FROM users WHERE id > {ROWS}")
    for name, account, model in zip(
        ("crm_a", "crm_b"), accounts, ("first_half", "second_half"), strict=True
    ):
        project.destination(
            name,
            type="hubspot",
            token="${env:HUBSPOT_TOKEN}",
            base_url=url,
            account=account,
            rate_limit={"requests": LIMIT, "per_seconds": WINDOW, **rate},
        )
        project.sync(
            name.replace("crm", "sync"),
            model=model,
            destination=name,
            object="contacts",
            batch_size=1,
            match={"fields": ["email"]},
            mappings=[
                {"column": "email", "field": "email"},
                {"column": "name", "field": "firstname"},
            ],
        )
    return project


def run_together(project: Builder, *syncs: str) -> list[subprocess.CompletedProcess[str]]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", "HUBSPOT_TOKEN": DEFAULT_TOKEN}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "backhaul.cli.app", "run", sync, "-C", str(project.root)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for sync in syncs
    ]
    done = []
    for proc in procs:
        out, _ = proc.communicate(timeout=180)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, ""))
    return done


def test_two_processes_on_one_account_stay_inside_its_window(
    fast_tmp: Any, pg_db: str, hub: tuple[HubSpotEmulator, str]
) -> None:
    emulator, url = hub
    project = two_syncs(fast_tmp / "proj", {"metadata_url": pg_db}, url, ("acme", "acme"))
    for done in run_together(project, "sync_a", "sync_b"):
        assert done.returncode == 0, done.stdout
    assert emulator.window.refused == 0
    assert len(emulator.records("contacts")) == 2 * ROWS


def test_two_processes_on_two_accounts_each_keep_only_their_own(
    fast_tmp: Any, pg_db: str, hub: tuple[HubSpotEmulator, str]
) -> None:
    emulator, url = hub
    project = two_syncs(fast_tmp / "proj", {"metadata_url": pg_db}, url, ("acme", "globex"))
    run_together(project, "sync_a", "sync_b")
    assert emulator.window.refused > 0  # the emulator sees both at once: the test can fail


def test_two_processes_share_a_budget_in_redis_beside_the_sqlite_store(
    fast_tmp: Any, hub: tuple[HubSpotEmulator, str]
) -> None:
    emulator, url = hub
    account = f"test-{uuid.uuid4().hex[:12]}"  # its own Redis key, removed afterwards
    key = f"backhaul:budget:hubspot:{account}"
    client = redis.Redis.from_url(REDIS_URL)
    try:
        state = {"budget_url": REDIS_URL}
        project = two_syncs(fast_tmp / "proj", state, url, (account, account))
        for done in run_together(project, "sync_a", "sync_b"):
            assert done.returncode == 0, done.stdout
        assert emulator.window.refused == 0
        assert len(emulator.records("contacts")) == 2 * ROWS
        assert client.exists(key)
    finally:
        client.delete(key)
        client.close()


def test_plan_warns_of_the_daily_quota_and_run_stops_at_it(
    fast_tmp: Any, pg_db: str, hub: tuple[HubSpotEmulator, str]
) -> None:
    emulator, url = hub
    quota = 12
    project = two_syncs(
        fast_tmp / "proj",
        {"metadata_url": pg_db},
        url,
        ("acme", "acme"),
        per_day=quota,
        day_zone="UTC",
    )
    env = {"HUBSPOT_TOKEN": DEFAULT_TOKEN}
    planned = project.cli("plan", "sync_a", env=env)
    assert planned.returncode == 0, planned.stderr
    assert (
        f"warning: this run needs about {ROWS + 1} calls but only {quota} of today's quota of "
        f"{quota} remain for account `hubspot:acme`" in " ".join(planned.stdout.split())
    )
    assert not emulator.calls  # a plan sends nothing

    ran = project.cli("run", "sync_a", env=env)
    said = " ".join((ran.stdout + ran.stderr).split())
    assert ran.returncode != 0, said
    assert f"today's quota of {quota} calls for account `hubspot:acme` is used up" in said
    assert "the rows not sent stay pending" in said
    assert 0 < len(emulator.calls) <= quota
    assert emulator.window.refused == 0

    again = project.cli("plan", "sync_b", env=env)
    assert f"only 0 of today's quota of {quota} remain" in " ".join(again.stdout.split())
