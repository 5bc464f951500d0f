"""``backhaul test-connection NAME``: open a source or a destination and report how it went.

Exit codes: 0 reachable, 1 unreachable (or refused the query), 2 a configuration problem
(unknown name, unset variable, missing driver, refused credentials of a destination).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from backhaul.cli.common import print_json
from backhaul.errors import BackhaulError
from backhaul.errors import ConfigError
from backhaul.errors import DestinationError
from backhaul.errors import FailureType

# Queries that name the server's version, for sources without ``server_version()``.
VERSION_SQL = {"duckdb": "SELECT 'DuckDB ' || version()"}


@dataclass(frozen=True)
class ConnectionReport:
    """The outcome of one successful connection test."""

    kind: str  # "source" or "destination"
    name: str
    type: str
    version: str | None
    latency_ms: float


def check_source(project: Any, name: str, definition: Any = None) -> ConnectionReport:
    """Open source ``name`` with its secrets resolved, run ``check()`` and a trivial query.

    ``definition`` (a :class:`~backhaul.config.project.SourceDef`) is tried in place of the
    saved one: the web editor tests a file before it is saved.

    Raises:
        ConfigError: The source's configuration cannot be used (unset variable, no driver).
        SourceError: The warehouse cannot be reached or refused the query.
    """
    from backhaul.config.secrets import resolve
    from backhaul.observe.redact import Redactor

    src = definition or project.sources[name]
    config, secrets = resolve(src.config, positions=src.positions)
    redactor = Redactor(secrets)
    started = time.perf_counter()
    handle: Any = None
    try:
        handle = project.registry.source(src.config.type)(config, project.root)
        handle.check()
        if hasattr(handle, "server_version"):
            version: str | None = str(handle.server_version())
            handle.stream("SELECT 1").read_all()
        else:
            sql = VERSION_SQL.get(src.config.type, "SELECT 1")
            value = handle.stream(sql).read_all().column(0).to_pylist()
            version = str(value[0]) if value and sql != "SELECT 1" else None
    except BackhaulError as exc:
        exc.message = redactor.text(exc.message) or ""
        raise
    except Exception as exc:  # a driver error our source did not translate
        text = redactor.text(f"{type(exc).__name__}: {exc}") or ""
        raise BackhaulError(text.splitlines()[0] if text else type(exc).__name__) from None
    finally:
        if handle is not None:
            handle.close()
    elapsed = (time.perf_counter() - started) * 1000
    return ConnectionReport("source", name, src.config.type, version, elapsed)


def check_destination(project: Any, name: str, definition: Any = None) -> ConnectionReport:
    """Open destination ``name`` with its secrets resolved and await its ``check()``.

    ``definition`` (a :class:`~backhaul.config.project.DestinationDef`) as in
    :func:`check_source`.

    Raises:
        ConfigError: The configuration cannot be used.
        DestinationError: The destination is unreachable or refused the credentials.
    """
    from backhaul.calls import MemoryRecorder
    from backhaul.config.secrets import resolve
    from backhaul.destinations.base import DestinationContext
    from backhaul.observe.redact import Redactor

    dest = definition or project.destinations[name]
    config, secrets = resolve(dest.config, positions=dest.positions)
    redactor = Redactor(secrets)
    context = DestinationContext(project.root, MemoryRecorder(), "", "", tuple(secrets))
    started = time.perf_counter()

    async def probe() -> None:
        handle = project.registry.destination(dest.config.type)(config, context)
        try:
            await handle.check()
        finally:
            await handle.close()

    try:
        asyncio.run(probe())
    except BackhaulError as exc:
        exc.message = redactor.text(exc.message) or ""
        raise
    except Exception as exc:
        text = redactor.text(f"{type(exc).__name__}: {exc}") or ""
        raise BackhaulError(text.splitlines()[0] if text else type(exc).__name__) from None
    elapsed = (time.perf_counter() - started) * 1000
    return ConnectionReport("destination", name, dest.config.type, None, elapsed)


def exit_code(exc: BackhaulError) -> int:
    """2 for what the user must fix in the configuration, 1 for an unreachable service."""
    if isinstance(exc, ConfigError):
        return 2
    # A destination that refused (bad token, unknown object, a path that is not a file) is
    # configured wrong; one that could not be reached failed with a TRANSIENT error.
    if isinstance(exc, DestinationError) and exc.failure is FailureType.CONFIG:
        return 2
    return 1


def connection_command(
    name: Annotated[str, typer.Argument(help="A source or destination name.")],
    project_dir: Annotated[
        Path, typer.Option("--project-dir", "-C", help="The project folder (holds backhaul.yml).")
    ] = Path("."),
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON: a list of {kind, name, ok, ...}.")
    ] = False,
) -> None:
    """Open a source or destination, check it, and print the server version and latency."""
    out = Console(highlight=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        from backhaul.api import load_project

        project = load_project(project_dir)
        checks = []
        if name in project.sources:
            checks.append(("source", check_source))
        if name in project.destinations:
            checks.append(("destination", check_destination))
        if not checks:
            known = sorted({*project.sources, *project.destinations})
            raise ConfigError(
                f"no source or destination named `{name}` (known: {', '.join(known) or 'none'})"
            )
    except ConfigError as exc:
        for line in exc.message.splitlines():
            err.print(f"[red]error:[/] {escape(line)}")
        raise typer.Exit(2) from None
    code = 0
    found: list[dict[str, object]] = []
    for kind, check in checks:
        try:
            report = check(project, name)
        except BackhaulError as exc:
            first = exc.message.splitlines()[0] if exc.message else type(exc).__name__
            err.print(f"[red]error:[/] {kind} `{name}`: {escape(first)}")
            code = max(code, exit_code(exc))
            found.append({"kind": kind, "name": name, "ok": False, "error": first})
            continue
        found.append(
            {
                "kind": kind,
                "name": name,
                "ok": True,
                "type": report.type,
                "version": report.version,
                "latency_ms": round(report.latency_ms, 1),
            }
        )
        if as_json:
            continue
        version = f"{report.version}, " if report.version else ""
        out.print(
            f"[green]ok[/]: {kind} `{name}` ({report.type}): {escape(version)}{report.latency_ms:.0f} ms"
        )
    if as_json:
        print_json(found)
    if code:
        raise typer.Exit(code)


__all__ = ["ConnectionReport", "check_destination", "check_source", "connection_command"]
