"""``backhaul test-connection NAME`` against real servers, run as a user runs it."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator

import pytest
from tests.conftest import Builder
from tests.sources import closed_port
from tests.sources import pg_database
from tests.sources import pg_exec

from backhaul.testing.receiver import WebhookReceiver

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_url() -> Iterator[str]:
    with pg_database("bh_conn") as url:
        pg_exec(url, "CREATE TABLE t (id int)")
        yield url


def test_postgres_source_prints_version_and_latency(project: Builder, pg_url: str) -> None:
    project.write("sources/pg.yml", {"type": "postgres", "url": "${env:BH_TEST_CONN_URL}"})
    result = project.cli("test-connection", "pg", env={"BH_TEST_CONN_URL": pg_url})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: source `pg` (postgres): PostgreSQL 15.")
    assert result.stdout.rstrip().endswith(" ms")


def test_duckdb_source_prints_its_version(project: Builder) -> None:
    result = project.cli("test-connection", "wh")
    assert result.returncode == 0, result.stderr
    assert "ok: source `wh` (duckdb): DuckDB v" in result.stdout


def test_unreachable_source_is_one_line_and_exit_1(project: Builder) -> None:
    port = closed_port()
    url = f"postgresql://postgres:Hunter2-secret@127.0.0.1:{port}/app?connect_timeout=2"
    project.write("sources/pg.yml", {"type": "postgres", "url": "${env:BH_TEST_CONN_URL}"})
    result = project.cli("test-connection", "pg", env={"BH_TEST_CONN_URL": url})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(
        f"error: source `pg`: cannot connect to postgres source at 127.0.0.1:{port}/app"
    )
    assert "check `host` and `port`" in lines[0]
    assert "Hunter2-secret" not in result.stdout + result.stderr


def test_config_problems_exit_2(project: Builder) -> None:
    result = project.cli("test-connection", "nope")
    assert result.returncode == 2
    assert "no source or destination named `nope` (known: wh)" in result.stderr
    project.write("sources/pg.yml", {"type": "postgres", "url": "${env:BH_TEST_CONN_UNSET_X1}"})
    result = project.cli("test-connection", "pg")
    assert result.returncode == 2
    assert "environment variable BH_TEST_CONN_UNSET_X1 is not set" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_driver_exits_2(project: Builder) -> None:
    if importlib.util.find_spec("trino") is not None:
        pytest.skip("the trino driver is installed here")
    project.write("sources/tr.yml", {"type": "trino", "host": "127.0.0.1", "user": "u"})
    result = project.cli("test-connection", "tr")
    assert result.returncode == 2
    assert "needs the `trino` package: run `pip install trino`" in result.stderr


def test_destination_reachable_and_unreachable(project: Builder, receiver: WebhookReceiver) -> None:
    project.webhook_destination(receiver)
    result = project.cli("test-connection", "hook")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: destination `hook` (webhook): ")
    project.destination("down", type="webhook", url=f"http://127.0.0.1:{closed_port()}/in")
    result = project.cli("test-connection", "down")
    assert result.returncode == 1
    assert result.stderr.startswith("error: destination `down`: ")
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_destination_that_answers_and_refuses_exits_2(
    project: Builder, receiver: WebhookReceiver
) -> None:
    # A broker that refuses the password answered: the destination file is wrong (2), where
    # a broker that cannot be reached may come back (1).
    project.destination("q", type="rabbitmq", url="amqp://guest:wrong@127.0.0.1:5672/", queue="q")
    refused = project.cli("test-connection", "q")
    assert refused.returncode == 2, refused.stderr
    assert "refused the sign-in" in refused.stderr
    down = f"amqp://guest:guest@127.0.0.1:{closed_port()}/"
    project.destination("down", type="rabbitmq", url=down, queue="q")
    unreachable = project.cli("test-connection", "down")
    assert unreachable.returncode == 1, unreachable.stderr
    assert "is not reachable" in unreachable.stderr
    # A webhook whose check URL answers 401 refused the credentials.
    health = f"{receiver.base_url}/health"
    project.webhook_destination(receiver, name="hook", check_url=health)
    receiver.faults.fail_next(1, status=401)
    answered = project.cli("test-connection", "hook")
    assert answered.returncode == 2, answered.stderr
    assert "answered 401 Unauthorized: check the credentials" in answered.stderr


@pytest.mark.parametrize(("kind", "file"), [("duckdb", "crm.duckdb"), ("sqlite", "crm.db")])
def test_a_database_path_that_is_a_pipe_is_refused_by_every_entry_point(
    project: Builder, kind: str, file: str
) -> None:
    project.users(3)
    project.destination("db", type=kind, path=file, table="contacts", create_table=True)
    project.sync("s", destination="db")
    os.mkfifo(project.root / file)  # opening it would wait for a writer forever

    # Each in a process of its own, as a user runs it; the call's timeout fails a wait.
    said = f"cannot open {kind} database {project.root / file}: the path is a named pipe (FIFO)"
    checked = project.cli("test-connection", "db")
    assert checked.returncode == 2, checked.stderr  # the path is the user's to fix
    assert said in " ".join(checked.stderr.split())
    ran = project.cli("run", "s")
    assert ran.returncode != 0
    assert said in " ".join(ran.stderr.split())
