"""`backhaul demo` end to end, as a user runs it: a subprocess on a fresh folder."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

pytestmark = pytest.mark.integration


def test_demo_syncs_everything_twice_and_only_changes_travel(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "backhaul.cli.app", "demo", str(folder)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    out = result.stdout
    for sync in ("pql_to_crm", "pql_to_hubspot", "pqls_to_webhook", "pql_export", "pql_alerts"):
        assert out.count(f"{sync}: run ") == 2, sync
    assert "HubSpot (sandbox): 2,748 contacts" in out
    assert "Slack (sandbox): 2 message(s)" in out

    # The CRM table equals the model after the second run (mirror mode).
    with duckdb.connect(str(folder / "warehouse.duckdb"), read_only=True) as wh:
        sql = (folder / "models" / "pql_users.sql").read_text()
        model = {r[0]: r[1] for r in wh.execute(f"SELECT user_id, email FROM ({sql})").fetchall()}
    with sqlite3.connect(folder / "crm.sqlite") as crm:
        table = dict(crm.execute("SELECT user_id, email FROM contacts").fetchall())
    assert table == model

    # A third run finds nothing to send.
    again = subprocess.run(
        [
            sys.executable,
            "-m",
            "backhaul.cli.app",
            "plan",
            "pql_to_crm",
            "-C",
            str(folder),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    assert '"added": 0' in again.stdout and '"changed": 0' in again.stdout
