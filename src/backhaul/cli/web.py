"""`backhaul serve` and `backhaul users ...`: run the web app and manage who may use it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Annotated

import typer

from backhaul.cli.common import JsonOption
from backhaul.cli.common import LogFormatOption
from backhaul.cli.common import ProjectDir
from backhaul.cli.common import _console
from backhaul.cli.common import _load
from backhaul.cli.common import handles_errors
from backhaul.cli.common import log_format
from backhaul.cli.common import print_json
from backhaul.errors import BackhaulError

if TYPE_CHECKING:
    from backhaul.web.auth import Role
    from backhaul.web.users import UserStore

users_app = typer.Typer(
    rich_markup_mode=None, help="Users and API tokens of the web app.", no_args_is_help=True
)
token_app = typer.Typer(
    rich_markup_mode=None, help="API tokens for the REST API.", no_args_is_help=True
)
users_app.add_typer(token_app, name="token")


PasswordStdinOption = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from stdin (scripts).")
]

# Idle keep-alive connections stay open this long. uvicorn's 5 s default closes them while
# a client (or a proxy in front) may be about to reuse one, which the client sees as a
# connection reset; proxies keep theirs for 60 s, so stay above that.
KEEP_ALIVE_S = 75


@handles_errors
def serve(
    project_dir: ProjectDir = Path("."),
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Server processes. Each has its own run manager: see docs/web.md before "
            "using more than 1.",
        ),
    ] = 1,
    access_log: Annotated[
        bool, typer.Option("--access-log/--no-access-log", help="Log every request.")
    ] = True,
    log_fmt: LogFormatOption = "text",
    scheduler: Annotated[
        bool,
        typer.Option(
            "--scheduler/--no-scheduler",
            help="Also run the scheduler (default). Turn it off when `backhaul scheduler` "
            "runs elsewhere.",
        ),
    ] = True,
    trusted_proxy: Annotated[
        list[str] | None,
        typer.Option(
            "--trusted-proxy",
            metavar="ADDRESS",
            help="Address or network (10.0.0.5, 10.1.0.0/16) of a reverse proxy whose "
            "X-Forwarded-For/-Proto headers are believed; repeat for more. Replaces "
            "web.trusted_proxies of backhaul.yml. Default: none.",
        ),
    ] = None,
    session_idle_timeout: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="SECONDS",
            help="Seconds a session may go unused (default: backhaul.yml, else 3600).",
        ),
    ] = None,
    session_max_age: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="SECONDS",
            help="Seconds a session lasts after sign-in (default: backhaul.yml, else 28800).",
        ),
    ] = None,
) -> None:
    """Serve the web app and the REST API (sign in with a user from `backhaul users add`)."""
    import os

    import uvicorn

    from backhaul.config.models import check_proxy_address
    from backhaul.observe.logs import setup_logging
    from backhaul.web.app import PROJECT_ENV
    from backhaul.web.app import SETTINGS_ENV
    from backhaul.web.app import WebSettings
    from backhaul.web.app import close_app
    from backhaul.web.app import create_app

    setup_logging(log_format(log_fmt))
    proxies: list[str] = []
    for value in trusted_proxy or []:
        try:
            proxies.append(check_proxy_address(value))
        except ValueError as exc:
            raise BackhaulError(f"--trusted-proxy: {exc}") from None
    settings = WebSettings.for_project(
        _load(project_dir),
        trusted_proxies=proxies or None,
        session_idle_timeout=session_idle_timeout,
        session_max_age=session_max_age,
    )
    # Built here even with several workers: it migrates the store and creates the signing
    # key once, before the workers start and would race to create it.
    app = create_app(project_dir, settings=settings, scheduler=scheduler and workers == 1)
    err = _console(stderr=True)
    if not app.state.users.all():
        err.print(
            "[yellow]note:[/] no users yet: create one with `backhaul users add NAME --role admin`"
        )
    if settings.trusted_proxies:
        err.print(f"trusting X-Forwarded-For/-Proto from {', '.join(settings.trusted_proxies)}")
    options = {
        "host": host,
        "port": port,
        "log_level": "info",
        "log_config": None,  # uvicorn's records go through Backhaul's handler (text or json)
        "access_log": access_log,
        # The app believes forwarded headers from the trusted proxies only (web.trusted_proxies);
        # uvicorn's own handling would trust 127.0.0.1 or $FORWARDED_ALLOW_IPS as well.
        "proxy_headers": False,
        "timeout_keep_alive": KEEP_ALIVE_S,
    }
    err.print(f"serving on http://{host}:{port}/ (Ctrl-C to stop)")
    if scheduler:
        mode = "queueing runs for workers" if app.state.project.config.scheduler.queue else ""
        err.print("running the scheduler" + (f" ({mode})" if mode else ""))
    if workers == 1:
        uvicorn.run(app, **options)  # type: ignore[arg-type]
        return
    close_app(app)
    os.environ[PROJECT_ENV] = str(project_dir.resolve())
    os.environ[SETTINGS_ENV] = settings.model_dump_json()
    with _scheduler_beside(project_dir, scheduler):
        uvicorn.run(
            "backhaul.web.app:app_from_env",
            factory=True,
            workers=workers,
            **options,  # type: ignore[arg-type]
        )


@contextmanager
def _scheduler_beside(project_dir: Path, on: bool) -> Iterator[None]:
    """With several server processes, one scheduler runs in the parent process."""
    if not on:
        yield
        return
    import threading

    from backhaul.api import open_store
    from backhaul.cli.schedule import open_scheduler

    project = _load(project_dir)
    stop = threading.Event()
    with open_store(project) as store, open_scheduler(project, store) as found:
        thread = threading.Thread(target=found.run_forever, args=(stop,), daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(30)


@contextmanager
def _users(project_dir: Path) -> Iterator[UserStore]:
    """The project's web users, in its metadata database, which is closed after use."""
    from backhaul.state.store import RunStore
    from backhaul.web.users import UserStore

    project = _load(project_dir)
    with RunStore.open(project.metadata_url, project.row_logs) as store:
        yield UserStore(store)


