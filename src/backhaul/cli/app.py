"""The `backhaul` command: parses arguments, calls the library, renders the result.

Exit codes: 0 success, 1 a run failed (or a guard stopped it), 2 a configuration error,
3 a run finished with rejected or invalid rows.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Annotated
from typing import Any

import typer
from rich.markup import escape
from rich.table import Column
from rich.table import Table

from backhaul.cli.alerts import alerts_app
from backhaul.cli.approval import approvals_command
from backhaul.cli.approval import approve_command
from backhaul.cli.audiences import audience_command
from backhaul.cli.audiences import models_command
from backhaul.cli.audiences import test_command
from backhaul.cli.common import ExcludeOption
from backhaul.cli.common import JsonOption
from backhaul.cli.common import ProjectDir
from backhaul.cli.common import SelectOption
from backhaul.cli.common import _console
from backhaul.cli.common import _load
from backhaul.cli.common import handles_errors
from backhaul.cli.common import print_json
from backhaul.cli.common import run_json
from backhaul.cli.connection import connection_command
from backhaul.cli.dbt import dbt_app
from backhaul.cli.review import diff_config_command
from backhaul.cli.sandbox import sandbox_command
from backhaul.cli.schedule import pause_command
from backhaul.cli.schedule import resume_command
from backhaul.cli.schedule import scheduler_command
from backhaul.cli.schedule import schedules_command
from backhaul.cli.schedule import worker_command
from backhaul.cli.web import serve
from backhaul.cli.web import users_app
from backhaul.errors import BackhaulError
from backhaul.errors import ConfigError
from backhaul.errors import ConfigErrors
from backhaul.gitinfo import commit_text

if TYPE_CHECKING:
    from backhaul.calls import HttpCall
    from backhaul.state.reader import RunRecord
    from backhaul.summary import RowOutcome


def error_column() -> Column:
    """The error column of a table: wide enough that a file name is never cut short."""
    return Column("error", min_width=32, overflow="fold")


app = typer.Typer(
    rich_markup_mode=None,
    name="backhaul",
    help="Reverse ETL: keep operational tools in step with SQL models in your warehouse.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"backhaul {version('backhaul')}")
        raise typer.Exit(0)


@app.callback()
def main_options(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", "-V", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            "-t",
            metavar="NAME",
            envvar="BACKHAUL_TARGET",
            help="The environment of `targets:` in backhaul.yml to use (sources, destinations, "
            "state); also BACKHAUL_TARGET.",
        ),
    ] = None,
) -> None:
    """Reverse ETL: keep operational tools in step with SQL models in your warehouse."""
    if target:
        # Read by every project load of this process and of the workers it starts.
        os.environ["BACKHAUL_TARGET"] = target


@app.command()
@handles_errors
def init(
    directory: Annotated[Path, typer.Argument(help="Folder to create the project in.")] = Path("."),
    name: Annotated[str | None, typer.Option(help="Project name (default: folder name).")] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing project.")] = False,
    from_dbt: Annotated[
        Path | None,
        typer.Option("--from-dbt", help="A dbt project folder: write models for its models."),
    ] = None,
    select: Annotated[
        list[str] | None,
        typer.Option("--select", help="With --from-dbt: dbt models by name or `tag:NAME`."),
    ] = None,
) -> None:
    """Create a new project with an example model, destination and sync."""
    from backhaul.config.scaffold import init_project

    if from_dbt is not None:
        from backhaul.cli.dbt import init_from_dbt

        return init_from_dbt(directory, from_dbt, list(select or []), name, force)
    written = init_project(directory, name, force=force)
    console = _console()
    for path in written:
        console.print(f"created {path}")
    console.print(f"\nNext: cd {directory} && backhaul validate && backhaul run --all")


@app.command()
@handles_errors
def validate(
    project_dir: ProjectDir = Path("."),
    offline: Annotated[bool, typer.Option(help="Skip checks that open the warehouse.")] = False,
    output: Annotated[
        str,
        typer.Option(
            "--format",
            metavar="text|json|github",
            help="`json`: {ok, errors: [{file, line, key, message}]}; `github`: workflow "
            "annotations (::error file=...) for pull requests.",
        ),
    ] = "text",
    as_json: Annotated[bool, typer.Option("--json", help="The same as --format json.")] = False,
    check_destinations: Annotated[
        bool,
        typer.Option(
            "--check-destinations",
            help="Also ask each destination, read-only: credentials, object, mapped fields "
            "and their types.",
        ),
    ] = False,
) -> None:
    """Check every file: keys, references, SQL, primary keys and mapped columns."""
    from backhaul.config.checks import check_project

    fmt = "json" if as_json else output
    if fmt not in ("text", "json", "github"):
        raise ConfigError(f"--format takes `text`, `json` or `github`, not `{fmt}`")
    if check_destinations and offline:
        raise ConfigError("--check-destinations opens the destinations: drop --offline")

    def checked(project: Any) -> list[ConfigError]:
        problems = check_project(project, open_sources=not offline)
        if check_destinations and not problems:
            from backhaul.config.destination_checks import check_destinations as ask

            enabled = sorted(n for n, s in project.syncs.items() if s.config.enabled)
            problems = [e for found in ask(project, enabled).values() for e in found]
        return problems

    if fmt == "text":
        project = _load(project_dir)
        problems = checked(project)
        if problems:
            raise ConfigErrors(problems)
        _console().print(
            f"[green]ok[/]: {len(project.sources)} sources, {len(project.models)} models, "
            f"{len(project.destinations)} destinations, {len(project.syncs)} syncs"
        )
        return
    try:
        problems = checked(_load(project_dir))
    except ConfigErrors as exc:
        problems = list(exc.errors)
    except ConfigError as exc:
        problems = [exc]
    if fmt == "json":
        errors = [
            {"file": e.file, "line": e.line, "key": e.key, "message": e.reason} for e in problems
        ]
        print_json({"ok": not problems, "errors": errors})
    else:
        for e in problems:
            print(_annotation(e))
    if problems:
        raise typer.Exit(2)


def _annotation(error: ConfigError) -> str:
    """A GitHub Actions workflow command that marks ``error`` on its file and line."""

    def escape_data(text: str) -> str:
        return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")

    def escape_property(text: str) -> str:
        return escape_data(text).replace(":", "%3A").replace(",", "%2C")

    props = []
    if error.file:
        props.append(f"file={escape_property(error.file)}")
        if error.line:
            props.append(f"line={error.line}")
    props.append(f"title={escape_property(error.key or 'backhaul validate')}")
    return f"::error {','.join(props)}::{escape_data(error.reason)}"


@app.command()
@handles_errors
def schema(
    out: Annotated[Path, typer.Option(help="Folder to write the JSON Schemas to.")] = Path(
        ".backhaul/schema"
    ),
    outputs: Annotated[
        bool,
        typer.Option(
            "--outputs", help="Also write the JSON Schema of each command's --json output."
        ),
    ] = False,
) -> None:
    """Write JSON Schemas of the project files, for editor completion."""
    from backhaul.config.schema import write_schemas

    for path in write_schemas(out):
        _console().print(f"wrote {path}")
    if outputs:
        from backhaul.cli.shapes import OUTPUTS
        from backhaul.cli.shapes import output_schema

        folder = out / "outputs"
        folder.mkdir(parents=True, exist_ok=True)
        for command in OUTPUTS:
            path = folder / f"{command.replace(' ', '-')}.schema.json"
            path.write_text(json.dumps(output_schema(command), indent=2) + "\n", encoding="utf-8")
            _console().print(f"wrote {path}")


@app.command()
@handles_errors
def plan(
    syncs: Annotated[
        list[str] | None,
        typer.Argument(metavar="SELECTOR", help="Syncs to plan (as --select; none: all)."),
    ] = None,
    project_dir: ProjectDir = Path("."),
    select: SelectOption = None,
    exclude: ExcludeOption = None,
    full_resync: Annotated[bool, typer.Option("--full-resync")] = False,
    sample: Annotated[int, typer.Option(help="Rows to show per kind of change.")] = 5,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print JSON: one object for one sync named exactly, else a list of them.",
        ),
    ] = False,
) -> None:
    """Dry run: what would be added, changed and removed. Nothing is sent."""
    from backhaul.api import plan as plan_sync
    from backhaul.cli.render import plan_table
    from backhaul.selection import parse_atom
    from backhaul.selection import select as choose

    project = _load(project_dir, isolate=True)
    words = [*(syncs or []), *(select or [])]
    names = choose(project, words, exclude or [])
    if not names:
        raise ConfigError("no sync selected: name one, or use --select")
    single = len(words) == 1 and parse_atom(words[0]).exact_name and len(names) == 1
    found: list[dict[str, object]] = []
    problems: list[ConfigError] = []
    for name in names:
        try:
            summary = plan_sync(project, name, full_resync=full_resync, sample=sample)
        except ConfigErrors as exc:
            problems += exc.errors
            continue
        if as_json:
            found.append(summary.plan_dict())
        else:
            plan_table(_console(), summary)
    if as_json and (found or not problems):
        print(json.dumps(found[0] if single and found else found, default=str, indent=2))
    if problems:
        raise ConfigErrors(problems)


@app.command()
@handles_errors
def run(
    syncs: Annotated[
        list[str] | None,
        typer.Argument(metavar="SELECTOR", help="Syncs to run (as --select; none: all)."),
    ] = None,
    project_dir: ProjectDir = Path("."),
    all_syncs: Annotated[bool, typer.Option("--all", help="Run every enabled sync.")] = False,
    select: SelectOption = None,
    exclude: ExcludeOption = None,
    full_resync: Annotated[
        bool, typer.Option("--full-resync", help="Resend every row (no deletes this run).")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Override the safety guards.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print run summaries as JSON.")] = False,
    after_dbt: Annotated[
        bool,
        typer.Option(
            "--after-dbt",
            help="Run only the syncs whose dbt models the last dbt run rebuilt (reads "
            "target/run_results.json of `dbt_project`).",
        ),
    ] = False,
    run_results: Annotated[
        Path | None,
        typer.Option("--run-results", help="With --after-dbt: this run_results.json instead."),
    ] = None,
    log_fmt: Annotated[
        str | None,
        typer.Option(
            "--log-format",
            metavar="text|json",
            help="Also log each run to stderr as `text` or `json` lines (with run_id and sync).",
        ),
    ] = None,
) -> None:
    """Run syncs: send what changed since the last run."""
    from backhaul.alerts import AlertSink
    from backhaul.api import open_store
    from backhaul.cli.render import RunReporter
    from backhaul.cli.render import runs_table
    from backhaul.engine.launch import run_many
    from backhaul.engine.launch import worst_exit_code
    from backhaul.observe.events import EventSink
    from backhaul.observe.events import tee
    from backhaul.schedule.timetable import Timetable
    from backhaul.selection import select as choose

    # A sync whose own file (or a file it uses) is invalid fails alone: the others run.
    project = _load(project_dir, isolate=True)
    words = [] if all_syncs else [*(syncs or []), *(select or [])]
    names = choose(project, words, exclude or [])
    broken = [n for n in names if n in project.broken_syncs]
    chosen = [project.syncs[n] for n in names if n not in broken]
    if after_dbt or run_results is not None:
        from backhaul.cli.dbt import after_dbt_syncs

        chosen = after_dbt_syncs(project, run_results, chosen, _console(stderr=as_json))
        if not chosen and not broken:
            raise typer.Exit(0)
    if not chosen and not broken:
        raise ConfigError("no sync selected: name one, use --all, or --select")
    reporter: EventSink = RunReporter(
        _console(stderr=as_json), quiet=False, errors=_console(stderr=True)
    )
    if log_fmt is not None:
        from backhaul.cli.common import log_format
        from backhaul.observe.logs import LogSink
        from backhaul.observe.logs import setup_logging

        setup_logging(log_format(log_fmt))
        reporter = tee(reporter, LogSink())
    with (
        open_store(project) as store,
        AlertSink.open(project, store, next_run=Timetable(project, store).expected) as alerts,
    ):
        # Each sync is checked as `validate` checks it; one that fails is recorded as a
        # failed run and the others still run.
        results = run_many(
            project,
            sorted([s.name for s in chosen] + broken),
            store=store,
            full_resync=full_resync,
            force=force,
            events=tee(reporter, alerts),
        )
    if as_json:
        print(json.dumps([r.as_dict() for r in results], indent=2))
    elif len(results) > 1:
        runs_table(_console(), results)
    raise typer.Exit(worst_exit_code(results))


@app.command()
@handles_errors
def status(
    project_dir: ProjectDir = Path("."),
    select: SelectOption = None,
    exclude: ExcludeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Every sync with its last run and snapshot size."""
    from backhaul.api import status as sync_status
    from backhaul.selection import select as choose
    from backhaul.state.snapshots import BUSY
    from backhaul.state.snapshots import DAMAGED

    project = _load(project_dir, isolate=True)
    wanted = set(choose(project, select or [], exclude or [], default_all=False))
    every = not select and not exclude
    found = [s for s in sync_status(project) if every or s.name in wanted]
    if as_json:

        def snapshot(n: int) -> str:
            return "busy" if n == BUSY else "damaged" if n == DAMAGED else "ok"

        print_json(
            [
                {
                    "sync": s.name,
                    "model": None if s.config_error else s.model,
                    "destination": None if s.config_error else s.destination,
                    "mode": None if s.config_error else s.mode,
                    "enabled": s.enabled,
                    "snapshot": snapshot(s.snapshot_rows),
                    "snapshot_rows": s.snapshot_rows if s.snapshot_rows >= 0 else None,
                    "pending_rejections": (
                        s.pending_rejections if s.pending_rejections >= 0 else None
                    ),
                    "config_error": s.config_error,
                    "last_run": run_json(s.last_run) if s.last_run else None,
                }
                for s in found
            ]
        )
        return
    table = Table(
        "sync",
        "model → destination",
        "mode",
        "last run",
        "status",
        "snapshot",
        "pending rejected",
        error_column(),
    )

    def count(n: int) -> str:
        return f"{n:,}" if n >= 0 else "busy" if n == BUSY else "damaged"

    for s in found:
        last = s.last_run
        error = s.config_error or (last.error if last else None) or ""
        table.add_row(
            s.name + ("" if s.enabled else " (disabled)"),
            "(invalid file)" if s.config_error else f"{s.model} → {s.destination}",
            s.mode,
            last.started_at.strftime("%Y-%m-%d %H:%M:%S") if last and last.started_at else "never",
            last.status.value if last else "",
            count(s.snapshot_rows),
            count(s.pending_rejections),
            escape(error),
        )
    _console().print(table)


