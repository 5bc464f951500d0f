"""What a user sees when a project is wrong: one clear line, exit code 2, no traceback.

Every case builds a small working project, breaks one thing, and runs the real command in
a fresh interpreter. The processes run concurrently (once per module) and each test
asserts one property of one case's result.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from backhaul import api
from conftest import SHM
from conftest import Builder
from conftest import run_cli

pytestmark = pytest.mark.integration

UNSET = f"BH_TEST_UNSET_{uuid.uuid4().hex[:8].upper()}"
TYPO = [{"column": "id", "field": "id"}, {"template": "{{ frist_name }}", "field": "name"}]


@dataclass(frozen=True)
class Case:
    """One broken project and the error it must give."""

    setup: Callable[[Builder], None]
    file: str | None  # the file the message names
    needle: str | None  # text on the line the message must name (None: no line)
    key: str | None
    fragments: tuple[str, ...] = ()
    args: tuple[str, ...] = ("run", "s")
    prerun: bool = False  # run the sync once before breaking it (state exists)
    stdout: bool = False  # the command prints a summary table of the syncs it ran


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _yaml(b: Builder) -> None:
    b.write(
        "syncs/s.yml",
        "model: users\ndestination: db\n  mode: upsert\nmappings:\n  - column: id\n    field: id\n",
    )


BOMB = (
    "model: users\ndestination: db\nmappings:\n  - column: id\n    field: id\n"
    "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    + "".join(
        f"{x}: &{x} [{', '.join([f'*{p}'] * 9)}]\n"
        for p, x in zip("abcdefgh", "bcdefghi", strict=True)
    )
)
DEEP = "model: users\ndestination: db\nmappings: " + "[" * 5000 + "]" * 5000 + "\n"


def _replace(rel: str, make: Callable[[Path], None]) -> Callable[[Builder], None]:
    """Put something other than a file where the project file ``rel`` is expected."""

    def setup(b: Builder) -> None:
        path = b.root / rel
        path.unlink()
        make(path)

    return setup


def _symlink_loop(path: Path) -> None:
    path.symlink_to(path.name)


CASES: dict[str, Case] = {
    "alias_bomb_run": Case(
        lambda b: b.write("syncs/s.yml", BOMB),
        "syncs/s.yml",
        "f: &f",
        None,
        ("aliases expand to more than 100,000 values",),
    ),
    "alias_bomb_validate": Case(
        lambda b: b.write("syncs/s.yml", BOMB),
        "syncs/s.yml",
        "f: &f",
        None,
        ("aliases expand to more than 100,000 values",),
        args=("validate",),
    ),
    "alias_bomb_serve": Case(
        lambda b: b.write("syncs/s.yml", BOMB),
        "syncs/s.yml",
        "f: &f",
        None,
        ("aliases expand to more than 100,000 values",),
        args=("serve", "--port", "0"),
    ),
    "recursive_alias": Case(
        lambda b: b.write("syncs/s.yml", "model: users\ndestination: db\nmappings: &m [*m]\n"),
        "syncs/s.yml",
        "mappings:",
        None,
        ("alias *m refers to a node that contains it",),
    ),
    "deep_nesting_run": Case(
        lambda b: b.write("syncs/s.yml", DEEP),
        "syncs/s.yml",
        "mappings:",
        None,
        ("nested more than 64 levels deep",),
    ),
    "deep_nesting_serve": Case(
        lambda b: b.write("syncs/s.yml", DEEP),
        "syncs/s.yml",
        "mappings:",
        None,
        ("nested more than 64 levels deep",),
        args=("serve", "--port", "0"),
    ),
    "sync_file_is_a_directory": Case(
        _replace("syncs/s.yml", Path.mkdir),
        "syncs/s.yml",
        None,
        None,
        ("is a directory, not a file; each sync is one YAML file",),
    ),
    "sync_file_is_a_fifo": Case(  # opening it would block: a hang here fails the test
        _replace("syncs/s.yml", os.mkfifo),
        "syncs/s.yml",
        None,
        None,
        ("is a named pipe (FIFO), not a file",),
        args=("validate",),
    ),
    "sync_file_is_a_broken_link": Case(
        _replace("syncs/s.yml", lambda p: p.symlink_to("gone.yml")),
        "syncs/s.yml",
        None,
        None,
        ("is a broken symbolic link (to gone.yml",),
    ),
    "sync_file_is_a_link_loop": Case(
        _replace("syncs/s.yml", _symlink_loop),
        "syncs/s.yml",
        None,
        None,
        ("cannot be read (Too many levels of symbolic links)",),
    ),
    "model_sql_is_a_fifo": Case(
        _replace("models/users.sql", os.mkfifo),
        "models/users.sql",
        None,
        None,
        ("is a named pipe (FIFO), not a file; it should hold the model's query",),
    ),
    "project_file_is_a_directory": Case(
        _replace("backhaul.yml", Path.mkdir),
        "backhaul.yml",
        None,
        None,
        ("is a directory, not a file",),
    ),
    "missing_warehouse_file": Case(
        lambda b: b.write("sources/wh.yml", {"type": "duckdb", "path": "gone.duckdb"}),
        "sources/wh.yml",
        "path:",
        "path",
        ("gone.duckdb does not exist",),
    ),
    "missing_warehouse_file_validate": Case(
        lambda b: b.write("sources/wh.yml", {"type": "duckdb", "path": "gone.duckdb"}),
        "sources/wh.yml",
        "path:",
        "path",
        ("gone.duckdb does not exist",),
        args=("validate",),
    ),
    "warehouse_path_is_a_fifo": Case(
        lambda b: (
            os.mkfifo(b.root / "pipe.duckdb"),
            b.write("sources/wh.yml", {"type": "duckdb", "path": "pipe.duckdb"}),
        ),
        "sources/wh.yml",
        "path:",
        "path",
        ("is a named pipe (FIFO)",),
    ),
    "memory_limit_not_a_size": Case(
        lambda b: b.write("backhaul.yml", {"name": "t", "state": {"memory_limit": "lots"}}),
        "backhaul.yml",
        "memory_limit:",
        "state.memory_limit",
        ("must be a size such as 512MB", "not 'lots'"),
    ),
    "memory_limit_without_unit": Case(
        lambda b: b.write("backhaul.yml", {"name": "t", "state": {"memory_limit": 1024}}),
        "backhaul.yml",
        "memory_limit:",
        "state.memory_limit",
        ("GiB", "not 1024"),
    ),
    "memory_limit_too_small": Case(
        lambda b: b.write("backhaul.yml", {"name": "t", "state": {"memory_limit": "1MB"}}),
        "backhaul.yml",
        "memory_limit:",
        "state.memory_limit",
        ("at least 16MB",),
        args=("validate",),
    ),
    "malformed_yaml": Case(_yaml, "syncs/s.yml", "  mode: upsert", None, ("malformed YAML",)),
    "unknown_key": Case(
        lambda b: b.sync("s", modee="upsert"),
        "syncs/s.yml",
        "modee:",
        "modee",
        ("unknown key `modee`", "did you mean `mode`"),
    ),
    "unknown_model": Case(
        lambda b: b.sync("s", model="userz"), "syncs/s.yml", "model:", "model", ("`userz`",)
    ),
    "unknown_destination": Case(
        lambda b: b.sync("s", destination="dbz"),
        "syncs/s.yml",
        "destination:",
        "destination",
        ("`dbz`",),
    ),
    "unknown_source": Case(
        lambda b: b.write("models/users.yml", {"source": "whz", "primary_key": "id"}),
        "models/users.yml",
        "source:",
        "source",
        ("`whz`",),
    ),
    "missing_env_in_url": Case(
        lambda b: b.destination(
            "db", type="postgres", url=f"postgresql://u:${{env:{UNSET}}}@127.0.0.1/x", table="t"
        ),
        "destinations/db.yml",
        "url:",
        "url",
        (UNSET, "not set"),
    ),
    "missing_env_in_signing_secret": Case(
        lambda b: b.destination(
            "db",
            type="webhook",
            url="http://127.0.0.1:9/hook",
            signing_secret=f"${{env:{UNSET}}}",
        ),
        "destinations/db.yml",
        "signing_secret:",
        "signing_secret",
        (UNSET, "not set"),
    ),
    "sql_syntax_error": Case(
        lambda b: b.write("models/users.sql", "SELECT id, email\nFROM users\nWHER id > 1\n"),
        "models/users.sql",
        "WHER id",
        None,
        ("syntax error",),
    ),
    "sql_syntax_error_validate": Case(
        lambda b: b.write("models/users.sql", "SELECT id, email\nFROM users\nWHER id > 1\n"),
        "models/users.sql",
        "WHER id",
        "sql",
        ("syntax error",),
        args=("validate",),
    ),
    "primary_key_not_in_model": Case(
        lambda b: b.model("users", "SELECT * FROM users", primary_key="uid"),
        "models/users.yml",
        "primary_key:",
        "primary_key",
        ("uid",),
    ),
    "mapped_column_not_in_model": Case(
        lambda b: b.sync(
            "s", mappings=[{"column": "id", "field": "id"}, {"column": "emale", "field": "email"}]
        ),
        "syncs/s.yml",
        "emale",
        "mappings.1.column",
        ("`emale`",),
    ),
    "mapped_column_removed_after_a_run": Case(
        lambda b: b.sync(
            "s", mappings=[{"column": "id", "field": "id"}, {"column": "emale", "field": "email"}]
        ),
        "syncs/s.yml",
        "emale",
        "mappings.1.column",
        ("`emale`",),
        prerun=True,
    ),
    "batch_size_zero": Case(
        lambda b: b.sync("s", batch_size=0),
        "syncs/s.yml",
        "batch_size:",
        "batch_size",
        ("greater than 0",),
    ),
    "batch_size_negative": Case(
        lambda b: b.sync("s", batch_size=-5),
        "syncs/s.yml",
        "batch_size:",
        "batch_size",
        ("greater than 0",),
    ),
    "batch_size_above_destination_max": Case(
        lambda b: b.sync("s", batch_size=60_000),
        "syncs/s.yml",
        "batch_size:",
        "batch_size",
        ("50000",),
    ),
    "default_batch_size_above_destination_max": Case(
        lambda b: b.write("backhaul.yml", {"name": "t", "defaults": {"batch_size": 60_000}}),
        "backhaul.yml",
        "batch_size:",
        "defaults.batch_size",
        ("50000",),
    ),
    "webhook_batch_size_above_max": Case(
        lambda b: b.destination(
            "db", type="webhook", url="http://127.0.0.1:9/h", batch_size=20_000
        ),
        "destinations/db.yml",
        "batch_size:",
        "batch_size",
        ("10000",),
    ),
    "template_variable_typo": Case(
        lambda b: b.sync("s", mappings=TYPO),
        "syncs/s.yml",
        "frist_name",
        "mappings.1.template",
        ("template variable `frist_name` is not a column",),
        prerun=True,
    ),
    "template_variable_typo_plan": Case(
        lambda b: b.sync("s", mappings=TYPO),
        "syncs/s.yml",
        "frist_name",
        "mappings.1.template",
        ("template variable `frist_name`",),
        args=("plan", "s"),
        prerun=True,
    ),
    "template_unknown_filter": Case(
        lambda b: b.sync(
            "s", mappings=[TYPO[0], {"template": "{{ name | upcsae }}", "field": "n"}]
        ),
        "syncs/s.yml",
        "upcsae",
        "mappings.1.template",
        ("unknown Liquid filter `upcsae`",),
        prerun=True,
    ),
    "template_syntax_error": Case(
        lambda b: b.sync("s", mappings=[TYPO[0], {"template": "{{ name | }", "field": "n"}]),
        "syncs/s.yml",
        "{{ name | }",
        "mappings.1.template",
        ("the template does not parse",),
    ),
    "slack_in_mirror_mode": Case(
        lambda b: (
            b.destination(
                "db", type="slack", webhook_url="https://hooks.slack.com/services/T1/B2/x"
            ),
            b.sync("s", mode="mirror"),
        ),
        "syncs/s.yml",
        "mode:",
        "mode",
        ("the `slack` destination cannot delete records",),
    ),
    "missing_env_in_run_all": Case(
        lambda b: b.destination(
            "db", type="postgres", url=f"postgresql://u:${{env:{UNSET}}}@127.0.0.1/x", table="t"
        ),
        "destinations/db.yml",
        "url:",
        "url",
        (UNSET, "not set"),
        args=("run", "--all"),
        prerun=True,
        stdout=True,
    ),
    "webhook_rate_limit_zero": Case(
        lambda b: b.destination(
            "db", type="webhook", url="http://127.0.0.1:9/h", rate_limit={"requests": 0}
        ),
        "destinations/db.yml",
        "requests:",
        "rate_limit.requests",
        ("greater than 0",),
    ),
}


@dataclass
class Outcome:
    project: Builder
    result: subprocess.CompletedProcess[str]
    state_before: str | None  # digest of the state file before the command, None: absent


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def _prepare(root: Path, case: Case) -> tuple[Builder, str | None]:
    b = Builder(root)
    b.users(10)
    b.sqlite_destination()
    b.sync("s")
    if case.prerun:
        assert api.run(b.load(), "s").counts.succeeded == 10
    case.setup(b)
    return b, _digest(b.state_file("s"))


@pytest.fixture(scope="module")
def outcomes() -> Iterator[dict[str, Outcome]]:
    base = SHM if SHM.is_dir() else None
    with tempfile.TemporaryDirectory(prefix="backhaul-cli-", dir=base) as folder:
        prepared = {n: _prepare(Path(folder) / n, c) for n, c in CASES.items()}

        def call(name: str) -> Outcome:
            b, before = prepared[name]
            return Outcome(b, b.cli(*CASES[name].args), before)

        with ThreadPoolExecutor(max_workers=4) as pool:
            done = dict(zip(CASES, pool.map(call, CASES), strict=True))
        yield done


def _line_of(root: Path, file: str, needle: str) -> int:
    lines = (root / file).read_text(encoding="utf-8").splitlines()
    return next(i for i, text in enumerate(lines, 1) if needle in text)


@pytest.mark.parametrize("name", list(CASES))
def test_one_clear_line_naming_file_line_and_key(name: str, outcomes: dict[str, Outcome]) -> None:
    case, got = CASES[name], outcomes[name]
    result = got.result
    assert result.returncode == 2, result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("error: ")
    where = case.file
    if case.needle is not None:
        where = f"{case.file}:{_line_of(got.project.root, case.file or '', case.needle)}"
    if case.key is not None:
        where = f"{where}: {case.key}"
    assert f"error: {where}: " in line
    for fragment in case.fragments:
        assert fragment in line
    if not case.stdout:
        assert result.stdout.strip() == ""


@pytest.mark.parametrize("name", list(CASES))
def test_no_traceback(name: str, outcomes: dict[str, Outcome]) -> None:
    result = outcomes[name].result
    assert result.returncode != 0
    assert "Traceback" not in result.stdout + result.stderr
    for fragment in CASES[name].fragments:
        assert fragment in result.stderr


@pytest.mark.parametrize("name", list(CASES))
def test_no_state_change(name: str, outcomes: dict[str, Outcome]) -> None:
    got = outcomes[name]
    assert _digest(got.project.state_file("s")) == got.state_before
    if CASES[name].prerun:
        assert got.state_before is not None


def test_unreachable_destination_fails_with_one_clear_line(
    project: Builder, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = _closed_port()
    project.users(5)
    secret = f"pw-{uuid.uuid4().hex}"
    project.destination(
        "db",
        type="postgres",
        url=f"postgresql://postgres:${{env:BH_TEST_PG_PASSWORD}}@127.0.0.1:{port}/nowhere",
        table="contacts",
        create_table=True,
        connect_timeout=2,
    )
    project.sync("s")

    result = project.cli("run", "s", env={"BH_TEST_PG_PASSWORD": secret})

    output = result.stdout + result.stderr
    assert secret not in output
    assert result.returncode == 1
    assert "Traceback" not in output
    errors = [ln.strip() for ln in output.splitlines() if "error:" in ln]
    assert len(errors) == 1, output
    assert f"127.0.0.1:{port}" in errors[0] and "connection refused" in errors[0]
    assert "check `url`" in errors[0]
    # Nothing was delivered, so the next run still plans every row (a plan checks the
    # destination's variables as validate does: set it here too).
    monkeypatch.setenv("BH_TEST_PG_PASSWORD", secret)
    assert project.plan("s").counts.added == 5
    with api.open_store(project.load()) as store:
        record = store.last_run("s")
    assert record is not None and record.status.value == "failed"
    assert record.error is not None and secret not in record.error


def test_missing_project_file(tmp_path: Path) -> None:
    result = run_cli("run", "s", "-C", str(tmp_path))

    assert result.returncode == 2
    assert "Traceback" not in result.stdout + result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "no backhaul.yml" in lines[0] and "backhaul init" in lines[0]
