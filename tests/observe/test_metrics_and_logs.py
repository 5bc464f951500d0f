"""Prometheus metrics from the run store and JSON logs with the run id and sync on every
line; neither ever carries a secret (checked by scanning them)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.conftest import Builder

from backhaul import api
from backhaul.observe.metrics import exposition
from backhaul.observe.metrics import registry_for
from backhaul.testing.receiver import WebhookReceiver
from backhaul.testing.server import LoopbackServer
from backhaul.web.app import close_app
from backhaul.web.app import create_app
from backhaul.web.auth import Role

pytestmark = pytest.mark.integration


@pytest.fixture
def hidden() -> dict[str, str]:
    return {
        "HOOK_TOKEN": "tok-" + secrets.token_hex(16),
        "HOOK_SIGNING": "sig-" + secrets.token_hex(16),
    }


@pytest.fixture
def secret_receiver(hidden: dict[str, str]) -> Iterator[WebhookReceiver]:
    with WebhookReceiver(
        key_field="id", secret=hidden["HOOK_SIGNING"], token=hidden["HOOK_TOKEN"]
    ) as found:
        yield found


def _project(project: Builder, receiver: WebhookReceiver) -> None:
    project.users(30)
    project.destination(
        "hook",
        type="webhook",
        url=receiver.url,
        mode="batch",
        batch_size=10,
        headers={"Authorization": "Bearer ${env:HOOK_TOKEN}"},
        signing_secret="${env:HOOK_SIGNING}",
        retry={"max_attempts": 3, "base_delay": 0.01},
    )
    project.sync("users_hook", destination="hook", batch_size=10)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_json_logs_and_metrics_of_a_run(
    project: Builder,
    secret_receiver: WebhookReceiver,
    hidden: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _project(project, secret_receiver)
    for name, value in hidden.items():
        monkeypatch.setenv(name, value)
    secret_receiver.faults.reject({"3": "bad email", "4": "bad email"})
    secret_receiver.faults.fail_next(1, status=503)  # one call answered 503, then retried
    result = project.cli("run", "users_hook", "--log-format", "json", env=hidden)
    assert result.returncode == 3, result.stderr  # rejected rows
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert lines, result.stderr
    run_id = next(line["run_id"] for line in lines if line["message"] == "run started")
    for line in lines:
        assert {"time", "level", "logger", "message", "run_id", "sync"} <= set(line)
        assert line["run_id"] == run_id and line["sync"] == "users_hook", line
    finished = [line for line in lines if line["message"].startswith("run partial")]
    assert finished and "rejected 2" in finished[0]["message"]
    with api.open_store(project.load()) as store:
        text = exposition(registry_for(project.load(), store)).decode()
    samples = _samples(text)
    sync = (("sync", "users_hook"),)
    assert samples[("backhaul_rows_total", (("kind", "queried"), *sync))] == 30
    assert samples[("backhaul_rows_total", (("kind", "succeeded"), *sync))] == 28
    assert samples[("backhaul_rows_total", (("kind", "rejected"), *sync))] == 2
    assert samples[("backhaul_runs_total", (("status", "partial"), *sync))] == 1
    calls = {
        labels: value
        for (name, labels), value in samples.items()
        if name == "backhaul_http_requests_total"
    }
    assert calls[(("destination", "hook"), ("status", "200"))] == 3
    assert calls[(("destination", "hook"), ("status", "503"))] == 1
    count = samples[("backhaul_http_request_duration_seconds_count", (("destination", "hook"),))]
    inf = samples[
        ("backhaul_http_request_duration_seconds_bucket", (("destination", "hook"), ("le", "+Inf")))
    ]
    assert count == inf == 4
    # Secrets appear nowhere: not in the logs, not in the metrics.
    for value in hidden.values():
        assert value not in result.stderr and value not in result.stdout
        assert value not in text


def test_metrics_endpoint_needs_a_token(
    project: Builder,
    secret_receiver: WebhookReceiver,
    hidden: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _project(project, secret_receiver)
    for name, value in hidden.items():
        monkeypatch.setenv(name, value)
    project.sync("hourly", destination="hook", schedule={"every": "1h"})
    assert project.run("users_hook").status.value == "succeeded"
    app = create_app(project.root)
    app.state.users.add("prometheus", "password-123456", Role.VIEWER)
    token, _ = app.state.users.create_token("prometheus", "scrape")
    server = LoopbackServer(app).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            assert client.get("/metrics").status_code == 401
            scraped = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    finally:
        server.stop()
        close_app(app)
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    samples = _samples(scraped.text)
    assert samples[("backhaul_runs_total", (("status", "succeeded"), ("sync", "users_hook")))] == 1
    assert ("backhaul_sync_next_run_timestamp_seconds", (("sync", "hourly"),)) in samples
    assert samples[("backhaul_sync_paused", (("sync", "hourly"),))] == 0
    for value in hidden.values():
        assert value not in scraped.text
