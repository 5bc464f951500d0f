"""Sessions that end: sign-out, password and role changes, removal, timeouts, sign-in limits
per address, and forwarded headers believed only from trusted proxies.

Each test talks HTTP to a live server on loopback. The shared server of ``conftest.py``
serves most of them; tests that need other settings (a clock they can move, small limits,
trusted proxies) serve a second app on the same project, so its store and users are shared.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from tests.state.conftest import pg_url  # noqa: F401  (a throwaway Postgres database)
from tests.web.conftest import WebEnv
from tests.web.conftest import login

from backhaul.clock import utc_now
from backhaul.state.store import RunStore
from backhaul.testing.server import LoopbackServer
from backhaul.web.app import SESSION_COOKIE
from backhaul.web.app import WebSettings
from backhaul.web.app import close_app
from backhaul.web.app import create_app
from backhaul.web.auth import Role
from backhaul.web.sessions import SessionLifetimes
from backhaul.web.sessions import SessionStore
from backhaul.web.users import UserStore

pytestmark = pytest.mark.integration

PASSWORD = "first-password-1"
HTML = {"Accept": "text/html"}


class MovableClock:
    """The time sessions are judged by; a test moves it forward instead of waiting."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Served:
    url: str
    users: UserStore


@pytest.fixture
def serve(web_env: WebEnv) -> Iterator[Callable[..., Served]]:
    """``serve(settings, clock=...)``: another app on the shared project, on its own port."""
    started: list[tuple[LoopbackServer, object]] = []

    def start(settings: WebSettings, clock: Callable[[], datetime] | None = None) -> Served:
        app = create_app(web_env.project_dir, settings=settings, clock=clock or utc_now)
        server = LoopbackServer(app, name="backhaul-web-sessions").start()
        started.append((server, app))
        return Served(server.url, app.state.users)

    yield start
    for server, app in started:
        server.stop()
        close_app(app)  # type: ignore[arg-type]


def temp_user(users: UserStore, role: Role = Role.OPERATOR) -> str:
    name = f"s-{uuid.uuid4().hex[:10]}"
    users.add(name, PASSWORD, role)
    return name


@contextmanager
def signed_in(url: str, username: str, password: str = PASSWORD) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, follow_redirects=False, timeout=30) as client:
        answer = login(client, username, password)
        assert answer.status_code == 303, answer.text
        yield client


def copy_of(url: str, client: httpx.Client) -> httpx.Client:
    """A second client that sends exactly ``client``'s session cookie as it is now."""
    header = {"Cookie": f"{SESSION_COOKIE}={client.cookies[SESSION_COOKIE]}"}
    return httpx.Client(base_url=url, follow_redirects=False, timeout=30, headers=header)


def assert_refused(client: httpx.Client) -> None:
    """The API answers 401 and a page sends the browser to the sign-in form."""
    api = client.get("/api/v1/me")
    assert api.status_code == 401, api.text
    assert api.json()["error"]["code"] == "unauthorized"
    page = client.get("/", headers=HTML)
    assert page.status_code == 303
    assert page.headers["location"].startswith("/login")


