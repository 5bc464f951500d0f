"""The DuckDB connection a run plans in: state attached as ``st``, scratch as ``work``,
and the model readable as a relation (the warehouse attached, or its rows streamed in)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from backhaul.config.models import ColumnMapping
from backhaul.config.models import SyncConfig
from backhaul.config.project import ModelDef
from backhaul.config.project import Project
from backhaul.config.project import SyncDef
from backhaul.engine.failures import Phase
from backhaul.engine.failures import StreamWatch
from backhaul.engine.failures import cause
from backhaul.engine.failures import model_error
from backhaul.engine.failures import state_error
from backhaul.engine.failures import state_guard
from backhaul.engine.finite import FinitePolicy
from backhaul.engine.mapping import Mapper
from backhaul.engine.mapping import quote
from backhaul.errors import BackhaulError
from backhaul.errors import ConfigError
from backhaul.errors import SourceError
from backhaul.sources.base import Source

# Re-exported: the planners and the web app nest model SQL with it too.
from backhaul.sources.common import strip_sql as strip_sql
from backhaul.state import snapshots
from backhaul.state.snapshots import Failure
from backhaul.state.snapshots import KeyLayout

# DuckDB's preserve_insertion_order while planning (see Workspace.keep_order).
PLANNING_KEEPS_ORDER = False


def open_source(project: Project, model: ModelDef) -> Source:
    src = project.sources.get(model.config.source)
    if src is None:
        raise model.positions.error(f"unknown source `{model.config.source}`", "source")
    from backhaul.config.secrets import resolve

    cls = project.registry.source(src.config.type)
    config, _secrets = resolve(src.config, positions=src.positions)
    return cls(config, project.root)


@dataclass
class Workspace:
    """Everything one plan or run of one sync works on."""

    project: Project
    sync: SyncDef
    model: ModelDef
    con: duckdb.DuckDBPyConnection
    source: Source
    model_sql: str  # a relation in ``con`` that yields the model's rows (never reassigned)
    columns: dict[str, str]
    mapper: Mapper
    layout: KeyLayout
    match_fields: list[str]
    has_state: bool
    read_only: bool

    @property
    def config(self) -> SyncConfig:
        return self.sync.config

    @property
    def key_columns(self) -> list[str]:
        return list(self.model.config.primary_key)

    def guard(self, phase: Phase) -> AbstractContextManager[None]:
        """A damaged snapshot or a full disk during ``phase``, as one line (see failures)."""
        return state_guard(self.project, self.sync.name, phase)

    def keep_order(self, keep: bool = PLANNING_KEEPS_ORDER) -> None:
        """Whether DuckDB keeps result rows in order; by default, as planning has it.

        Planning runs without it (its joins and inserts then hold less in memory); a
        result handed over as an Arrow stream, such as a first load's rows, streams about
        a third faster with it."""
        self.con.execute(f"SET preserve_insertion_order = {'true' if keep else 'false'}")

    def close(self) -> None:
        try:
            self.con.close()
        finally:
            self.source.close()


def open_workspace(
    project: Project,
    sync: SyncDef,
    *,
    read_only: bool,
    needs_match: bool = True,
    finite: FinitePolicy | None = None,
) -> Workspace:
    """Open the planning connection for ``sync``.

    ``read_only`` (dry runs) attaches the state read-only, so a plan never changes it.
    ``finite`` is the run's ``non_finite`` policy (default: such rows are invalid).
    """
    model = project.models.get(sync.config.model)
    if model is None:
        raise sync.positions.error(f"unknown model `{sync.config.model}`", "model")
    state_dir = project.state_dir
    tmp = state_dir / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    settings: dict[str, Any] = {
        "memory_limit": project.config.state.memory_limit,
        "temp_directory": str(tmp),
        "preserve_insertion_order": PLANNING_KEEPS_ORDER,
    }
    if project.config.state.threads:
        settings["threads"] = project.config.state.threads
    con = duckdb.connect(":memory:", config=settings)
    source = open_source(project, model)
    try:
        con.execute("ATTACH ':memory:' AS work")
        try:
            with state_guard(project, sync.name, Phase.PLAN):
                model_sql = _model_relation(project, sync, model, con, source)
        except SourceError as exc:
            raise _pin(project, model, exc) from None
        try:
            rel = con.sql(f"SELECT * FROM {model_sql} AS m LIMIT 0")
        except duckdb.Error as exc:
            from backhaul.config.checks import sql_error

            # The model runs wrapped as "(\n<sql>\n)": its line 1 is the warehouse's line 2.
            offset = -1 if model_sql.startswith("(") else 0
            raise sql_error(project, model, str(exc), line_offset=offset) from None
        columns = {n: str(t) for n, t in zip(rel.columns, rel.types, strict=True)}
        missing = [k for k in model.config.primary_key if k not in columns]
        if missing:
            raise model.positions.error(
                f"primary-key column(s) {', '.join(missing)} not in the model's output "
                f"(columns: {', '.join(columns)})",
                "primary_key",
            )
        for i, m in enumerate(sync.config.mappings):
            if isinstance(m, ColumnMapping) and m.column not in columns:
                raise sync.positions.error(
                    f"column `{m.column}` is not in model `{model.name}` "
                    f"(columns: {', '.join(columns)})",
                    f"mappings.{i}.column",
                )
        mapper = Mapper(sync.config, columns, types=columns, finite=finite)
        match_fields = resolve_match(sync, model, needs_match)
        layout = key_layout(con, model_sql, model, mapper, match_fields)
        # Only now, with the model and mappings checked, is the state touched.
        path = snapshots.state_path(state_dir, sync.name)
        with state_guard(project, sync.name, Phase.PLAN):
            has_state = _attach(project, sync, con, path, read_only)
            if not read_only:
                snapshots.ensure_tables(con, layout)
            elif has_state and snapshots.has_table(con, "snapshot"):
                snapshots.ensure_tables_compatible(con, layout)
            else:
                # A dry run with no state yet plans against an empty snapshot in memory.
                if has_state:
                    con.execute("DETACH st")
                    con.execute("ATTACH ':memory:' AS st")
                has_state = False
                con.execute("CREATE TABLE st.meta (name VARCHAR PRIMARY KEY, value VARCHAR)")
                snapshots.ensure_tables(con, layout)
        return Workspace(
            project,
            sync,
            model,
            con,
            source,
            model_sql,
            columns,
            mapper,
            layout,
            match_fields,
            has_state,
            read_only,
        )
    except BaseException:
        con.close()
        source.close()
        raise


def _model_relation(
    project: Project, sync: SyncDef, model: ModelDef, con: duckdb.DuckDBPyConnection, source: Source
) -> str:
    """Make the model readable in ``con``: the warehouse attached, or its rows copied in."""
    body = strip_sql(model.sql)
    if source.attach(con, "wh"):
        con.execute("USE wh")
        return f"(\n{body}\n)"
    if sync.config.planner == "warehouse":
        # The warehouse planner fetches only the planned rows later: columns only.
        schema = source.stream(f"SELECT * FROM (\n{body}\n) AS q LIMIT 0").schema
        source.close()  # the unread stream is dropped with its connection
        reader = schema.empty_table().to_reader()
    else:
        reader = source.stream(body)
    watch = StreamWatch(reader)
    con.register("extract_stream", watch.reader)
    try:
        con.execute("CREATE TABLE work.extract AS SELECT * FROM extract_stream")
    except duckdb.Error:
        if isinstance(watch.error, BackhaulError):  # the warehouse failed on a row mid-stream
            raise model_error(project, model, watch.error.message) from None
        raise
    finally:
        con.unregister("extract_stream")
    return "work.extract"


def _pin(project: Project, model: ModelDef, exc: SourceError) -> BackhaulError:
    """A source error about one key of the source file, with that file's name and line."""
    src = project.sources.get(model.config.source)
    if exc.key is None or src is None:
        return exc
    return src.positions.error(exc.message, exc.key)