def _audit(users: UserStore, action: str, target: str, **details: object) -> None:
    """Record a change made on the command line: no signed-in user made it."""
    users.audit(None, action, target, {**details, "via": "cli"})


def _no_user(username: str) -> BackhaulError:
    return BackhaulError(f"no user `{username}`; list them with `backhaul users list`")


def _role(name: str) -> Role:
    from backhaul.web.auth import Role

    try:
        return Role(name)
    except ValueError:
        raise BackhaulError(
            f"unknown role `{name}`: use {', '.join(r.value for r in Role)}"
        ) from None


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = typer.prompt("Password", hide_input=True)
    second = typer.prompt("Repeat the password", hide_input=True)
    if first != second:
        raise BackhaulError("the passwords differ; try again")
    return str(first)


@users_app.command("add")
@handles_errors
def add(
    username: Annotated[str, typer.Argument(help="Sign-in name.")],
    role: Annotated[str, typer.Option(help="viewer, operator, editor or admin.")] = "viewer",
    password_stdin: PasswordStdinOption = False,
    project_dir: ProjectDir = Path("."),
) -> None:
    """Create a user (the password is asked twice, or read from stdin)."""
    chosen = _role(role)
    password = _read_password(password_stdin)
    with _users(project_dir) as users:
        user = users.add(username, password, chosen)
        _audit(users, "user_add", user.username, role=chosen.value)
    _console().print(f"created user {user.username} ({user.role.value})")


@users_app.command("list")
@handles_errors
def list_users(project_dir: ProjectDir = Path("."), as_json: JsonOption = False) -> None:
    """Every user with their role and tokens."""
    from rich.table import Table

    with _users(project_dir) as users:
        tokens = users.tokens()
        found = [
            (
                u.username,
                u.role.value,
                [t.name for t in tokens if t.username == u.username and t.revoked_at is None],
            )
            for u in users.all()
        ]
    if as_json:
        print_json([{"user": n, "role": r, "active_tokens": t} for n, r, t in found])
        return
    table = Table("user", "role", "active tokens")
    for name, role, names in found:
        table.add_row(name, role, ", ".join(names))
    _console().print(table)