def backhaul_cli(project: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backhaul.cli.app", *args, "-C", str(project)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# -- sign-out, password, role and removal ------------------------------------------------


def test_a_cookie_copied_before_sign_out_is_refused_after_it(web_env: WebEnv) -> None:
    users: UserStore = web_env.app.state.users
    name = temp_user(users)
    with (
        signed_in(web_env.url, name) as browser,
        signed_in(web_env.url, name) as other_browser,
        copy_of(web_env.url, browser) as thief,
    ):
        assert thief.get("/api/v1/me").json()["username"] == name
        assert other_browser.get("/", headers=HTML).status_code == 200
        token = browser.get("/api/v1/me").json()["csrf_token"]
        out = browser.post("/logout", headers={"X-CSRF-Token": token})
        assert out.status_code == 303 and out.headers["location"] == "/login"
        assert_refused(thief)
        assert_refused(browser)
        # Signing out ends every session of the user, not only the one that signed out.
        assert_refused(other_browser)
    entries = users.audit_entries(limit=20)
    logout = next(e for e in entries if e.action == "logout" and e.target == name)
    assert logout.details == {"sessions_ended": 2}


def test_each_sign_in_gets_a_new_session_id(web_env: WebEnv) -> None:
    name = temp_user(web_env.app.state.users)
    with httpx.Client(base_url=web_env.url, follow_redirects=False, timeout=30) as client:
        client.get("/login")
        before = client.cookies[SESSION_COOKIE]
        assert login(client, name, PASSWORD).status_code == 303
        first = client.cookies[SESSION_COOKIE]
        assert first != before
        with copy_of(web_env.url, client) as kept:
            # Signing in again (here: as the same user) replaces and ends the old session.
            assert login(client, name, PASSWORD).status_code == 303
            assert client.cookies[SESSION_COOKIE] != first
            assert client.get("/api/v1/me").status_code == 200
            assert_refused(kept)


def test_a_planted_cookie_is_never_signed_in(web_env: WebEnv) -> None:
    # The attacker's own (validly signed, anonymous) cookie, planted in the victim's browser.
    with httpx.Client(base_url=web_env.url, follow_redirects=False, timeout=30) as attacker:
        attacker.get("/login")
        planted = attacker.cookies[SESSION_COOKIE]
        name = temp_user(web_env.app.state.users)
        with httpx.Client(base_url=web_env.url, follow_redirects=False, timeout=30) as victim:
            victim.cookies.set(SESSION_COOKIE, planted, domain="127.0.0.1")
            assert login(victim, name, PASSWORD).status_code == 303
            assert victim.cookies[SESSION_COOKIE] != planted
            assert victim.get("/api/v1/me").status_code == 200
        assert attacker.get("/api/v1/me").status_code == 401


def test_cli_password_change_role_change_and_removal_end_sessions_while_serving(
    web_env: WebEnv,
) -> None:
    users: UserStore = web_env.app.state.users
    name = temp_user(users)
    bearer, _ = users.create_token(name, "kept across password changes")
    with httpx.Client(
        base_url=web_env.url, timeout=30, headers={"Authorization": f"Bearer {bearer}"}
    ) as api:
        with signed_in(web_env.url, name) as browser, copy_of(web_env.url, browser) as copy:
            assert copy.get("/api/v1/me").status_code == 200
            done = backhaul_cli(
                web_env.project_dir,
                "users",
                "password",
                name,
                "--password-stdin",
                stdin="second-password-2\n",
            )
            assert done.returncode == 0, done.stderr
            assert "sessions have ended" in done.stdout
            assert_refused(browser)
            assert_refused(copy)
        assert api.get("/api/v1/me").json()["username"] == name  # tokens keep working
        with httpx.Client(base_url=web_env.url, follow_redirects=False, timeout=30) as old:
            assert login(old, name, PASSWORD).status_code == 401

        with signed_in(web_env.url, name, "second-password-2") as browser:
            same = backhaul_cli(web_env.project_dir, "users", "role", name, "operator")
            assert same.returncode == 0, same.stderr
            assert browser.get("/api/v1/me").status_code == 200  # no change, no sign-out
            changed = backhaul_cli(web_env.project_dir, "users", "role", name, "viewer")
            assert changed.returncode == 0, changed.stderr
            assert_refused(browser)
        assert api.get("/api/v1/me").json()["role"] == "viewer"

        with signed_in(web_env.url, name, "second-password-2") as browser:
            gone = backhaul_cli(web_env.project_dir, "users", "remove", name)
            assert gone.returncode == 0, gone.stderr
            assert_refused(browser)
        assert api.get("/api/v1/me").status_code == 401
    actions = {(e.action, e.target) for e in users.audit_entries(limit=50)}
    assert {("user_password", name), ("user_role", name), ("user_remove", name)} <= actions


def test_cli_sign_out_ends_every_session_of_a_user(web_env: WebEnv) -> None:
    name = temp_user(web_env.app.state.users)
    with signed_in(web_env.url, name) as one, signed_in(web_env.url, name) as two:
        done = backhaul_cli(web_env.project_dir, "users", "sign-out", name)
        assert done.returncode == 0, done.stderr
        assert f"ended 2 session(s) of {name}" in done.stdout
        assert_refused(one)
        assert_refused(two)
    unknown = backhaul_cli(web_env.project_dir, "users", "sign-out", "nobody-here")
    assert unknown.returncode == 1
    assert unknown.stderr.strip().splitlines() == [
        "error: no user `nobody-here`; list them with `backhaul users list`"
    ]


# -- timeouts ------------------------------------------------------------------------------


def test_idle_and_absolute_timeouts_are_enforced_by_the_server(
    web_env: WebEnv, serve: Callable[..., Served]
) -> None:
    clock = MovableClock()
    served = serve(WebSettings(session_idle_timeout=600, session_max_age=1800), clock)
    name = temp_user(served.users)

    with signed_in(served.url, name) as idle, copy_of(served.url, idle) as idle_copy:
        clock.advance(590)
        assert idle.get("/api/v1/me").status_code == 200  # use resets the idle clock
        clock.advance(590)
        assert idle.get("/api/v1/me").status_code == 200
        clock.advance(601)
        assert_refused(idle_copy)
        assert_refused(idle)

    with signed_in(served.url, name) as busy:
        for _ in range(5):  # used every 5 minutes: never idle, until 30 minutes have passed
            clock.advance(300)
            assert busy.get("/api/v1/me").status_code == 200
        clock.advance(301)
        assert_refused(busy)
        assert login(busy, name, PASSWORD).status_code == 303
        assert busy.get("/api/v1/me").status_code == 200


# -- sign-in limits and forwarded headers ------------------------------------------------


def failed_logins(url: str, names: list[str], headers: dict[str, str] | None = None) -> list[int]:
    statuses = []
    for name in names:
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            statuses.append(login(client, name, "a-wrong-guess").status_code)
    return statuses


def names(n: int) -> list[str]:
    return [f"guess-{uuid.uuid4().hex[:8]}" for _ in range(n)]


def test_guessing_across_many_names_from_one_address_is_throttled(
    web_env: WebEnv, serve: Callable[..., Served]
) -> None:
    served = serve(WebSettings(login_rate=3, login_rate_per_address=4))
    assert failed_logins(served.url, names(6)) == [401] * 4 + [429] * 2
    # While the address is throttled even the right password is refused (no oracle).
    name = temp_user(served.users)
    with httpx.Client(base_url=served.url, timeout=30) as client:
        answer = login(client, name, PASSWORD)
        assert answer.status_code == 429
        assert int(answer.headers["retry-after"]) > 0
    throttled = [e for e in served.users.audit_entries(limit=10) if e.action == "login_throttled"]
    assert throttled and throttled[0].details == {"limit": "address"}
    assert throttled[0].ip == "127.0.0.1"


def test_forwarded_headers_from_an_untrusted_peer_change_nothing(
    web_env: WebEnv, serve: Callable[..., Served]
) -> None:
    # Loopback is not among the trusted proxies, so its X-Forwarded-* headers are ignored.
    served = serve(WebSettings(login_rate_per_address=3, trusted_proxies=["10.9.9.9"]))
    statuses = [
        failed_logins(served.url, names(1), {"X-Forwarded-For": f"198.51.100.{i}"})[0]
        for i in range(4)
    ]
    assert statuses == [401, 401, 401, 429]
    entries = served.users.audit_entries(limit=4)
    assert {e.ip for e in entries} == {"127.0.0.1"}
    with httpx.Client(base_url=served.url, headers={"X-Forwarded-Proto": "https"}) as client:
        cookie = client.get("/login").headers["set-cookie"].lower()
    assert "httponly" in cookie and "secure" not in cookie


def test_forwarded_headers_from_a_trusted_proxy_give_the_client_address(
    web_env: WebEnv, serve: Callable[..., Served]
) -> None:
    served = serve(WebSettings(login_rate_per_address=2, trusted_proxies=["127.0.0.0/8"]))
    first = {"X-Forwarded-For": "203.0.113.7"}
    assert failed_logins(served.url, names(3), first) == [401, 401, 429]
    # Another client behind the same proxy has its own count.
    assert failed_logins(served.url, names(1), {"X-Forwarded-For": "203.0.113.8"}) == [401]
    # A client's own X-Forwarded-For entry is not believed; the proxy's last hop is.
    spoofed = {"X-Forwarded-For": "192.0.2.1, 203.0.113.7"}
    assert failed_logins(served.url, names(1), spoofed) == [429]
    ips = [e.ip for e in served.users.audit_entries(limit=5)]
    assert ips[0] == "203.0.113.7" and "203.0.113.8" in ips and "127.0.0.1" not in ips
    with httpx.Client(base_url=served.url, headers={"X-Forwarded-Proto": "https"}) as client:
        cookie = client.get("/login").headers["set-cookie"].lower()
    assert "secure" in cookie and "httponly" in cookie


# -- the session records on each supported store ---------------------------------------


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_session_records_on_each_store(
    database: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = (
        request.getfixturevalue("pg_url")
        if database == "postgres"
        else f"sqlite:///{tmp_path / 'store.db'}"
    )
    clock = MovableClock()
    lifetimes = SessionLifetimes(idle_timeout=timedelta(minutes=10), max_age=timedelta(hours=1))
    with RunStore.open(url) as store:
        users = UserStore(store)
        sessions = SessionStore(store, lifetimes, clock)
        ada = users.add("ada", PASSWORD, Role.EDITOR)
        first, second = sessions.start(ada.id), sessions.start(ada.id)
        assert first != second and len(first) >= 40
        assert sessions.user_for(first) == ada
        assert sessions.user_for("not-a-session-id") is None
        clock.advance(9 * 60)
        assert sessions.user_for(first) == ada  # recorded as used now
        clock.advance(9 * 60)
        assert sessions.user_for(first) == ada
        assert sessions.user_for(second) is None  # unused for 18 minutes
        assert users.set_password("ada", "another-password") is True
        assert sessions.user_for(first) is None
        third = sessions.start(ada.id)
        assert users.end_sessions("ada") == 1
        assert sessions.user_for(third) is None
        assert users.end_sessions("nobody") is None
        fourth = sessions.start(ada.id)
        assert users.remove("ada") is True
        assert sessions.user_for(fourth) is None


def test_every_web_process_counts_the_same_failed_sign_ins(
    web_env: WebEnv, serve: Callable[..., Served]
) -> None:
    # Two apps on one store stand for two processes of `backhaul serve --workers 2`:
    # guesses spread over both are counted together, so more processes never mean more.
    first = serve(WebSettings(login_rate=10, login_rate_per_address=4))
    second = serve(WebSettings(login_rate=10, login_rate_per_address=4))
    statuses = [
        failed_logins(url, names(1))[0]
        for url in (first.url, second.url, first.url, second.url, first.url, second.url)
    ]
    assert statuses == [401, 401, 401, 401, 429, 429]
