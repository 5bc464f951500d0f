"""Cross-file checks of a loaded project (``backhaul validate``).

The loader checks each file on its own; these checks look across files: names that refer
to other definitions, environment variables, and (when ``open_sources`` is set) the model
SQL against the warehouse: does it compile, and does it return the columns the primary key,
mappings and templates need.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from backhaul.config.models import ColumnMapping
from backhaul.config.models import Mode
from backhaul.config.models import OnRemove
from backhaul.config.models import TemplateMapping
from backhaul.config.project import DestinationDef
from backhaul.config.project import ModelDef
from backhaul.config.project import Positions
from backhaul.config.project import Project
from backhaul.config.project import SourceDef
from backhaul.config.project import SyncDef
from backhaul.config.project import unknown_name
from backhaul.config.secrets import check_references
from backhaul.config.secrets import resolve
from backhaul.errors import BackhaulError
from backhaul.errors import ConfigError
from backhaul.errors import SourceError
from backhaul.observe.redact import Redactor
from backhaul.sources.common import holds_query

if TYPE_CHECKING:
    from backhaul.destinations.base import Destination


def _error(message: str, positions: Positions, key: str | None) -> ConfigError:
    return positions.error(message, key)


def _column_hint(name: str, columns: Iterable[str]) -> str:
    cols = list(columns)
    lowered = {c.lower(): c for c in cols}
    close = [lowered[name.lower()]] if name.lower() in lowered else []
    close = close or difflib.get_close_matches(name, cols, n=1)
    if close:
        return f"did you mean `{close[0]}`?"
    return f"columns: {', '.join(cols) or 'none'}"


def check_project(project: Project, *, open_sources: bool = True) -> list[ConfigError]:
    """Find problems that span files; return them all (empty when the project is sound).

    The checks of each sync are :func:`check_syncs`, the same function ``run``, ``plan``
    and the web app call before a sync runs; this adds the definitions no sync uses, the
    alert channels and the audiences.

    Args:
        project: A loaded project.
        open_sources: Also compile every model's SQL in its warehouse and check the columns
            it returns. Sources are closed again before returning.
    """
    skip: set[str] = set()
    errors: list[ConfigError] = []
    if open_sources:
        from backhaul.audiences.checks import audience_errors

        found, skip = audience_errors(project)
        errors += found
    with Columns(project, enabled=open_sources, skip=skip) as columns:
        columns.audiences_checked = open_sources  # just above, all at once
        for found in _check(project, sorted(project.syncs), columns).values():
            errors += found
        used = {s.config.model for s in project.syncs.values()}
        for name in sorted(set(project.models) - used):
            errors += _model_errors(project, project.models[name], columns)
    errors += _unused_env_errors(project)
    errors += _alert_errors(project)
    errors += schedule_errors(project)
    return _unique(errors)


def check_syncs(
    project: Project, names: Iterable[str], *, open_sources: bool = True
) -> dict[str, list[ConfigError]]:
    """Every check ``validate`` makes of each named sync, by sync (empty lists: sound).

    This is the one check a sync passes before it runs, whoever runs it (``backhaul run``,
    ``plan``, ``validate``, the web app's Run now, the Python API). Nothing is sent and no
    state is opened: the sync's files are checked against each other, its variables
    against the environment, its templates against the Liquid environment the runtime
    renders with, its mode against what the destination can do and (with
    ``open_sources``) its model against the warehouse.
    """
    with Columns(project, enabled=open_sources) as columns:
        return _check(project, list(names), columns)


def _check(project: Project, names: list[str], columns: Columns) -> dict[str, list[ConfigError]]:
    out: dict[str, list[ConfigError]] = {}
    for name in names:
        if broken := project.broken_errors("syncs", name):
            out[name] = broken  # its own file is invalid: nothing else can be checked
            continue
        sync = project.sync(name)
        out[name] = _unique(_sync_errors(project, sync, columns))
    return out


def _unique(errors: Iterable[ConfigError]) -> list[ConfigError]:
    seen: set[str] = set()
    out: list[ConfigError] = []
    for e in errors:
        if e.message not in seen:
            seen.add(e.message)
            out.append(e)
    return out


class Columns:
    """The output columns of models, from their warehouses, each source opened once."""

    def __init__(self, project: Project, *, enabled: bool, skip: Iterable[str] = ()) -> None:
        self.project = project
        self.enabled = enabled
        self.skip = set(skip)
        self.audiences_checked = False
        self.opened: dict[str, tuple[Any, Redactor, list[ConfigError]]] = {}
        self.found: dict[str, list[str] | ConfigError] = {}

    def __enter__(self) -> Columns:
        return self

    def __exit__(self, *exc: object) -> None:
        for handle, _redactor, _errors in self.opened.values():
            if handle is not None:
                handle.close()

    def source_errors(self, source: SourceDef) -> list[ConfigError]:
        """Why ``source`` cannot be opened (empty when it opens or checks are off)."""
        if not self.enabled:
            return []
        return self._open(source)[2]

    def of(self, model: ModelDef) -> list[str] | ConfigError | None:
        """The model's columns, its SQL error, or None (not checked / source unusable)."""
        if not self.enabled or model.name in self.skip or not holds_query(model.sql):
            return None  # an empty query is reported without the warehouse (_model_errors)
        source = self.project.sources.get(model.config.source)
        if source is None:
            return None
        if model.name not in self.found:
            handle, redactor, _errors = self._open(source)
            if handle is None:
                return None
            try:
                self.found[model.name] = list(handle.columns(model.sql))
            except BackhaulError as exc:
                self.found[model.name] = sql_error(
                    self.project, model, redactor.text(exc.message) or ""
                )
        return self.found[model.name]

    def _open(self, source: SourceDef) -> tuple[Any, Redactor, list[ConfigError]]:
        if source.name not in self.opened:
            if check_references(source.raw, positions=source.positions):
                self.opened[source.name] = (None, Redactor(), [])  # reported as env errors
            else:
                self.opened[source.name] = _open(self.project, source)
        return self.opened[source.name]


def _sync_errors(project: Project, sync: SyncDef, columns: Columns) -> list[ConfigError]:
    """Every problem of one sync and of the files it uses."""
    errors: list[ConfigError] = []
    model = project.models.get(sync.config.model)
    dest = project.destinations.get(sync.config.destination)
    if model is None:
        message = unknown_name("model", sync.config.model, project.models)
        errors += project.broken_errors("models", sync.config.model) or [
            _error(message, sync.positions, "model")
        ]
    if dest is None:
        message = unknown_name("destination", sync.config.destination, project.destinations)
        errors += project.broken_errors("destinations", sync.config.destination) or [
            _error(message, sync.positions, "destination")
        ]
    cls = _connector(project, dest)
    if dest is not None:
        errors += check_references(dest.raw, positions=dest.positions)
    model_errors = _model_errors(project, model, columns) if model is not None else []
    # A primary key the model lacks is the cause; how it maps to a match field is not.
    errors += _match_errors(sync, None if model_errors else model, cls)
    errors += _template_errors(sync)
    errors += _hook_errors(project, sync)
    if model is not None and dest is not None:
        errors += _same_file_errors(project, model, dest)
    if cls is not None and dest is not None:
        errors += _batch_errors(project, sync, dest, cls)
        errors += _non_finite_errors(sync, cls)
        errors += _capability_errors(sync, dest, cls, _resolved_match(sync, model, cls))
    audience = model is not None and model.name in project.audiences
    if model is not None and audience and columns.enabled and not columns.audiences_checked:
        from backhaul.audiences.checks import audience_errors_of

        # An audience's conditions against the warehouse, as `validate` checks them.
        errors += audience_errors_of(project, model.name)
    if model is not None:
        errors += model_errors
        found = columns.of(model)
        if isinstance(found, list):
            errors += _mapping_column_errors(sync, model, found)
    return errors


def _same_file_errors(project: Project, model: ModelDef, dest: DestinationDef) -> list[ConfigError]:
    """A DuckDB destination whose file is the DuckDB warehouse its model reads: a run holds
    that file open (read-only) to plan, and cannot also open it to write."""
    source = project.sources.get(model.config.source)
    if source is None or dest.raw.get("type") != "duckdb" or source.raw.get("type") != "duckdb":
        return []
    paths = [source.raw.get("path"), dest.raw.get("path")]
    if not all(isinstance(p, str) and "${" not in p for p in paths):
        return []
    read, written = ((project.root / str(p)).resolve() for p in paths)
    if read != written:
        return []
    message = (
        f"the DuckDB file of source `{source.name}`, which model `{model.name}` reads: "
        "a run holds it open to plan and cannot write to it; write to another "
        "DuckDB file"
    )
    return [_error(message, dest.positions, "path")]


def _connector(project: Project, dest: DestinationDef | None) -> type[Destination] | None:
    if dest is None:
        return None
    try:
        return project.registry.destination(str(dest.raw.get("type")))
    except Exception:
        return None  # the loader already reported a connector that does not load


def _model_errors(project: Project, model: ModelDef, columns: Columns) -> list[ConfigError]:
    """The model's source, its variables, its SQL and its primary key."""
    source = project.sources.get(model.config.source)
    if source is None:
        message = unknown_name("source", model.config.source, project.sources)
        return project.broken_errors("sources", model.config.source) or [
            _error(message, model.positions, "source")
        ]
    errors = check_references(source.raw, positions=source.positions)
    if not holds_query(model.sql):
        errors.append(_no_query_error(project, model))
    errors += columns.source_errors(source)
    found = columns.of(model)
    if isinstance(found, ConfigError):
        errors.append(found)
    elif found is not None:
        errors += _key_errors(model, found)
    return errors


def _unused_env_errors(project: Project) -> list[ConfigError]:
    """Variables of sources and destinations (``validate`` checks them all)."""
    errors: list[ConfigError] = []
    defs: list[SourceDef | DestinationDef] = [*project.sources.values()]
    defs += project.destinations.values()
    for defn in defs:
        errors += check_references(defn.raw, positions=defn.positions)
    return errors


def _match_errors(
    sync: SyncDef, model: ModelDef | None, cls: type[Destination] | None
) -> list[ConfigError]:
    errors: list[ConfigError] = []
    mapped = [m.field for m in sync.config.mappings]
    for i, field in enumerate(sync.config.match.fields):
        if field not in mapped:
            close = difflib.get_close_matches(field, mapped, n=1)
            hint = f"did you mean `{close[0]}`?" if close else f"mapped: {', '.join(mapped)}"
            errors.append(
                _error(
                    f"match field `{field}` is not a mapped field ({hint})",
                    sync.positions,
                    f"match.fields.{i}",
                )
            )
    if errors or model is None or cls is None:
        return errors
    from backhaul.engine.workspace import resolve_match

    try:
        resolve_match(sync, model, bool(cls.capabilities.needs_match_fields))
    except ConfigError as exc:
        errors.append(exc)
    return errors


def _batch_errors(
    project: Project, sync: SyncDef, dest: DestinationDef, cls: type[Destination]
) -> list[ConfigError]:
    """A batch size (the sync's, else the project default) above the destination's maximum."""
    from backhaul.engine.settings import requested_batch_size

    size, key = requested_batch_size(project, sync)
    limit = int(cls.capabilities.max_batch_size)
    if size is None or size <= limit:
        return []
    message = (
        f"batch_size {size} is above the largest batch the `{dest.raw['type']}` "
        f"destination accepts ({limit}); set it to {limit} or less"
    )
    if key == "batch_size":
        return [_error(message, sync.positions, key)]
    if project.positions is not None:
        message += f" (the default applies to sync `{sync.name}`)"
        return [_error(message, project.positions, key)]
    return []


def _non_finite_errors(sync: SyncDef, cls: type[Destination]) -> list[ConfigError]:
    """`non_finite: string` for a destination that stores typed columns, not JSON."""
    from backhaul.engine.finite import policy_for

    if sync.config.non_finite is None:
        return []
    try:
        policy_for(sync, cls.capabilities)
    except ConfigError as exc:
        return [exc]
    return []


def _resolved_match(
    sync: SyncDef, model: ModelDef | None, cls: type[Destination]
) -> tuple[str, ...]:
    """The match fields a run would use (the primary key's fields when not set)."""
    if model is None:
        return tuple(sync.config.match.fields)
    from backhaul.engine.workspace import resolve_match

    try:
        return tuple(resolve_match(sync, model, bool(cls.capabilities.needs_match_fields)))
    except ConfigError:
        return tuple(sync.config.match.fields)  # reported by _match_errors


def _capability_errors(
    sync: SyncDef, dest: DestinationDef, cls: type[Destination], match: tuple[str, ...]
) -> list[ConfigError]:
    """The sync's mode and ``on_remove`` against the operations the destination has."""
    from backhaul.engine.batches import destination_operation

    cfg = sync.config
    kind = str(dest.raw.get("type"))
    can = sorted(op.value for op in cls.capabilities.operations)
    errors: list[ConfigError] = []
    if cfg.mode is Mode.MEMBERSHIP:
        if not cls.capabilities.membership:
            message = (
                f"mode `membership` needs a destination that keeps lists or audiences, and "
                f"the `{kind}` destination does not; use mode `mirror` to delete the records "
                "of rows that leave the model instead"
            )
            return [_error(message, sync.positions, "mode")]
        if cfg.on_remove is OnRemove.CLEAR:
            message = (
                "mode `membership` takes rows that leave the model out of the list "
                "(`on_remove: delete`, the default) or leaves them in (`nothing`); "
                "`clear` has no meaning for a list"
            )
            return [_error(message, sync.positions, "on_remove")]
    sends = destination_operation("add", cfg.mode, cfg.removal)
    if sends is not None and sends not in cls.capabilities.operations:
        errors.append(
            _error(
                f"mode `{cfg.mode.value}` needs the `{kind}` destination to {sends.value} "
                f"records, which it cannot (it can: {', '.join(can)}); pick another mode",
                sync.positions,
                "mode",
            )
        )
    removes = destination_operation("remove", cfg.mode, cfg.removal)
    if removes is not None and removes not in cls.capabilities.operations:
        if cfg.on_remove is None:
            message = (
                f"mode `{cfg.mode.value}` {removes.value}s the records of rows that leave the "
                f"model, and the `{kind}` destination cannot {removes.value} records: use "
                "mode `upsert`, or set `on_remove: nothing`"
            )
            errors.append(_error(message, sync.positions, "mode"))
        else:
            message = (
                f"on_remove `{cfg.on_remove.value}` needs the `{kind}` destination to "
                f"{removes.value} records, which it cannot (it can: {', '.join(can)}); "
                "set `on_remove: nothing`"
            )
            errors.append(_error(message, sync.positions, "on_remove"))
    check = getattr(cls, "check_sync", None)
    if check is not None and not errors:
        from backhaul.destinations.base import SyncShape

        shape = SyncShape(
            object=cfg.object,
            fields=tuple(m.field for m in cfg.mappings),
            match_fields=match,
            operations=frozenset(op for op in (sends, removes) if op is not None),
            membership=cfg.mode is Mode.MEMBERSHIP,
        )
        for problem in check(dest.config, shape):
            errors.append(_error(problem.message, sync.positions, problem.key))
    return errors


def _template_errors(sync: SyncDef) -> list[ConfigError]:
    """Templates that do not parse or use a filter the runtime does not have."""
    from backhaul.templates import check_template
    from backhaul.templates import liquid_environment
    from backhaul.templates import unknown_filters_text

    env = liquid_environment()
    errors: list[ConfigError] = []
    for i, mapping in enumerate(sync.config.mappings):
        if not isinstance(mapping, TemplateMapping):
            continue
        key = f"mappings.{i}.template"
        found = check_template(mapping.template, env)
        if found.error is not None:
            where = (
                f" (line {found.error_line} of the template)" if (found.error_line or 1) > 1 else ""
            )
            message = f"the template does not parse: {found.error}{where}"
            errors.append(_error(message, sync.positions, key))
        elif found.unknown_filters:
            errors.append(_error(unknown_filters_text(found.unknown_filters), sync.positions, key))
    return errors


def _hook_errors(project: Project, sync: SyncDef) -> list[ConfigError]:
    """`hooks` Liquid (variables, filters) and whether the model's source can run them."""
    from backhaul.engine.hooks import hook_errors

    return hook_errors(project, sync)


def _alert_errors(project: Project) -> list[ConfigError]:
    """Channel files, the channels that `alerts:` blocks name, and their variables."""
    from backhaul.alerts.config import env_errors
    from backhaul.alerts.config import load_channels
    from backhaul.alerts.config import reference_errors

    channels, errors = load_channels(project)
    return errors + reference_errors(project, channels) + env_errors(channels)


def schedule_errors(project: Project) -> list[ConfigError]:
    """`after:` names known syncs, not itself, and the sequences form no cycle;
    `after_dbt` needs the dbt project; `scheduler.queue` needs Postgres."""
    from backhaul.schedule.graph import find_cycles

    errors: list[ConfigError] = []
    for sync in sorted(project.syncs.values(), key=lambda s: s.name):
        schedule = sync.config.schedule
        for i, parent in enumerate(schedule.after or []):
            key = f"schedule.after.{i}" if len(schedule.after or []) > 1 else "schedule.after"
            if parent == sync.name:
                errors.append(_error("a sync cannot run after itself", sync.positions, key))
            elif parent not in project.syncs and not project.broken_errors("syncs", parent):
                message = unknown_name("sync", parent, project.syncs)
                errors.append(_error(message, sync.positions, key))
        if schedule.after_dbt and not project.config.dbt_project:
            errors.append(
                _error(
                    "`after_dbt` needs the dbt project: set `dbt_project` in backhaul.yml",
                    sync.positions,
                    "schedule.after_dbt",
                )
            )
    for cycle in find_cycles(project):
        first = project.syncs[cycle[0]]
        path = " → ".join([*cycle, cycle[0]])
        errors.append(
            _error(
                f"the sequence {path} is a cycle: none of them would ever run; remove one `after`",
                first.positions,
                "schedule.after",
            )
        )
    scheduler = project.config.scheduler
    if scheduler.queue and not project.metadata_url.startswith("postgresql"):
        errors.append(
            ConfigError(
                "the run queue needs the Postgres metadata store: set state.metadata_url to a "
                "postgresql:// URL, or remove `queue: true`",
                file=project.positions.file.as_posix() if project.positions else "backhaul.yml",
                line=project.positions.line("scheduler.queue") if project.positions else None,
                key="scheduler.queue",
            )
        )
    return errors


def _open(project: Project, source: SourceDef) -> tuple[Any, Redactor, list[ConfigError]]:
    """Open a source with its secrets resolved; errors instead when that is not possible."""
    try:
        config, secrets = resolve(source.config, positions=source.positions)
    except ConfigError:
        return None, Redactor(), []  # missing variables are reported by _env_errors
    redactor = Redactor(secrets)
    try:
        cls = project.registry.source(str(source.raw.get("type")))
        handle = cls(config, project.root)
        handle.check()
    except SourceError as exc:
        if exc.key is not None:  # one key of the source file is wrong (a DuckDB `path`)
            message = redactor.text(exc.message) or exc.message
            return None, redactor, [_error(message, source.positions, exc.key)]
        message = f"cannot open source `{source.name}`: {redactor.text(exc.message)}"
        return None, redactor, [_error(message, source.positions, None)]
    except BackhaulError as exc:
        message = f"cannot open source `{source.name}`: {redactor.text(exc.message)}"
        return None, redactor, [_error(message, source.positions, None)]
    except Exception as exc:
        text = redactor.text(f"{type(exc).__name__}: {exc}")
        return (
            None,
            redactor,
            [_error(f"cannot open source `{source.name}`: {text}", source.positions, None)],
        )
    return handle, redactor, []


def _sql_rel(project: Project, path: Path) -> str:
    """``path`` as the project names it; a revision's file planned against the working tree
    (``diff-config --to REV``) lies outside ``project.root``: named from ``models/`` on."""
    try:
        return path.relative_to(project.root).as_posix()
    except ValueError:
        parts = path.parts
        start = len(parts) - 1 - parts[::-1].index("models") if "models" in parts else -1
        return "/".join(parts[start:])


def sql_error(
    project: Project, model: ModelDef, message: str, *, line_offset: int = 0
) -> ConfigError:
    """A model's SQL error as one line naming the SQL file and line.

    ``line_offset`` corrects the warehouse's line number when the SQL was run wrapped in
    a subquery.
    """
    first = message.strip().splitlines()[0] if message.strip() else "unknown error"
    # DuckDB and others name the line of the SQL ("LINE 3: ..."): point the editor there.
    found = re.search(r"\bLINE (\d+):", message)
    line = max(int(found.group(1)) + line_offset, 1) if found else None
    last = model.sql.rstrip().count("\n") + 1
    if line is not None and line > last:
        # Past the model's last line: the parenthesis that closes the subquery it is read
        # in, so the query ended too early (`... WHERE`).
        line = last
        first = first.replace('at or near ")"', "at the end of the query")
    text = f"the model SQL fails in the warehouse: {first}"
    if model.sql_file is not None:
        return ConfigError(text, file=_sql_rel(project, model.sql_file), line=line, key="sql")
    key = "sql" if model.config.sql is not None else "table"
    return _error(text, model.positions, key)


def _no_query_error(project: Project, model: ModelDef) -> ConfigError:
    """A model whose SQL is blank, comments or semicolons only: nothing to run."""
    text = "the model's SQL holds no query, only blanks, comments or `;`; write its SELECT"
    if model.sql_file is not None and model.config.sql is None:
        return ConfigError(text, file=_sql_rel(project, model.sql_file), line=1, key="sql")
    return _error(text, model.positions, "sql")


def _key_errors(model: ModelDef, columns: list[str]) -> list[ConfigError]:
    errors: list[ConfigError] = []
    for i, col in enumerate(model.config.primary_key):
        if col not in columns:
            key = "primary_key" if len(model.config.primary_key) == 1 else f"primary_key.{i}"
            errors.append(
                _error(
                    f"primary key column `{col}` is not in the model's output "
                    f"({_column_hint(col, columns)})",
                    model.positions,
                    key,
                )
            )
    return errors


def _mapping_column_errors(sync: SyncDef, model: ModelDef, columns: list[str]) -> list[ConfigError]:
    """Mapped columns and template variables against the model's output."""
    from backhaul.templates import check_template
    from backhaul.templates import liquid_environment

    env = liquid_environment()
    errors: list[ConfigError] = []
    for i, mapping in enumerate(sync.config.mappings):
        if isinstance(mapping, ColumnMapping) and mapping.column not in columns:
            errors.append(
                _error(
                    f"column `{mapping.column}` is not in the output of model "
                    f"`{model.name}` ({_column_hint(mapping.column, columns)})",
                    sync.positions,
                    f"mappings.{i}.column",
                )
            )
        elif isinstance(mapping, TemplateMapping):
            found = check_template(mapping.template, env)
            errors += [
                _error(
                    f"template variable `{name}` is not a column of model `{model.name}` "
                    f"({_column_hint(name, columns)})",
                    sync.positions,
                    f"mappings.{i}.template",
                )
                for name in sorted(found.variables)
                if name not in columns
            ]
    return errors


__all__ = ["check_project", "check_syncs", "schedule_errors", "sql_error"]