def _attach(
    project: Project, sync: SyncDef, con: duckdb.DuckDBPyConnection, path: Path, read_only: bool
) -> bool:
    """Attach the sync's state; a file DuckDB cannot open is named with what to do."""
    try:
        return snapshots.attach(con, path, read_only=read_only)
    except duckdb.Error as exc:
        kind = snapshots.failure(exc, path) or Failure.DAMAGED  # opening concerns this file only
        raise state_error(project, sync.name, kind, cause(exc, path), Phase.PLAN) from None


def resolve_match(sync: SyncDef, model: ModelDef, needs_match: bool) -> list[str]:
    fields = [m.field for m in sync.config.mappings]
    if sync.config.match.fields:
        unknown = [f for f in sync.config.match.fields if f not in fields]
        if unknown:
            raise sync.positions.error(
                f"match field(s) {', '.join(unknown)} are not mapped; map them or change `match`",
                "match.fields",
            )
        return list(sync.config.match.fields)
    pk = model.config.primary_key
    found = [
        m.field for m in sync.config.mappings if isinstance(m, ColumnMapping) and m.column in pk
    ]
    if needs_match and not found:
        raise ConfigError(
            "cannot tell how the destination identifies records: map the primary-key "
            f"column(s) {', '.join(pk)} to a field, or set `match.fields`",
            file=str(sync.positions.file),
            line=sync.positions.line("mappings"),
            key="match",
        )
    return found


def key_layout(
    con: duckdb.DuckDBPyConnection,
    model_sql: str,
    model: ModelDef,
    mapper: Mapper,
    match_fields: list[str],
) -> KeyLayout:
    keys = [f"m.{quote(k)}" for k in model.config.primary_key]
    values = mapper.value_exprs("m")
    match = [values[mapper.fields.index(f)] for f in match_fields]
    rel = con.sql(f"SELECT {', '.join(keys + match)} FROM {model_sql} AS m LIMIT 0")
    types = [str(t) for t in rel.types]
    n = len(keys)
    # An untyped NULL (a static null match field) is stored as text.
    fixed = ["VARCHAR" if t == '"NULL"' else t for t in types]
    return KeyLayout(tuple(fixed[:n]), tuple(fixed[n:]))
