"""An audience shrink killed with SIGKILL, for Meta Custom Audiences and Google Ads lists.

A 100,000-member audience is synced in ``mode: membership``; then 10% of the model's rows
leave it and a ``backhaul run`` subprocess starts taking them out of the audience kept by
the vendor's emulator (served from this process, so it outlives the kill). The run is
killed once the emulator has received some removals (for Google Ads: once a removal job
has been started, so the kill leaves that job running on the list). The next run must
leave the audience equal to the model: every remaining row a member, no removed row left.

Kill points are found by polling the emulator's calls; a run that ends before its kill
point still has to satisfy every assertion, so timing cannot fail the test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from backhaul import api
from backhaul.destinations.pii import sha256_hex
from backhaul.state.store import INTERRUPTED
from backhaul.summary import RunStatus
from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.base import Emulator
from backhaul.testing.emulators.google_ads import GoogleAdsEmulator
from backhaul.testing.emulators.meta import MetaEmulator
from conftest import Builder
from engine.kill.test_kill import GIVE_UP_S
from engine.kill.test_kill import POLL_S
from engine.kill.test_kill import _env
from engine.kill.test_kill import report

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N = 100_000  # the acceptance size: an audience of 100k shrunk by 10%
BATCH = 1_000  # the shrink is ten removal batches
LATENCY_S = 0.03  # every emulator answer, so the shrink lasts long enough to be killed


@dataclass
class Audience:
    """A vendor's emulator, where its audience is, and what counts as a removal call."""

    emulator: Emulator
    server: EmulatorServer
    destination: dict[str, object]
    object: str
    members: Callable[[], set[str]]  # the e-mail hashes the audience holds
    removals: Callable[[], int]  # removal calls received so far


def _meta(server: EmulatorServer, emulator: MetaEmulator) -> Audience:
    audience = emulator.audience_id
    return Audience(
        emulator,
        server,
        emulator.destination_config(server.url),
        audience,
        lambda: emulator.values(audience),
        lambda: sum(1 for c in list(emulator.calls) if c.method == "DELETE" and c.status == 200),
    )


def _google(server: EmulatorServer, emulator: GoogleAdsEmulator) -> Audience:
    def removal_jobs_started() -> int:
        removing = {
            c.path.rsplit(":", 1)[0]
            for c in list(emulator.calls)
            if c.path.endswith(":addOperations")
            and "remove" in (c.json or {}).get("operations", [{}])[0]
        }
        return sum(
            1
            for c in list(emulator.calls)
            if c.path.endswith(":run") and c.path.rsplit(":", 1)[0] in removing
        )

    user_list = emulator.user_list
    config = {**emulator.destination_config(server.url), "poll_interval_seconds": 0.02}
    return Audience(
        emulator,
        server,
        config,
        user_list,
        lambda: emulator.values(user_list),
        removal_jobs_started,
    )


@pytest.fixture(params=["meta", "google_ads"])
def audience(request: pytest.FixtureRequest) -> Iterator[Audience]:
    if request.param == "meta":
        meta = MetaEmulator(rate_limit=100_000, rate_window=1.0)
        with EmulatorServer(meta) as server:
            yield _meta(server, meta)
    else:
        ads = GoogleAdsEmulator(rate_limit=100_000, rate_window=1.0, polls_to_finish=3)
        with EmulatorServer(ads) as server:
            yield _google(server, ads)


def command(root: Path) -> list[str]:
    return [sys.executable, "-m", "backhaul.cli.app", "run", "aud", "-C", str(root)]


def run_and_kill(root: Path, env: dict[str, str], reached: Callable[[], bool]) -> bool:
    """Start a run and SIGKILL it once ``reached``; False if it ended first."""
    log = root / "killed-run.log"
    with log.open("w") as out:
        proc = subprocess.Popen(command(root), env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + GIVE_UP_S
            while proc.poll() is None and time.monotonic() < deadline:
                if reached():
                    os.kill(proc.pid, signal.SIGKILL)
                    break
                time.sleep(POLL_S)
        finally:
            if proc.poll() is None:
                proc.kill()  # hung: fail below rather than leave it behind
            proc.wait(timeout=60)
    assert proc.returncode in (0, -signal.SIGKILL), log.read_text()
    return proc.returncode == -signal.SIGKILL


def model_hashes(project: Builder) -> set[str]:
    return {sha256_hex(str(e)) for (e,) in project.sql("SELECT email FROM users")}


def test_an_audience_shrink_killed_mid_run_loses_no_removal(
    project: Builder, audience: Audience
) -> None:
    project.users(N)
    project.destination("aud_dest", **audience.destination)
    project.sync(
        "aud",
        destination="aud_dest",
        mode="membership",
        object=audience.object,
        mappings=[{"column": "email", "field": "email"}],
        match={"fields": ["email"]},
        batch_size=BATCH,
        max_remove_pct=100,
    )
    env = {**_env(), **audience.emulator.credentials()}
    first = subprocess.run(
        command(project.root), env=env, capture_output=True, text=True, timeout=GIVE_UP_S
    )
    assert first.returncode == 0, first.stdout + first.stderr
    assert audience.members() == model_hashes(project)

    project.sql("DELETE FROM users WHERE id % 10 = 0")
    audience.emulator.faults.latency = LATENCY_S
    killed = run_and_kill(project.root, env, lambda: audience.removals() >= 2)
    removed_before_rerun = N - len(audience.members())
    audience.emulator.faults.latency = 0.0

    done = subprocess.run(
        command(project.root), env=env, capture_output=True, text=True, timeout=GIVE_UP_S
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert audience.members() == model_hashes(project)
    assert len(audience.members()) == N - N // 10
    with api.open_store(project.load()) as store:
        records = store.runs("aud", limit=10)
    assert records[0].status is RunStatus.SUCCEEDED
    if killed:
        assert records[1].status is RunStatus.FAILED and records[1].error == INTERRUPTED
    report(
        type(audience.emulator).__name__,
        killed=killed,
        removed_before_rerun=removed_before_rerun,
        removed_by_rerun=records[0].counts.succeeded,
    )
