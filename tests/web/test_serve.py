"""`backhaul serve` as a subprocess: sign-out, session timeouts and trusted proxies as
configured from the command line and from backhaul.yml."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.conftest import free_port
from tests.web.conftest import login
from typer.testing import CliRunner

from backhaul.cli.app import app as cli_app
from backhaul.state.store import RunStore
from backhaul.web.auth import Role
from backhaul.web.users import AuditEntry
from backhaul.web.users import UserStore

pytestmark = pytest.mark.integration

PASSWORD = "serve-password-1"
START_TIMEOUT_S = 60.0  # a safety net for a slow machine, not a measurement


def backhaul(*args: str) -> list[str]:
    return [sys.executable, "-m", "backhaul.cli.app", *args]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "served"
    created = CliRunner().invoke(cli_app, ["init", str(root)])
    assert created.exit_code == 0, created.output
    with RunStore.open(f"sqlite:///{root / '.backhaul' / 'backhaul.db'}") as store:
        UserStore(store).add("ada", PASSWORD, Role.ADMIN)
    return root


def audit(project: Path) -> list[AuditEntry]:
    with RunStore.open(f"sqlite:///{project / '.backhaul' / 'backhaul.db'}") as store:
        return UserStore(store).audit_entries(limit=20)


class Serving:
    """A `backhaul serve` process on a free port; its output goes to a file."""

    def __init__(self, project: Path, *options: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (project / f"serve-{self.port}.log").open("w+")
        env = {**os.environ, "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"}
        env.pop("FORWARDED_ALLOW_IPS", None)
        self.proc = subprocess.Popen(
            backhaul("serve", "-C", str(project), "--port", str(self.port), *options),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                if httpx.get(f"{self.url}/login", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"backhaul serve did not start: {self.output()}")
            time.sleep(0.1)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self.log.close()


@pytest.fixture
def serving() -> Iterator[list[Serving]]:
    started: list[Serving] = []
    yield started
    for server in started:
        server.stop()


def test_default_serve_ends_sessions_at_sign_out_and_trusts_no_forwarded_header(
    project: Path, serving: list[Serving]
) -> None:
    server = Serving(project)
    serving.append(server)
    with httpx.Client(base_url=server.url, follow_redirects=False, timeout=30) as browser:
        assert login(browser, "ada", PASSWORD).status_code == 303
        cookie = {"Cookie": f"backhaul_session={browser.cookies['backhaul_session']}"}
        token = browser.get("/api/v1/me").json()["csrf_token"]
        with httpx.Client(base_url=server.url, headers=cookie, timeout=30) as copy:
            assert copy.get("/api/v1/me").status_code == 200
            assert browser.post("/logout", headers={"X-CSRF-Token": token}).status_code == 303
            assert copy.get("/api/v1/me").status_code == 401
            page = copy.get("/", headers={"Accept": "text/html"}, follow_redirects=False)
            assert page.status_code == 303 and page.headers["location"].startswith("/login")

    forwarded = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
    with httpx.Client(base_url=server.url, headers=forwarded, timeout=30) as client:
        assert login(client, "ada", "wrong-password").status_code == 401
    with httpx.Client(base_url=server.url, headers=forwarded, timeout=30) as client:
        assert "secure" not in client.get("/login").headers["set-cookie"].lower()
    failed = next(e for e in audit(project) if e.action == "login_failed")
    assert failed.ip == "127.0.0.1"


def test_serve_options_trust_a_proxy_and_set_the_idle_timeout(
    project: Path, serving: list[Serving]
) -> None:
    server = Serving(project, "--trusted-proxy", "127.0.0.1", "--session-idle-timeout", "4")
    serving.append(server)
    assert "trusting X-Forwarded-For/-Proto from 127.0.0.1" in server.output()
    # (A Secure cookie is not sent back over plain http, so sign in without the proto.)
    forwarded = {"X-Forwarded-For": "203.0.113.9"}
    with httpx.Client(base_url=server.url, headers=forwarded, timeout=30) as client:
        assert login(client, "ada", "wrong-password").status_code == 401
    https = {"X-Forwarded-Proto": "https"}
    with httpx.Client(base_url=server.url, headers=https, timeout=30) as client:
        assert "secure" in client.get("/login").headers["set-cookie"].lower()
    failed = next(e for e in audit(project) if e.action == "login_failed")
    assert failed.ip == "203.0.113.9"

    with httpx.Client(base_url=server.url, follow_redirects=False, timeout=30) as browser:
        assert login(browser, "ada", PASSWORD).status_code == 303
        assert browser.get("/api/v1/me").status_code == 200
        time.sleep(5)  # longer than the idle timeout
        assert browser.get("/api/v1/me").status_code == 401


def test_trusted_proxies_and_timeouts_from_backhaul_yml(
    project: Path, serving: list[Serving]
) -> None:
    config = project / "backhaul.yml"
    config.write_text(
        config.read_text()
        + "web:\n  session_max_age: 120\n  trusted_proxies: [10.0.0.0/8, 127.0.0.1]\n"
    )
    server = Serving(project)
    serving.append(server)
    assert "trusting X-Forwarded-For/-Proto from 10.0.0.0/8, 127.0.0.1" in server.output()
    with httpx.Client(base_url=server.url, follow_redirects=False, timeout=30) as browser:
        answer = login(browser, "ada", PASSWORD)
        assert answer.status_code == 303
        assert "max-age=120" in answer.headers["set-cookie"].lower()


def test_a_bad_trusted_proxy_is_a_one_line_error(project: Path) -> None:
    option = subprocess.run(
        backhaul("serve", "-C", str(project), "--trusted-proxy", "proxy.internal"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert option.returncode == 1
    assert option.stderr.strip().splitlines() == [
        "error: --trusted-proxy: 'proxy.internal' is not an IP address or network; "
        "write e.g. 10.0.0.5 or 10.1.0.0/16"
    ]
    config = project / "backhaul.yml"
    config.write_text(config.read_text() + "web:\n  trusted_proxies:\n    - 10.0.0.300\n")
    line = len(config.read_text().splitlines())
    checked = subprocess.run(
        backhaul("validate", "-C", str(project)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert checked.returncode == 2
    errors = checked.stderr.strip().splitlines()
    assert len(errors) == 1, checked.stderr
    assert errors[0].startswith(f"error: backhaul.yml:{line}: web.trusted_proxies")
    assert "'10.0.0.300' is not an IP address or network" in errors[0]
    assert "Traceback" not in checked.stderr
