"""The unattended-operation bench at a small size: a scheduler and two workers on the real
Postgres queue, mixed schedules, one worker killed with SIGKILL mid-run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

BENCH = Path(__file__).resolve().parents[2] / "bench" / "schedule_bench.py"


def test_small_bench_run(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--syncs",
            "6",
            "--workers",
            "2",
            "--minutes",
            "3",
            "--kill-after",
            "10",
            "--settle",
            "110",
            "--extract-seconds",
            "2",
            "--hubspot-syncs",
            "3",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout[done.stdout.index("{") :])
    assert result["worker_killed"] is True
    assert result["overlapping_runs"] == 0
    assert result["stale_alerts_raised"] == 0
    assert result["interrupted_runs"] >= 1 and result["interrupted_runs_recovered"] is True
    # Three syncs on one HubSpot account, on two workers, kept under its window together.
    assert result["hubspot_calls"] > 0 and result["hubspot_refused"] == 0
    assert result["hubspot_syncs_equal_to_model"] == 3
    assert result["destinations_equal_to_model"] == result["syncs"] == 6
