"""dbt commands and options: ``run --after-dbt``, ``init --from-dbt``, ``dbt exposures``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from typing import Annotated

import typer
from rich.console import Console

from backhaul.cli.common import ProjectDir
from backhaul.cli.common import _console
from backhaul.cli.common import _load
from backhaul.cli.common import handles_errors

if TYPE_CHECKING:
    from backhaul.config.project import Project
    from backhaul.config.project import SyncDef

dbt_app = typer.Typer(
    rich_markup_mode=None, help="Work with a dbt project: exposures for Backhaul syncs."
)


def after_dbt_syncs(
    project: Project, run_results: Path | None, candidates: list[SyncDef], console: Console
) -> list[SyncDef]:
    """The candidate syncs whose dbt models the dbt run rebuilt; prints which and why.

    Args:
        project: The loaded project.
        run_results: Path of run_results.json (or a dbt project folder); None for the
            one in ``dbt_project``'s target folder.
        candidates: The syncs the command line selected (all enabled ones by default).
        console: Where the choices are printed.
    """
    from backhaul.dbt.run_results import choose_syncs
    from backhaul.dbt.run_results import default_path
    from backhaul.dbt.run_results import load_run_results

    path = run_results if run_results is not None else default_path(project)
    results = load_run_results(path)
    command = f"`dbt {results.command}`" if results.command else "dbt"
    console.print(f"after {command} ({results.path}, {results.generated_at or 'no time'}):")
    choices = choose_syncs(project, results, candidates)
    for choice in choices:
        mark = "[green]run [/]" if choice.run else "[dim]skip[/]"
        console.print(f"  {mark} {choice.sync}: {choice.reason}")
    chosen = {c.sync for c in choices if c.run}
    if not chosen:
        console.print("no sync reads a model that dbt rebuilt: nothing to run")
    return [s for s in candidates if s.name in chosen]


def init_from_dbt(
    directory: Path, dbt_dir: Path, selectors: list[str], name: str | None, force: bool
) -> None:
    """``backhaul init --from-dbt``: write models for the selected dbt models and say so."""
    from backhaul.dbt.scaffold import TODO_KEY
    from backhaul.dbt.scaffold import init_from_dbt

    written = init_from_dbt(directory, dbt_dir, selectors, name=name, force=force)
    console = _console()
    todo = []
    for path in written:
        console.print(f"created {path}")
        if path.suffix == ".yml" and f"primary_key: {TODO_KEY}" in path.read_text("utf-8"):
            todo.append(path.stem)
    if todo:
        console.print(
            f"\n[yellow]set `primary_key`[/] in models {', '.join(todo)}: dbt has no "
            "unique + not_null test to take it from (`backhaul validate` lists them)"
        )
    console.print(f"\nNext: add a destination and a sync, then `backhaul validate -C {directory}`")


@dbt_app.command("exposures")
@handles_errors
def exposures(
    project_dir: ProjectDir = Path("."),
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the YAML to this file (default: print).")
    ] = None,
    owner: Annotated[
        str | None, typer.Option("--owner", help="`Name <email>`; default: owner in backhaul.yml.")
    ] = None,
) -> None:
    """Write dbt exposures for the syncs whose models read dbt models."""
    from backhaul.dbt.exposures import build_exposures

    result = build_exposures(_load(project_dir), owner=owner)
    err = _console(stderr=True)
    for sync, why in result.skipped.items():
        err.print(f"skipped {sync}: {why}")
    text = result.yaml()
    if out is None:
        print(text, end="")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    count = len(result.data["exposures"])
    err.print(f"wrote {count} exposure{'s' if count != 1 else ''} to {out}")
