"""What every CLI command shares: the project option, consoles, error handling."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from backhaul.errors import BackhaulError, ConfigErrors

F = TypeVar("F", bound=Callable[..., Any])
ProjectDir = Annotated[
    Path, typer.Option("--project-dir", "-C", help="The project folder (holds backhaul.yml).")
]
LogFormatOption = Annotated[
    str,
    typer.Option(
        "--log-format",
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
