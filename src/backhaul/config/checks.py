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
from typing import Any

from liquid import Environment
from liquid.exceptions import LiquidError

from backhaul.config.models import ColumnMapping, TemplateMapping
from backhaul.config.project import DestinationDef, ModelDef, Positions, Project, SourceDef
from backhaul.config.secrets import check_references, resolve
from backhaul.errors import BackhaulError, ConfigError, SourceError
from backhaul.observe.redact import Redactor


def _error(message: str, positions: Positions, key: str | None) -> ConfigError:
    return ConfigError(message, file=positions.file.as_posix(), line=positions.line(key), key=key)


def _unknown(kind: str, name: str, known: Iterable[str]) -> str:
    names = sorted(known)
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"did you mean `{close[0]}`? " if close else ""
    return f"unknown {kind} `{name}` ({hint}known: {', '.join(names) or 'none'})"


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

    Args:
        project: A loaded project.
        open_sources: Also compile every model's SQL in its warehouse and check the columns
            it returns. Sources are closed again before returning.
    """
    errors = _reference_errors(project)
    errors += _env_errors(project)
    errors += _match_errors(project)
    errors += _batch_errors(project)
    errors += _non_finite_errors(project)
    errors += _alert_errors(project)
    if open_sources:
        from backhaul.audiences.checks import audience_errors

        found, failed = audience_errors(project)
        errors += found
        errors += _source_errors(project, skip=failed)
    return errors


def _reference_errors(project: Project) -> list[ConfigError]:
    errors: list[ConfigError] = []
    for model in project.models.values():
        if model.config.source not in project.sources:
            message = _unknown("source", model.config.source, project.sources)
            errors.append(_error(message, model.positions, "source"))
    for sync in project.syncs.values():
        if sync.config.model not in project.models:
            message = _unknown("model", sync.config.model, project.models)
            errors.append(_error(message, sync.positions, "model"))
        if sync.config.destination not in project.destinations:
            message = _unknown("destination", sync.config.destination, project.destinations)
            errors.append(_error(message, sync.positions, "destination"))
    return errors


def _env_errors(project: Project) -> list[ConfigError]:
    errors: list[ConfigError] = []
    defs: list[SourceDef | DestinationDef] = [*project.sources.values()]
    defs += project.destinations.values()
    for defn in defs:
        errors += check_references(defn.raw, positions=defn.positions)
    return errors


def _match_errors(project: Project) -> list[ConfigError]:
    errors: list[ConfigError] = []
    for sync in project.syncs.values():
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
    return errors


def _batch_errors(project: Project) -> list[ConfigError]:
    """A batch size (the sync's, else the project default) above the destination's maximum."""
    errors: list[ConfigError] = []
    default = project.config.defaults.batch_size
    for sync in sorted(project.syncs.values(), key=lambda s: s.name):
        size = sync.config.batch_size or default
        dest = project.destinations.get(sync.config.destination)
        if size is None or dest is None:
            continue
        try:
            cls = project.registry.destination(str(dest.raw.get("type")))
            limit = int(cls.capabilities.max_batch_size)
        except Exception:
            continue  # the loader already reported a connector that does not load
        if size <= limit:
            continue
        message = (
            f"batch_size {size} is above the largest batch the `{dest.raw['type']}` "
            f"destination accepts ({limit}); set it to {limit} or less"
        )
        if sync.config.batch_size is not None:
            errors.append(_error(message, sync.positions, "batch_size"))
        elif project.positions is not None:
            message += f" (the default applies to sync `{sync.name}`)"
            errors.append(_error(message, project.positions, "defaults.batch_size"))
    return errors


def _non_finite_errors(project: Project) -> list[ConfigError]:
    """`non_finite: string` for a destination that stores typed columns, not JSON."""
    from backhaul.engine.finite import policy_for

    errors: list[ConfigError] = []
    for sync in sorted(project.syncs.values(), key=lambda s: s.name):
        dest = project.destinations.get(sync.config.destination)
        if dest is None or sync.config.non_finite is None:
            continue
        try:
            cls = project.registry.destination(str(dest.raw.get("type")))
        except Exception:
            continue  # the loader already reported a connector that does not load
        try:
            policy_for(sync, cls.capabilities)
        except ConfigError as exc:
            errors.append(exc)
    return errors


def _alert_errors(project: Project) -> list[ConfigError]:
    """Channel files, the channels that `alerts:` blocks name, and their variables."""
    from backhaul.alerts.config import env_errors, load_channels, reference_errors

    channels, errors = load_channels(project)
    return errors + reference_errors(project, channels) + env_errors(channels)


def _source_errors(project: Project, skip: Iterable[str] = ()) -> list[ConfigError]:
    """Models against their warehouse; ``skip`` names models already reported."""
    errors: list[ConfigError] = []
    by_source: dict[str, list[ModelDef]] = {}
    skipped = set(skip)
    for model in project.models.values():
        if model.config.source in project.sources and model.name not in skipped:
            by_source.setdefault(model.config.source, []).append(model)
    for name in sorted(by_source):
        errors += _check_source(project, project.sources[name], by_source[name])
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


def _check_source(project: Project, source: SourceDef, models: list[ModelDef]) -> list[ConfigError]:
    handle, redactor, errors = _open(project, source)
    if handle is None:
        return errors
    try:
        for model in sorted(models, key=lambda m: m.name):
            try:
                columns = handle.columns(model.sql)
            except BackhaulError as exc:
                errors.append(sql_error(project, model, redactor.text(exc.message) or ""))
                continue
            errors += _column_errors(project, model, list(columns))
    finally:
        handle.close()
    return errors


def sql_error(
    project: Project, model: ModelDef, message: str, *, line_offset: int = 0
) -> ConfigError:
    """A model's SQL error as one line naming the SQL file and line.

    ``line_offset`` corrects the warehouse's line number when the SQL was run wrapped in
    a subquery.
    """
    first = message.strip().splitlines()[0] if message.strip() else "unknown error"
    text = f"the model SQL fails in the warehouse: {first}"
    if model.sql_file is not None:
        rel = model.sql_file.relative_to(project.root).as_posix()
        # DuckDB and others name the line of the SQL ("LINE 3: ..."): point the editor there.
        found = re.search(r"\bLINE (\d+):", message)
        line = max(int(found.group(1)) + line_offset, 1) if found else None
        return ConfigError(text, file=rel, line=line, key="sql")
    key = "sql" if model.config.sql is not None else "table"
    return _error(text, model.positions, key)


def _column_errors(project: Project, model: ModelDef, columns: list[str]) -> list[ConfigError]:
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
    env = Environment()
    for sync in sorted(project.syncs.values(), key=lambda s: s.name):
        if sync.config.model != model.name:
            continue
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
                errors += _template_errors(env, mapping, i, sync.positions, model.name, columns)
    return errors


def _template_errors(
    env: Environment,
    mapping: TemplateMapping,
    index: int,
    positions: Positions,
    model: str,
    columns: list[str],
) -> list[ConfigError]:
    key = f"mappings.{index}.template"
    try:
        variables = env.from_string(mapping.template).analyze().globals
    except LiquidError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return [_error(f"the template does not parse: {first}", positions, key)]
    return [
        _error(
            f"template variable `{name}` is not a column of model `{model}` "
            f"({_column_hint(name, columns)})",
            positions,
            key,
        )
        for name in sorted(variables)
        if name not in columns
    ]


__all__ = ["check_project"]
