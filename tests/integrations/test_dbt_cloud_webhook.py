"""The dbt Cloud webhook receiver of `backhaul serve`, against the dbt Cloud emulator.

The dbt project is real: `dbt run --select orders` writes the run_results.json that the
emulator serves as the dbt Cloud run's artifact, so only `orders` was rebuilt.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from backhaul import api
from backhaul.state.store import RunRecord
from backhaul.summary import RunStatus
from backhaul.testing.emulators.base import EmulatorServer
from backhaul.testing.emulators.dbt_cloud import DEFAULT_TOKEN
from backhaul.testing.emulators.dbt_cloud import DbtCloudEmulator
from backhaul.testing.receiver import WebhookReceiver
from backhaul.testing.server import LoopbackServer
from backhaul.web.app import close_app
from backhaul.web.app import create_app

from .conftest import SyncProject

SECRET = "whsec-dbt-cloud-test-0123456789"
SECRET_ENV = "BACKHAUL_TEST_DBT_CLOUD_SECRET"
TOKEN_ENV = "BACKHAUL_TEST_DBT_CLOUD_TOKEN"
ACCOUNT, JOB = 7, 42
WEBHOOK = "/api/v1/dbt-cloud/webhook"


@pytest.fixture
def cloud() -> Iterator[tuple[DbtCloudEmulator, str]]:
    emulator = DbtCloudEmulator()
    with EmulatorServer(emulator) as server:
        yield emulator, server.url


@contextmanager
def serve(syncs: SyncProject, cloud_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """`backhaul serve`'s app for the project, on loopback, with dbt_cloud configured."""
    monkeypatch.setenv(SECRET_ENV, SECRET)
    monkeypatch.setenv(TOKEN_ENV, DEFAULT_TOKEN)
    syncs.bh.write(
        "backhaul.yml",
        {
            "name": "t",
            "dbt_project": "../shop",
            "dbt_cloud": {
                "webhook_secret": "${env:" + SECRET_ENV + "}",
                "api_token": "${env:" + TOKEN_ENV + "}",
                "base_url": cloud_url,
            },
        },
    )
    app = create_app(syncs.root)
    try:
        with LoopbackServer(app) as server:
            yield server.url
    finally:
        close_app(app)