@users_app.command("remove")
@handles_errors
def remove(
    username: Annotated[str, typer.Argument(help="The user to delete.")],
    project_dir: ProjectDir = Path("."),
) -> None:
    """Delete a user and their API tokens."""
    with _users(project_dir) as users:
        if not users.remove(username):
            raise _no_user(username)
        _audit(users, "user_remove", username)
    _console().print(f"removed user {username}")


@users_app.command("password")
@handles_errors
def password(
    username: Annotated[str, typer.Argument(help="Whose password.")],
    password_stdin: PasswordStdinOption = False,
    project_dir: ProjectDir = Path("."),
) -> None:
    """Set a new password and sign the user out everywhere (API tokens keep working)."""
    new = _read_password(password_stdin)
    with _users(project_dir) as users:
        if not users.set_password(username, new):
            raise _no_user(username)
        _audit(users, "user_password", username)
    _console().print(f"changed the password of {username}; their sessions have ended")


@users_app.command("role")
@handles_errors
def role(
    username: Annotated[str, typer.Argument(help="Whose role.")],
    new_role: Annotated[str, typer.Argument(help="viewer, operator, editor or admin.")],
    project_dir: ProjectDir = Path("."),
) -> None:
    """Change a user's role; a change signs them out everywhere."""
    chosen = _role(new_role)
    with _users(project_dir) as users:
        before = users.by_name(username)
        if before is None or not users.set_role(username, chosen):
            raise _no_user(username)
        _audit(users, "user_role", username, role=chosen.value)
    if before.role is chosen:
        _console().print(f"{username} already has the {chosen.value} role")
    else:
        _console().print(f"{username} is now {chosen.value}; their sessions have ended")


@users_app.command("sign-out")
@handles_errors
def sign_out(
    username: Annotated[str, typer.Argument(help="Whose sessions to end.")],
    project_dir: ProjectDir = Path("."),
) -> None:
    """End every web session of a user at once (API tokens keep working)."""
    with _users(project_dir) as users:
        ended = users.end_sessions(username)
        if ended is None:
            raise _no_user(username)
        _audit(users, "user_sign_out", username, sessions_ended=ended)
    _console().print(f"ended {ended} session(s) of {username}")


@token_app.command("create")
@handles_errors
def token_create(
    username: Annotated[str, typer.Argument(help="Whose token (it acts with their role).")],
    name: Annotated[str, typer.Option(help="What the token is for.")],
    project_dir: ProjectDir = Path("."),
) -> None:
    """Create an API token and print it once (only a hash is kept)."""
    with _users(project_dir) as users:
        token, info = users.create_token(username, name)
        _audit(users, "token_create", username, token_id=info.id, name=name)
    _console(stderr=True).print(
        f"token {info.id} for {username}; copy it now, it is not shown again:"
    )
    print(token)


@token_app.command("revoke")
@handles_errors
def token_revoke(
    token_id: Annotated[int, typer.Argument(help="Token id (see `backhaul users token list`).")],
    project_dir: ProjectDir = Path("."),
) -> None:
    """Revoke an API token."""
    with _users(project_dir) as users:
        if not users.revoke_token(token_id):
            raise BackhaulError(f"no active token {token_id}")
        _audit(users, "token_revoke", str(token_id))
    _console().print(f"revoked token {token_id}")


@token_app.command("list")
@handles_errors
def token_list(project_dir: ProjectDir = Path(".")) -> None:
    """Every API token (never the token itself)."""
    from rich.table import Table

    with _users(project_dir) as users:
        table = Table("id", "user", "name", "starts with", "created", "revoked")
        for t in users.tokens():
            table.add_row(
                str(t.id),
                t.username,
                t.name,
                t.prefix + "…",
                t.created_at.strftime("%Y-%m-%d %H:%M"),
                t.revoked_at.strftime("%Y-%m-%d %H:%M") if t.revoked_at else "",
            )
    _console().print(table)
