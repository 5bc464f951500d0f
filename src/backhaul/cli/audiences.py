"""``backhaul models``, ``backhaul audience NAME`` and ``backhaul test [NAMES]``.

``test`` exit codes: 0 every case passed (or there are none), 1 a case failed, 2 a
configuration problem.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from backhaul.cli.common import JsonOption
from backhaul.cli.common import ProjectDir
from backhaul.cli.common import _console
from backhaul.cli.common import _load
from backhaul.cli.common import handles_errors
from backhaul.cli.common import print_json
from backhaul.errors import ConfigError


@handles_errors
def models_command(project_dir: ProjectDir = Path("."), as_json: JsonOption = False) -> None:
    """Every model with its source and key; audiences are models too."""
    project = _load(project_dir)
    if as_json:
        print_json(
            [
                {
                    "model": name,
                    "kind": "audience" if model.audience else "model",
                    "audience_schema": (project.audiences[name].schema if model.audience else None),
                    "source": model.config.source,
                    "primary_key": list(model.config.primary_key),
                    "used_by": sorted(
                        s.name for s in project.syncs.values() if s.config.model == name
                    ),
                }
                for name, model in sorted(project.models.items())
            ]
        )
        return
    table = Table("model", "kind", "source", "primary key", "used by")
    for name, model in sorted(project.models.items()):
        used = sorted(s.name for s in project.syncs.values() if s.config.model == name)
        kind = f"audience ({project.audiences[name].schema})" if model.audience else "model"
        table.add_row(
            escape(name),
            kind,
            escape(model.config.source),
            escape(", ".join(model.config.primary_key)),
            escape(", ".join(used)),
        )
    _console().print(table)


def _now(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--now takes a time like 2024-06-01T12:00:00, not `{text}`") from None


@handles_errors
def audience_command(
    name: Annotated[str, typer.Argument(help="The audience.")],
    project_dir: ProjectDir = Path("."),
    sql: Annotated[bool, typer.Option("--sql", help="Print the compiled SQL only.")] = False,
    sample: Annotated[int, typer.Option(help="Sample rows to show (personal data masked).")] = 0,
    breakdown: Annotated[
        str | None, typer.Option(help="Count members per value of this parent column.")
    ] = None,
    now: Annotated[
        str | None, typer.Option(help="Count relative dates from this time (default: now).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """An audience's size (per condition and per split), and optionally a sample or breakdown."""
    from backhaul.audiences.explore import open_explorer

    project = _load(project_dir)
    audience = project.audiences.get(name)
    if audience is None:
        known = ", ".join(sorted(project.audiences)) or "none"
        raise ConfigError(f"unknown audience `{name}` (known: {known})")
    with open_explorer(project, audience.schema, now=_now(now)) as ex:
        if sql:
            print(ex.sql(name, audience.config))
            return
        size = ex.size(name, audience.config)
        rows = ex.sample(name, audience.config, sample) if sample else None
        parts = ex.breakdown(name, audience.config, breakdown) if breakdown else None
    if as_json:
        data: dict[str, Any] = {
            "parent": size.parent,
            "matched": size.matched,
            "holdout": size.holdout,
            "members": size.members,
            "splits": size.splits,
            "conditions": [c.__dict__ for c in size.conditions],
        }
        if rows is not None:
            data["sample"] = {"columns": rows.columns, "rows": rows.rows}
        if parts is not None:
            data["breakdown"] = {"values": parts.values, "other": parts.other}
        print(json.dumps(data, indent=2, default=str))
        return
    console = _console()
    console.print(
        f"[bold]{escape(name)}[/]: {size.members:,} members of {size.parent:,} "
        f"(matched {size.matched:,}, holdout {size.holdout:,})"
    )
    if size.conditions:
        table = Table("condition", "alone", "with the ones above", title_justify="left")
        for c in size.conditions:
            table.add_row(escape(c.label), f"{c.alone:,}", f"{c.cumulative:,}")
        console.print(table)
    if size.splits:
        console.print("splits: " + ", ".join(f"{escape(k)} {v:,}" for k, v in size.splits.items()))
    if rows is not None:
        table = Table(*(escape(c) for c in rows.columns), title="sample", title_justify="left")
        for row in rows.rows:
            table.add_row(*("" if v is None else escape(str(v)) for v in row))
        console.print(table)
    if parts is not None:
        table = Table(escape(parts.column), "members", title="breakdown", title_justify="left")
        for value, count in parts.values:
            table.add_row("null" if value is None else escape(str(value)), f"{count:,}")
        if parts.other:
            table.add_row("(other values)", f"{parts.other:,}")
        console.print(table)


@handles_errors
def test_command(
    names: Annotated[list[str] | None, typer.Argument(help="Audiences (default: all).")] = None,
    project_dir: ProjectDir = Path("."),
) -> None:
    """Run the test cases of audience files on in-memory DuckDB (no warehouse needed)."""
    from backhaul.audiences.cases import run_tests

    project = _load(project_dir)
    results = run_tests(project, list(names or []))
    console = _console()
    if not results:
        console.print("no audience test cases (add `tests:` to an audience file)")
        raise typer.Exit(0)
    for r in results:
        mark = "[green]PASS[/]" if r.passed else "[red]FAIL[/]"
        console.print(f"{mark}  {escape(r.audience)}: {escape(r.case)}")
        if r.error:
            console.print(f"        error: {escape(r.error)}")
        if r.missing:
            shown = ", ".join(escape(str(k)) for k in r.missing)
            console.print(f"        [red]-[/] expected in, not selected: {shown}")
        if r.unexpected:
            shown = ", ".join(escape(str(k)) for k in r.unexpected)
            console.print(f"        [red]+[/] expected out, but selected: {shown}")
    failed = sum(not r.passed for r in results)
    console.print(f"{len(results) - failed} passed, {failed} failed")
    raise typer.Exit(1 if failed else 0)


__all__ = ["audience_command", "models_command", "test_command"]
