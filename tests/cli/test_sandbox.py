"""`backhaul sandbox`: emulators served on loopback, their details printed, a clean stop."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ruamel.yaml import YAML
from tests.conftest import free_port

from backhaul.plugins import Registry
from backhaul.testing.sandbox import Sandbox
from backhaul.testing.sandbox import describe
from backhaul.testing.sandbox import emulator_names
from conftest import Builder
from conftest import run_cli

pytestmark = pytest.mark.integration

HEADER = re.compile(r"^== (\w+): (http://127\.0\.0\.1:\d+)$", re.MULTILINE)
WAIT = 60.0  # seconds to wait for the sandbox to print (a safety net, not a measurement)


class Running:
    """A `backhaul sandbox` process whose output lines are read as they come."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "backhaul.cli.app", "sandbox", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self.pump = threading.Thread(target=self._pump, daemon=True)
        self.pump.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def until(self, marker: str) -> str:
        """Everything printed up to and including the first line containing ``marker``."""
        while True:
            line = self.lines.get(timeout=WAIT)
            if line is None:
                raise AssertionError(f"the sandbox ended before printing {marker!r}: {self.seen}")
            self.seen.append(line)
            if marker in line:
                return "".join(self.seen)

    def rest(self) -> str:
        while (line := self.lines.get(timeout=WAIT)) is not None:
            self.seen.append(line)
        return "".join(self.seen)


@pytest.fixture
def running() -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for run in started:
        if run.proc.poll() is None:
            run.proc.kill()
        run.proc.wait(WAIT)
        run.pump.join(WAIT)
        assert run.proc.stdout is not None
        run.proc.stdout.close()


def test_sandbox_serves_every_emulator_until_interrupted(running: list[Running]) -> None:
    run = Running("--duration", "120")
    running.append(run)
    printed = run.until("sandbox running")

    served = dict(HEADER.findall(printed))
    assert sorted(served) == emulator_names()
    assert len(set(served.values())) == len(served), "two emulators share a port"
    for vendor, url in served.items():
        answer = httpx.get(f"{url}/_emulator/state", timeout=10)
        assert answer.status_code == 200, (vendor, answer.text)
        assert isinstance(answer.json(), dict)
        assert f"{url}/_emulator/faults" in printed
    vendor, url = sorted(served.items())[0]
    httpx.post(f"{url}/_emulator/faults", json={"fail_next": 1, "status": 503}, timeout=10)
    assert httpx.get(f"{url}/_emulator/calls", timeout=10).json() == {"calls": []}

    run.proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
    assert run.proc.wait(WAIT) == 0
    assert "sandbox stopped" in run.rest()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/_emulator/state", timeout=10)


def test_sandbox_with_a_duration_stops_by_itself(running: list[Running]) -> None:
    vendor = emulator_names()[0]
    port = free_port()
    run = Running(vendor, "--port-base", str(port), "--duration", "0.2")
    running.append(run)
    out = run.rest()
    assert run.proc.wait(WAIT) == 0
    assert HEADER.findall(out) == [(vendor, f"http://127.0.0.1:{port}")]
    assert "sandbox stopped" in out


def test_once_prints_credentials_and_a_destination_file(tmp_path: Path) -> None:
    result = run_cli("sandbox", "salesforce", "zendesk", "--once")
    assert result.returncode == 0, result.stderr
    assert [v for v, _ in HEADER.findall(result.stdout)] == ["salesforce", "zendesk"]
    block = result.stdout.split("== zendesk")[1]
    assert "export ZENDESK_API_TOKEN=" in block
    yaml_lines = block.split("destinations/zendesk.yml:\n")[1].split("\n\n")[0]
    config = YAML(typ="safe").load("\n".join(line[2:] for line in yaml_lines.splitlines()))
    assert config["type"] == "zendesk"
    assert config["api_token"] == "${env:ZENDESK_API_TOKEN}"


def test_emulator_without_a_destination_type_prints_url_and_credentials_only() -> None:
    result = run_cli("sandbox", "datadog", "pagerduty", "--once")
    assert result.returncode == 0, result.stderr
    assert [v for v, _ in HEADER.findall(result.stdout)] == ["datadog", "pagerduty"]
    assert "export DATADOG_API_KEY=" in result.stdout
    assert "export PAGERDUTY_ROUTING_KEY=" in result.stdout
    assert "destinations/" not in result.stdout
    assert "no `datadog` destination type" in result.stdout


def test_every_printed_destination_file_names_a_known_type() -> None:
    known = Registry.discover().destinations
    with Sandbox() as sandbox:
        for entry in sandbox.entries:
            text = describe(entry)
            config = entry.destination_file
            assert (f"destinations/{entry.vendor}.yml:" in text) == (config is not None)
            if config is not None:
                assert config["type"] in known


def test_ad_audience_emulators_print_destination_files_of_their_types() -> None:
    result = run_cli("sandbox", "meta", "google_ads", "--once")
    assert result.returncode == 0, result.stderr
    assert "export META_ACCESS_TOKEN=" in result.stdout
    assert "export GOOGLE_ADS_DEVELOPER_TOKEN=" in result.stdout
    for vendor, type_, secret in (
        ("meta", "meta_audiences", "access_token"),
        ("google_ads", "google_ads", "developer_token"),
    ):
        block = result.stdout.split(f"== {vendor}")[1]
        text = block.split(f"destinations/{vendor}.yml:\n")[1].split("\n\n")[0]
        config = YAML(typ="safe").load("\n".join(line[2:] for line in text.splitlines()))
        assert config["type"] == type_
        assert config[secret].startswith("${env:")
        model = Registry.discover().destination(type_).config_model
        assert model.model_validate(config).type == type_


def test_unknown_emulator_is_refused_with_the_known_ones() -> None:
    result = run_cli("sandbox", "nosuchvendor", "--once")
    assert result.returncode == 1
    assert "no emulator named `nosuchvendor`" in result.stderr
    for vendor in emulator_names():
        assert vendor in result.stderr


def test_busy_port_is_reported() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = run_cli("sandbox", emulator_names()[0], "--port-base", str(port), "--once")
    assert result.returncode == 1
    assert f"port {port}" in result.stderr and "--port-base" in result.stderr


def test_pasted_destination_file_runs_a_sync(project: Builder) -> None:
    """The documented flow: start, paste the destination file, export credentials, run."""
    if "hubspot" not in Registry.discover().destinations:
        pytest.skip("the hubspot destination is not installed")
    project.users(5)
    with Sandbox(["hubspot"]) as sandbox:
        [entry] = sandbox.entries
        text = describe(entry)
        pasted = text.split("destinations/hubspot.yml:\n")[1].split("\n\n")[0]
        project.write("destinations/hubspot.yml", "\n".join(ln[2:] for ln in pasted.splitlines()))
        project.sync(
            "to_hub",
            destination="hubspot",
            object="contacts",
            mappings=[
                {"column": "email", "field": "email"},
                {"column": "name", "field": "firstname"},
            ],
            match={"fields": ["email"]},
        )
        result = project.cli("run", "to_hub", env=entry.credentials)
        assert result.returncode == 0, result.stdout + result.stderr
        state = httpx.get(f"{entry.url}/_emulator/state", timeout=10).text
    for i in range(1, 6):
        assert f"u{i}@example.com" in state