@pytest.fixture
def served(
    syncs: SyncProject, cloud: tuple[DbtCloudEmulator, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    with serve(syncs, cloud[1], monkeypatch) as url:
        yield url


def _dbt_run(syncs: SyncProject, cloud: DbtCloudEmulator, run_id: int, *select: str) -> None:
    """Run dbt for real and publish its run_results.json as dbt Cloud run ``run_id``."""
    syncs.dbt.dbt("run", "--select", *select)
    results = json.loads((syncs.dbt.target / "run_results.json").read_text())
    cloud.add_run(ACCOUNT, run_id, {"run_results.json": results})


def _runs(syncs: SyncProject) -> list[RunRecord]:
    with api.open_store(syncs.bh.load()) as store:
        return store.runs(limit=100)


def _wait_finished(syncs: SyncProject, count: int, timeout: float = 60) -> list[RunRecord]:
    deadline = time.monotonic() + timeout
    while True:
        runs = _runs(syncs)
        done = [r for r in runs if r.status is not RunStatus.RUNNING]
        if len(done) >= count and len(done) == len(runs):
            return runs
        assert time.monotonic() < deadline, f"runs did not finish: {runs}"
        time.sleep(0.1)


def _post(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(url + WEBHOOK, content=body, headers=headers, timeout=30)


def test_signed_event_runs_exactly_the_syncs_whose_models_the_job_built(
    syncs: SyncProject, cloud: tuple[DbtCloudEmulator, str], served: str
) -> None:
    emulator, _ = cloud
    _dbt_run(syncs, emulator, 1001, "orders")
    body, headers = emulator.webhook(SECRET, account_id=ACCOUNT, job_id=JOB, run_id=1001)

    answer = _post(served, body, headers)

    assert answer.status_code == 202, answer.text
    data = answer.json()
    assert data["dbt_run_id"] == 1001
    assert [r["sync"] for r in data["runs"]] == ["orders_to_db"]
    assert data["runs"][0]["coalesced"] is False
    assert {s["sync"] for s in data["skipped"]} == {"customers_to_db", "plans_update"}
    runs = _wait_finished(syncs, 1)
    assert [(r.run_id, r.sync, r.status, r.trigger) for r in runs] == [
        (data["runs"][0]["run_id"], "orders_to_db", RunStatus.SUCCEEDED, "web")
    ]
    assert syncs.table("orders") == [
        (10, "ada@example.com"),
        (20, "grace@example.com"),
        (30, "alan@example.com"),
    ]
    fetched = [c for c in emulator.calls if "/artifacts/" in c.path]
    assert [(c.path, c.status) for c in fetched] == [
        (f"/api/v2/accounts/{ACCOUNT}/runs/1001/artifacts/run_results.json", 200)
    ]


def test_bad_or_missing_signature_gets_401_and_runs_nothing(
    syncs: SyncProject, cloud: tuple[DbtCloudEmulator, str], served: str
) -> None:
    emulator, _ = cloud
    _dbt_run(syncs, emulator, 1002, "customers", "orders")
    body, headers = emulator.webhook("not-the-secret", account_id=ACCOUNT, job_id=JOB, run_id=1002)
    _, good = emulator.webhook(SECRET, account_id=ACCOUNT, job_id=JOB, run_id=1002)
    unsigned = {k: v for k, v in headers.items() if k != "Authorization"}

    for sent in (headers, unsigned, {**headers, "Authorization": good["Authorization"]}):
        answer = _post(served, body, sent)
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"]["code"] == "unauthorized"
        assert "HMAC-SHA256" in answer.json()["error"]["message"]
    # A body changed after signing fails too.
    signed_body, signed = emulator.webhook(SECRET, account_id=ACCOUNT, job_id=JOB, run_id=1002)
    assert _post(served, signed_body.replace(b"1002", b"1003"), signed).status_code == 401

    assert _runs(syncs) == []
    assert emulator.calls == []  # nothing was even fetched


def test_other_events_and_unknown_json_run_nothing(
    syncs: SyncProject, cloud: tuple[DbtCloudEmulator, str], served: str
) -> None:
    emulator, _ = cloud
    body, headers = emulator.webhook(
        SECRET, account_id=ACCOUNT, job_id=JOB, run_id=1004, event_type="job.run.started"
    )
    answer = _post(served, body, headers)
    assert answer.status_code == 200
    assert answer.json()["runs"] == [] and "job.run.started" in answer.json()["ignored"]

    from backhaul.dbt.cloud import signature

    junk = b'{"hello": "world"}'
    answer = _post(served, junk, {"Authorization": signature(SECRET, junk)})
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "bad_event"
    assert _runs(syncs) == []


def test_repeated_events_coalesce_per_sync(
    syncs: SyncProject,
    cloud: tuple[DbtCloudEmulator, str],
    receiver: WebhookReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emulator, cloud_url = cloud
    syncs.bh.webhook_destination(receiver, name="hook")
    syncs.bh.sync("customers_to_hook", model="customers", destination="hook")
    _dbt_run(syncs, emulator, 1005, "customers")
    receiver.faults.hold_next(1)  # the first run of customers_to_hook waits until released

    with serve(syncs, cloud_url, monkeypatch) as url:
        answers: list[dict[str, Any]] = []
        for _ in range(3):
            body, headers = emulator.webhook(SECRET, account_id=ACCOUNT, job_id=JOB, run_id=1005)
            answer = _post(url, body, headers)
            assert answer.status_code == 202, answer.text
            answers.append({r["sync"]: r for r in answer.json()["runs"]})
        first, second, third = (a["customers_to_hook"] for a in answers)
        assert first["coalesced"] is False
        assert second == {**first, "coalesced": True}
        assert third == {**first, "coalesced": True}
        receiver.faults.release()

        # The held run ends, then exactly one more run follows for the two later events.
        deadline = time.monotonic() + 60
        while True:
            hook_runs = [r for r in _runs(syncs) if r.sync == "customers_to_hook"]
            if len(hook_runs) == 2 and all(r.finished_at for r in hook_runs):
                break
            assert time.monotonic() < deadline, hook_runs
            time.sleep(0.1)
    assert [r.status for r in hook_runs] == [RunStatus.SUCCEEDED, RunStatus.SUCCEEDED]
    assert hook_runs[1].run_id == first["run_id"]  # newest first: the first run is older
    assert len(receiver.calls) == 1  # the follow-up found nothing new to send
