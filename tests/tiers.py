"""The two tiers of the test suite: ``unit`` and ``integration``.

A test is ``integration`` when it says so (``pytestmark = pytest.mark.integration`` in its
module, or the mark on the test), when it uses a fixture that needs a database server, a
network server or another process (``INTEGRATION_FIXTURES``), or when it is marked ``slow``.
Every other test is ``unit``: no network, no database server, no second Python process. A guard holds unit
tests to that while they run and while their fixtures, of any scope, are set up: a unit test
(or a fixture it uses) that opens a TCP connection, binds a TCP socket or starts a process
fails at once with a message that names the test or the fixture and says to mark the test
``integration``.

So ``pytest -m unit`` runs without PostgreSQL, MariaDB, brokers or a browser, in well under
a minute, and ``pytest`` (what CI runs) runs both tiers.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

# Fixtures that start or reach something outside the test's own process.
INTEGRATION_FIXTURES = frozenset(
    {
        "pg_db",
        "pg_url",
        "pg",
        "mysql_url",
        "receiver",
        "smtp_server",
        "channels",
        "alert_project",
        "web_env",
        "live_server",
        "client_for",
        "built_dbt",
        "dbt_project",
        "bh",
        "syncs",
        "served_syncs",
        "store_url",
        "store",
        "world",
    }
)

_INET = (socket.AF_INET, socket.AF_INET6)


class NotAUnitTest(RuntimeError):
    """A test in the unit tier reached outside its process."""


def _refuse(who: str, what: str) -> NotAUnitTest:
    return NotAUnitTest(
        f"{who} {what}; unit tests stay in their process. Mark it "
        "`@pytest.mark.integration` (or the module: `pytestmark = pytest.mark.integration`)."
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "unit: no network, no database server, no second Python process"
    )
    config.addinivalue_line(
        "markers", "integration: needs a database, a server, a browser or another process"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("integration") is not None:
            continue
        fixtures = set(getattr(item, "fixturenames", ()))
        if item.get_closest_marker("slow") is not None or fixtures & INTEGRATION_FIXTURES:
            item.add_marker(pytest.mark.integration)
        else:
            item.add_marker(pytest.mark.unit)


# Who is being held to the unit tier right now, innermost last: (thread, who). Only a held
# thread is refused: threads of other tests' fixtures (servers, a scheduler) share this
# process and go on as they were.
_HOLDERS: list[tuple[int, str]] = []


@contextmanager
def _holding(who: str) -> Iterator[None]:
    """Hold the calling thread while the block runs; ``who`` opens a refusal's message."""
    entry = (threading.get_ident(), who)
    _HOLDERS.append(entry)
    try:
        yield
    finally:
        _HOLDERS.remove(entry)


def _check(what: str) -> None:
    me = threading.get_ident()
    for thread, who in reversed(_HOLDERS):
        if thread == me:
            raise _refuse(who, what)


@contextmanager
def _refusing_outside_calls() -> Iterator[None]:
    """Route TCP, process and PostgreSQL calls through :func:`_check` while the block runs.

    Installed once around the whole run of a unit test (setup, call and teardown), so the
    holds of its fixtures and of its body come and go inside it without patching over each
    other.
    """
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_bind = socket.socket.bind

    def connect(sock: socket.socket, address: Any) -> None:
        if sock.family in _INET:
            _check(f"opened a network connection to {address!r}")
        real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        if sock.family in _INET:
            _check(f"opened a network connection to {address!r}")
        return real_connect_ex(sock, address)

    def bind(sock: socket.socket, address: Any) -> None:
        if sock.family in _INET:
            _check(f"started a server on {address!r}")
        real_bind(sock, address)

    real_popen = subprocess.Popen

    def popen(args: Any, *rest: Any, **kwargs: Any) -> Any:
        program = args if isinstance(args, (str, bytes, os.PathLike)) else args[0]
        name = os.path.basename(os.fsdecode(program)).split()[0]
        if os.fsdecode(program) == sys.executable or name.startswith(("python", "backhaul")):
            _check(f"started another Python process ({name})")
        return real_popen(args, *rest, **kwargs)

    real_pg = psycopg.Connection.connect
    real_async_pg = psycopg.AsyncConnection.connect

    def pg_connect(*args: Any, **kwargs: Any) -> Any:
        _check("opened a PostgreSQL connection")
        return real_pg(*args, **kwargs)

    async def async_pg_connect(*args: Any, **kwargs: Any) -> Any:
        _check("opened a PostgreSQL connection")
        return await real_async_pg(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", connect)
        patch.setattr(socket.socket, "connect_ex", connect_ex)
        patch.setattr(socket.socket, "bind", bind)
        patch.setattr(subprocess, "Popen", popen)
        patch.setattr(psycopg.Connection, "connect", pg_connect)
        patch.setattr(psycopg.AsyncConnection, "connect", async_pg_connect)
        # ``psycopg.connect`` is bound to the class method at import, so it needs its own patch.
        patch.setattr(psycopg, "connect", pg_connect)
        yield


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[object]:
    if item.get_closest_marker("unit") is None:
        return (yield)
    with _refusing_outside_calls():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any]) -> Iterator[object]:
    """Hold the setup of every fixture, not only the test body and its function fixtures.

    A module-, class- or session-scoped fixture is set up before the test's own hold starts,
    so without this a unit test could lean on a fixture that reaches a server and still pass.
    The hold refuses only inside a unit test's run.
    """
    with _holding(
        f"the fixture {fixturedef.argname!r} ({fixturedef.scope} scope) of this unit test"
    ):
        return (yield)


@pytest.fixture(autouse=True)
def _unit_tier_guard() -> Iterator[None]:
    """Hold the test body, and the teardown of the function fixtures set up after this one."""
    with _holding("this unit test"):
        yield