@app.command()
@handles_errors
def runs(
    syncs: Annotated[
        list[str] | None,
        typer.Argument(metavar="SELECTOR", help="Syncs whose runs to list (as --select)."),
    ] = None,
    project_dir: ProjectDir = Path("."),
    select: SelectOption = None,
    exclude: ExcludeOption = None,
    status: Annotated[
        list[str] | None,
        typer.Option("--status", metavar="STATUS", help="Only runs in this status. Repeatable."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(help="Only runs started since: a duration (30m, 12h, 7d) or a time."),
    ] = None,
    trigger: Annotated[
        str | None, typer.Option(help="Only runs started this way: cli, schedule, web, api...")
    ] = None,
    limit: Annotated[int, typer.Option(help="How many runs.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """Recent runs, newest first: of every sync, or of the chosen ones, with filters."""
    from backhaul.api import open_store
    from backhaul.selection import select as choose
    from backhaul.summary import RunStatus

    project = _load(project_dir, isolate=True)
    words = [*(syncs or []), *(select or [])]
    chosen = choose(project, words, exclude or []) if words or exclude else None
    try:
        statuses = [RunStatus(s) for s in status or []]
    except ValueError:
        known = ", ".join(s.value for s in RunStatus)
        raise ConfigError(f"--status takes one of {known}") from None
    started = _since(since) if since is not None else None
    with open_store(project) as store:
        found = store.runs(
            limit=limit, syncs=chosen, statuses=statuses, since=started, trigger=trigger
        )
    if as_json:
        print_json([run_json(r) for r in found])
        return
    many = chosen is None or len(chosen) != 1
    table = Table(
        *(["sync"] if many else []),
        "run",
        "started",
        "status",
        "secs",
        "queried",
        "planned",
        "added",
        "changed",
        "removed",
        "skipped",
        "invalid",
        "rejected",
        error_column(),
        caption="added, changed, removed: rows the destination acknowledged",
    )
    for r in found:
        c = r.counts
        table.add_row(
            *([escape(r.sync)] if many else []),
            r.run_id,
            r.started_at.strftime("%Y-%m-%d %H:%M:%S") if r.started_at else "",
            r.status.value,
            f"{r.duration_s:.1f}",
            *(
                f"{v:,}"
                for v in (
                    c.queried,
                    c.planned,
                    c.delivered_added,
                    c.delivered_changed + c.delivered_retried,
                    c.delivered_removed,
                    c.skipped,
                    c.invalid,
                    c.rejected,
                )
            ),
            escape(r.error or ""),
        )
    _console().print(table)


def _since(text: str) -> datetime:
    """``30m``, ``12h``, ``7d`` ago, or an ISO time (UTC when it has no offset)."""
    import re
    from datetime import UTC
    from datetime import timedelta

    found = re.fullmatch(r"(\d+)\s*([smhdw])", text.strip())
    if found:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
        delta = timedelta(**{unit[found.group(2)]: int(found.group(1))})
        return datetime.now(UTC) - delta
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"--since takes a duration like 30m, 12h or 7d, or a time like "
            f"2026-01-31T08:00, not `{text}`"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@app.command("run-show")
@handles_errors
def run_show(
    run_id: Annotated[str, typer.Argument(help="A run id (or a unique prefix of 6+ chars).")],
    project_dir: ProjectDir = Path("."),
    limit: Annotated[int, typer.Option(help="How many rows and calls to list.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    key: Annotated[
        str | None,
        typer.Option(help="Find this row (by key; failing that, keys containing it)."),
    ] = None,
) -> None:
    """One run: counts, rejected rows with the destination's errors, and HTTP calls."""
    from backhaul.api import open_store
    from backhaul.state.reader import store_if_log_unreadable

    project = _load(project_dir)
    with open_store(project) as store:
        record = store.run(run_id)
        if record is None:
            raise BackhaulError(f"no run `{run_id}`; list runs with `backhaul runs SYNC`")
        rejected = store.rows(record.run_id, status="rejected", limit=limit)
        invalid = store.rows(record.run_id, status="invalid", limit=limit)
        calls = store.calls(record.run_id, limit=limit)
        log_problem: str | None = None
        found = None
        if key:  # the rows the store keeps can be searched without the row log
            found, log_problem = store_if_log_unreadable(
                lambda log: store.search_rows(record.run_id, key, limit=limit, row_log=log)
            )
    _print_run(record, rejected, invalid, calls, found, key, as_json, log_problem)
    if log_problem:
        _console(stderr=True).print(f"[red]error:[/] {escape(log_problem)}")
        raise typer.Exit(1)


def _print_run(
    record: RunRecord,
    rejected: list[RowOutcome],
    invalid: list[RowOutcome],
    calls: list[HttpCall],
    found: list[RowOutcome] | None,
    key: str | None,
    as_json: bool,
    log_problem: str | None,
) -> None:
    """What ``run-show`` prints of one run (``log_problem``: why its row log was not read)."""
    if as_json:
        print(
            json.dumps(
                {
                    "run_id": record.run_id,
                    "sync": record.sync,
                    "status": record.status.value,
                    "counts": record.counts.as_dict(),
                    "wait_s": round(record.wait_s, 3),
                    "error": record.error,
                    "rejected": [
                        {"key": r.key, "op": r.op.value, "error": r.error} for r in rejected
                    ],
                    "invalid": [{"key": r.key, "error": r.error} for r in invalid],
                    **(
                        {
                            "found": [
                                {
                                    "key": r.key,
                                    "op": r.op.value,
                                    "status": r.status.value,
                                    "operation": r.operation,
                                    "error": r.error,
                                    "call_id": r.call_id,
                                }
                                for r in found
                            ],
                            "row_log_error": log_problem,
                        }
                        if found is not None
                        else {}
                    ),
                    "calls": [
                        {
                            "method": c.method,
                            "url": c.url,
                            "status": c.status,
                            "latency_ms": c.latency_ms,
                            "attempt": c.attempt,
                            "error": c.error,
                            "wait_ms": c.wait_ms,
                            "wait_reason": c.wait_reason,
                            "request_headers": c.request_headers,
                            "response_headers": c.response_headers,
                        }
                        for c in calls
                    ],
                },
                indent=2,
                default=str,
            )
        )
        return
    console = _console()
    from backhaul.cli.render import counts_line
    from backhaul.cli.render import delivered_line
    from backhaul.pyvalues import shown

    console.print(
        f"[bold]run {record.run_id}[/] of {record.sync}: {record.status.value} "
        f"in {record.duration_s:.2f}s ({commit_text(record.git_commit, record.git_dirty)})"
    )
    console.print(f"  planned: {counts_line(record.counts)}")
    console.print(f"  {delivered_line(record.counts)}")
    if record.wait_s:
        from backhaul.observe.waits import seconds_text

        console.print(
            f"  waited {seconds_text(record.wait_s)} for the destination "
            "(rate limits, retries, client-side throttling)"
        )
    if record.error:
        console.print(f"  [red]error:[/] {escape(record.error)}")
    if rejected:
        table = Table(
            "key",
            "op",
            "operation",
            "destination error",
            title="rejected rows",
            title_justify="left",
        )
        for r in rejected:
            table.add_row(
                escape(shown(r.key)), r.op.value, r.operation or "", escape(r.error or "")
            )
        console.print(table)
    if invalid:
        table = Table("key", "reason", title="invalid rows", title_justify="left")
        for r in invalid:
            table.add_row(escape(shown(r.key)), escape(r.error or ""))
        console.print(table)
    if found is not None:
        if not found and log_problem:
            console.print(
                f"  no rejected or invalid row of this run has a key like {escape(repr(key))}; "
                "its other rows are in a row log that cannot be read (see the error)"
            )
        elif not found:
            console.print(f"  no row of this run has a key like {escape(repr(key))}")
        else:
            table = Table(
                "key",
                "op",
                "status",
                "operation",
                "reason",
                title="rows found",
                title_justify="left",
            )
            for r in found:
                table.add_row(
                    escape(shown(r.key)),
                    r.op.value,
                    r.status.value,
                    r.operation or "",
                    escape(r.error or ""),
                )
            console.print(table)
    if calls:
        table = Table(
            "method",
            "url",
            "status",
            "ms",
            "attempt",
            "waited before",
            error_column(),
            title="HTTP calls",
            title_justify="left",
        )
        for c in calls:
            waited = f"{c.wait_ms:,.0f} ms" if c.wait_ms >= 1 else ""
            if c.wait_reason:
                waited += f": {c.wait_reason}"
            table.add_row(
                c.method,
                escape(c.url),
                str(c.status or ""),
                f"{c.latency_ms:.0f}",
                str(c.attempt),
                escape(waited),
                escape(c.error or ""),
            )
        console.print(table)


@app.command()
@handles_errors
def reset(
    sync: Annotated[str, typer.Argument(help="The sync to forget.")],
    project_dir: ProjectDir = Path("."),
) -> None:
    """Forget a sync's snapshot without sending anything; the next run sends every row."""
    from backhaul.api import reset as reset_sync

    project = _load(project_dir)
    had = reset_sync(project, sync)
    _console().print(f"{sync}: state {'forgotten' if had else 'was already empty'}")


@app.command()
@handles_errors
def demo(
    directory: Annotated[Path, typer.Argument(help="Where to build the demo project.")] = Path(
        "backhaul-demo"
    ),
    keep: Annotated[bool, typer.Option(help="Reuse an existing demo folder.")] = False,
) -> None:
    """Build a demo warehouse and project, sync it twice, and show that only changes travel."""
    from backhaul.demo.runner import run_demo

    raise typer.Exit(run_demo(directory, console=_console(), keep=keep))


app.command("models")(models_command)
app.command("audience")(audience_command)
app.command("test")(test_command)
app.command("sandbox")(sandbox_command)
app.command("test-connection")(connection_command)
app.command("serve")(serve)
app.command("scheduler")(scheduler_command)
app.command("schedules")(schedules_command)
app.command("worker")(worker_command)
app.command("pause")(pause_command)
app.command("resume")(resume_command)
app.command("diff-config")(diff_config_command)
app.command("approve")(approve_command)
app.command("approvals")(approvals_command)
app.add_typer(users_app, name="users")
app.add_typer(dbt_app, name="dbt")
app.add_typer(alerts_app, name="alerts")


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)


if __name__ == "__main__":
    main()
