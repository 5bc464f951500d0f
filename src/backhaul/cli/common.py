"""What every CLI command shares: the project option, consoles, error handling."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated
from typing import Any
from typing import TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from backhaul.errors import BackhaulError
from backhaul.errors import ConfigErrors

F = TypeVar("F", bound=Callable[..., Any])
ProjectDir = Annotated[
    Path,
    typer.Option(
        "--project-dir", "-C", metavar="DIR", help="The project folder (holds backhaul.yml)."
    ),
]
LogFormatOption = Annotated[
    str,
    typer.Option(
        "--log-format",
        metavar="text|json",
        help="Log lines as `text` or `json` (one object a line, with run_id and sync).",
    ),
]


def log_format(value: str) -> Any:
    """``value`` checked as a log format (``text`` or ``json``)."""
    if value not in ("text", "json"):
        raise BackhaulError(f"--log-format takes `text` or `json`, not `{value}`")
    return value


def _console(stderr: bool = False) -> Console:
    console = Console(stderr=stderr, highlight=False, soft_wrap=True)
    if not console.is_terminal:
        console.width = 160  # logs and CI: wide tables rather than wrapped cells
    return console


def handles_errors(fn: F) -> F:
    """Turn Backhaul errors into one clear message and the documented exit code."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConfigErrors as exc:
            err = _console(stderr=True)
            for e in exc.errors:
                err.print(f"[red]error:[/] {escape(e.message)}")
            raise typer.Exit(2) from None
        except BackhaulError as exc:
            _console(stderr=True).print(f"[red]error:[/] {escape(exc.message)}")
            raise typer.Exit(exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


def _load(project_dir: Path, *, isolate: bool = False) -> Any:
    from backhaul.api import load_project

    return load_project(project_dir, isolate=isolate)


SelectOption = Annotated[
    list[str] | None,
    typer.Option(
        "--select",
        "-s",
        metavar="SELECTOR",
        help="Syncs to choose: names (wildcards * ?), tag:T, model:M, destination:D; "
        "+ before/after adds a sequence's upstream/downstream syncs; commas intersect. "
        "Repeatable.",
    ),
]
ExcludeOption = Annotated[
    list[str] | None,
    typer.Option(
        "--exclude", metavar="SELECTOR", help="Syncs to leave out, chosen the same way. Repeatable."
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print JSON (shapes in docs/cli.md) instead of a table.")
]


def print_json(data: Any) -> None:
    """``data`` as indented JSON on stdout; times as ISO 8601 text."""
    import json

    print(json.dumps(data, indent=2, default=_json_default, allow_nan=False))


def _json_default(value: Any) -> Any:
    from datetime import datetime
    from enum import Enum

    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return value.as_posix()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def run_json(run: Any) -> dict[str, Any]:
    """A stored run (``RunRecord``) as the JSON object ``runs --json`` and ``status --json``
    print."""
    return {
        "run_id": run.run_id,
        "sync": run.sync,
        "status": run.status.value,
        "trigger": run.trigger,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "duration_s": round(run.duration_s, 3),
        "full_resync": run.full_resync,
        "git_commit": run.git_commit,
        "git_dirty": run.git_dirty,
        "wait_s": run.wait_s,
        "counts": run.counts.as_dict(),
        "error": run.error,
    }
