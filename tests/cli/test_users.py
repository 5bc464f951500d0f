"""`backhaul users`: add, list, remove, and API tokens that are shown once and stored hashed."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy import text
from typer.testing import CliRunner
from typer.testing import Result

from backhaul.cli.app import app
from backhaul.state.store import RunStore
from backhaul.web.auth import Role
from backhaul.web.sessions import SessionLifetimes
from backhaul.web.sessions import SessionStore
from backhaul.web.users import UserStore

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    result = CliRunner().invoke(app, ["init", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    return tmp_path / "p"


def cli(project: Path, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(app, [*args, "-C", str(project)], input=stdin)


def db_url(project: Path) -> str:
    return f"sqlite:///{project / '.backhaul' / 'backhaul.db'}"


def test_add_with_password_from_stdin_stores_only_an_argon2_hash(project: Path) -> None:
    result = cli(
        project,
        "users",
        "add",
        "ada",
        "--role",
        "operator",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert result.exit_code == 0, result.output
    assert "ada (operator)" in result.output
    engine = create_engine(db_url(project))
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT password_hash, role FROM users")).one()
    engine.dispose()
    assert stored.role == "operator"
    assert stored.password_hash.startswith("$argon2id$")
    assert PASSWORD not in stored.password_hash
    with RunStore.open(db_url(project)) as store:
        users = UserStore(store)
        assert users.authenticate("ada", PASSWORD) is not None
        assert users.authenticate("ada", "wrong password") is None


def test_add_prompts_twice_and_refuses_different_passwords(project: Path) -> None:
    ok = cli(project, "users", "add", "bo", "--role", "admin", stdin=f"{PASSWORD}\n{PASSWORD}\n")
    assert ok.exit_code == 0, ok.output
    bad = cli(project, "users", "add", "cy", stdin=f"{PASSWORD}\nsomething else\n")
    assert bad.exit_code == 1
    assert "passwords differ" in bad.output
    listed = cli(project, "users", "list")
    assert "bo" in listed.output and "admin" in listed.output
    assert "cy" not in listed.output


def test_bad_role_duplicate_user_and_short_password_are_one_line_errors(project: Path) -> None:
    bad_role = cli(
        project, "users", "add", "dee", "--role", "root", "--password-stdin", stdin=PASSWORD
    )
    assert bad_role.exit_code == 1 and "unknown role `root`" in bad_role.output
    short = cli(project, "users", "add", "dee", "--password-stdin", stdin="short\n")
    assert short.exit_code == 1 and "at least 8 characters" in short.output
    assert cli(project, "users", "add", "dee", "--password-stdin", stdin=PASSWORD).exit_code == 0
    again = cli(project, "users", "add", "dee", "--password-stdin", stdin=PASSWORD)
    assert again.exit_code == 1 and "already exists" in again.output
    assert "Traceback" not in again.output


def test_token_is_printed_once_stored_hashed_and_can_be_revoked(project: Path) -> None:
    cli(project, "users", "add", "eve", "--role", "viewer", "--password-stdin", stdin=PASSWORD)
    created = cli(project, "users", "token", "create", "eve", "--name", "ci")
    assert created.exit_code == 0, created.output
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("bh_") and len(token) > 40
    engine = create_engine(db_url(project))
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT token_hash FROM api_tokens")).scalar_one()
    engine.dispose()
    assert token not in stored and len(stored) == 64
    with RunStore.open(db_url(project)) as store:
        user = UserStore(store).user_for_token(token)
        assert user is not None and user.username == "eve" and user.role is Role.VIEWER
    listed = cli(project, "users", "token", "list")
    assert "ci" in listed.output and token not in listed.output
    revoked = cli(project, "users", "token", "revoke", "1")
    assert revoked.exit_code == 0, revoked.output
    with RunStore.open(db_url(project)) as store:
        assert UserStore(store).user_for_token(token) is None
    assert cli(project, "users", "token", "revoke", "1").exit_code == 1
    missing = cli(project, "users", "token", "create", "nobody", "--name", "x")
    assert missing.exit_code == 1 and "no user 'nobody'" in missing.output


def test_remove_deletes_the_user_and_their_tokens(project: Path) -> None:
    cli(project, "users", "add", "fay", "--password-stdin", stdin=PASSWORD)
    token = cli(project, "users", "token", "create", "fay", "--name", "t").stdout.split()[-1]
    assert cli(project, "users", "remove", "fay").exit_code == 0
    with RunStore.open(db_url(project)) as store:
        users = UserStore(store)
        assert users.by_name("fay") is None
        assert users.user_for_token(token) is None
        actions = [e.action for e in users.audit_entries()]
    assert {"user_add", "token_create", "user_remove"} <= set(actions)
    gone = cli(project, "users", "remove", "fay")
    assert gone.exit_code == 1 and "no user `fay`" in gone.output


def test_password_and_role_changes_end_sessions_and_refuse_bad_input(project: Path) -> None:
    cli(project, "users", "add", "gus", "--role", "operator", "--password-stdin", stdin=PASSWORD)
    with RunStore.open(db_url(project)) as store:
        gus = UserStore(store).by_name("gus")
        assert gus is not None
        sessions = SessionStore(store, SessionLifetimes(timedelta(hours=1), timedelta(hours=8)))
        session = sessions.start(gus.id)
    changed = cli(project, "users", "password", "gus", "--password-stdin", stdin="new password 2\n")
    assert changed.exit_code == 0, changed.output
    with RunStore.open(db_url(project)) as store:
        users = UserStore(store)
        assert users.authenticate("gus", PASSWORD) is None
        assert users.authenticate("gus", "new password 2") is not None
        sessions = SessionStore(store, sessions.lifetimes)
        assert sessions.user_for(session) is None
        session = sessions.start(gus.id)
    same = cli(project, "users", "role", "gus", "operator")
    assert same.exit_code == 0 and "already has the operator role" in same.output
    with RunStore.open(db_url(project)) as store:
        assert SessionStore(store, sessions.lifetimes).user_for(session) is not None
    assert cli(project, "users", "role", "gus", "viewer").exit_code == 0
    with RunStore.open(db_url(project)) as store:
        assert SessionStore(store, sessions.lifetimes).user_for(session) is None
        assert UserStore(store).by_name("gus").role is Role.VIEWER  # type: ignore[union-attr]

    short = cli(project, "users", "password", "gus", "--password-stdin", stdin="short\n")
    assert short.exit_code == 1 and "at least 8 characters" in short.output
    nobody = cli(project, "users", "password", "nobody", "--password-stdin", stdin=PASSWORD)
    assert nobody.exit_code == 1 and "no user `nobody`" in nobody.output
    bad_role = cli(project, "users", "role", "gus", "root")
    assert bad_role.exit_code == 1 and "unknown role `root`" in bad_role.output
    assert "Traceback" not in short.output + nobody.output + bad_role.output
