"""Load a project folder into a :class:`~backhaul.config.project.Project`.

Every YAML file is parsed with line positions and validated with its pydantic model; every
problem becomes a :class:`~backhaul.errors.ConfigError` naming the file (relative to the
project root), the line and the dotted key. All problems in all files are collected and
raised together as :class:`~backhaul.errors.ConfigErrors`, so ``backhaul validate`` shows
them at once. ``${env:NAME}`` references are kept as written (see ``secrets.py``).
"""

from __future__ import annotations

import difflib
import os
import re
import types
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Annotated
from typing import Any
from typing import Union
from typing import get_args
from typing import get_origin

from pydantic import BaseModel
from pydantic import ValidationError

from backhaul.config.models import NAME_PATTERN
from backhaul.config.models import ColumnMapping
from backhaul.config.models import ModelConfig
from backhaul.config.models import ProjectConfig
from backhaul.config.models import StaticMapping
from backhaul.config.models import SyncConfig
from backhaul.config.models import TargetConfig
from backhaul.config.models import TemplateMapping
from backhaul.config.project import DestinationDef
from backhaul.config.project import ModelDef
from backhaul.config.project import Positions
from backhaul.config.project import Project
from backhaul.config.project import SourceDef
from backhaul.config.project import SyncDef
from backhaul.config.secrets import check_references
from backhaul.config.yamlfile import read_yaml
from backhaul.config.yamlfile import rel_path as _rel
from backhaul.errors import ConfigError
from backhaul.errors import ConfigErrors
from backhaul.files import NotReadable
from backhaul.files import problem
from backhaul.files import read_text
from backhaul.plugins import Registry

if TYPE_CHECKING:
    from backhaul.dbt.refs import RefResolver

PROJECT_FILES = ("backhaul.yml", "backhaul.yaml")
FOLDERS = {
    "sources": "source",
    "models": "model",
    "destinations": "destination",
    "syncs": "sync",
    "audience_schemas": "audience schema",
    "audiences": "audience",
    "priority_lists": "priority list",
}
MAPPING_KINDS: dict[str, type[BaseModel]] = {
    "column": ColumnMapping,
    "value": StaticMapping,
    "template": TemplateMapping,
}
_NAME = re.compile(NAME_PATTERN)
_MAPPING_KEY = re.compile(r"^mappings\.\d+(\.|$)")
Loc = tuple[str | int, ...]


# --- pydantic errors -> ConfigError ---------------------------------------------------------


def validate(
    model: Any,
    data: Any,
    positions: Positions,
    *,
    loc_prefix: Loc = (),
    whole: Any = None,
) -> tuple[Any, list[ConfigError]]:
    """Validate ``data`` with ``model``; return the instance (or None) and readable errors.

    ``whole`` is the file's full data when ``data`` is a part of it at ``loc_prefix``.
    """
    try:
        return model.model_validate(data), []
    except ValidationError as exc:
        root = data if whole is None else whole
        return None, convert_errors(exc, model, root, positions, loc_prefix)


def convert_errors(
    exc: ValidationError, model: Any, data: Any, positions: Positions, loc_prefix: Loc = ()
) -> list[ConfigError]:
    """Turn pydantic's errors into ConfigErrors with file, line, key and a plain message."""
    found: list[tuple[list[str | int], str, str]] = []  # (key path, error type, message)
    for err in exc.errors(include_url=False):
        loc: Loc = loc_prefix + tuple(err["loc"])
        path = _key_path(loc, data, err["type"])
        leaf = str(path[-1]) if path else ""
        if err["type"] == "extra_forbidden":
            allowed = _keys_at(model, tuple(err["loc"])[:-1])
            found.append((path, "extra", _unknown_key(leaf, allowed)))
        elif err["type"] == "missing":
            found.append((path, "missing", f"missing required key `{leaf}`"))
        else:
            if not err["loc"] and err["type"] == "value_error":
                path = _guess_key(err["msg"], data, loc_prefix)
            found.append((path, "other", _plain_message(err["msg"])))
    # A typo (`feild`) also makes the real key missing: the suggestion says it already.
    suggested = {
        _dotted([*p[:-1], m.split("`")[3]]) for p, t, m in found if t == "extra" and "mean" in m
    }
    errors: list[ConfigError] = []
    by_key: dict[str, list[str]] = {}
    for path, kind, message in found:
        key = _dotted(path)
        if kind == "missing" and key in suggested:
            continue
        if message not in by_key.setdefault(key, []):
            by_key[key].append(message)
    for key, messages in by_key.items():
        musts = [m for m in messages if m.startswith("must be ")]
        if len(musts) > 1:  # a union of scalars: one error listing the accepted types
            messages = [m for m in messages if m not in musts]
            messages.append("must be " + " or ".join(m[len("must be ") :] for m in musts))
        for message in messages:
            errors.append(
                ConfigError(
                    message,
                    file=positions.file.as_posix(),
                    line=positions.line(key or None),
                    key=key or None,
                )
            )
    return errors


def _key_path(loc: Loc, data: Any, err_type: str) -> list[str | int]:
    """The part of ``loc`` that exists in the data (union tags and validator names skipped)."""
    node, path = data, []
    for i, part in enumerate(loc):
        in_dict = isinstance(node, dict) and isinstance(part, str) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            node = node[part]
        elif not (i == len(loc) - 1 and err_type == "missing"):
            continue
        path.append(part)
    return path


def _dotted(path: list[str | int]) -> str:
    return ".".join(str(p) for p in path)


def _guess_key(message: str, data: Any, loc_prefix: Loc) -> list[str | int]:
    """For a model-level error, the first key named in backticks that the file has."""
    node = data
    for part in loc_prefix:
        node = node[part] if isinstance(node, dict | list) else None  # type: ignore[index]
    if isinstance(node, dict):
        for name in re.findall(r"`([^`]+)`", message):
            if name in node:
                return [*loc_prefix, name]
    return list(loc_prefix)


def _unknown_key(key: str, allowed: set[str]) -> str:
    close = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.6)
    if close:
        return f"unknown key `{key}` (did you mean `{close[0]}`?)"
    if allowed:
        return f"unknown key `{key}` (allowed: {', '.join(sorted(allowed))})"
    return f"unknown key `{key}`"


def _plain_message(msg: str) -> str:
    msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    msg = re.sub(r"^\w+ should (be )?", lambda m: "must be " if m.group(1) else "must ", msg)
    if NAME_PATTERN in msg:
        msg = "must start with a letter or `_` and hold only letters, digits, `_` and `-`"
    return msg


def _union_members(tp: Any) -> list[Any]:
    origin = get_origin(tp)
    if origin is Annotated:
        return _union_members(get_args(tp)[0])
    if origin is Union or origin is types.UnionType:
        return [m for arg in get_args(tp) for m in _union_members(arg)]
    return [tp]


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _keys_at(tp: Any, loc: Loc) -> set[str]:
    """The keys a model accepts at ``loc`` (for "did you mean" suggestions)."""
    out: set[str] = set()
    for member in _union_members(tp):
        if not loc:
            if _is_model(member):
                out |= {f.alias or n for n, f in member.model_fields.items()}
            continue
        head, rest = loc[0], loc[1:]
        origin = get_origin(member)
        if isinstance(head, int) and origin in (list, tuple):
            out |= _keys_at(get_args(member)[0], rest)
        elif origin is dict:
            out |= _keys_at(get_args(member)[-1], rest)
        elif _is_model(member) and head == member.__name__:
            out |= _keys_at(member, rest)
        elif _is_model(member):
            for name, field in member.model_fields.items():
                if head in (name, field.alias):
                    out |= _keys_at(field.annotation, rest)
    return out


# --- files and folders ----------------------------------------------------------------------


def _entity_files(root: Path, folder: str, errors: list[ConfigError]) -> dict[str, Path]:
    """Definitions in ``folder`` (subfolders included) by name, reporting duplicate names.

    Every entry named ``*.yml``/``*.yaml`` must be a readable regular file: a folder, a
    dangling link or a pipe by that name is reported, never skipped or opened.
    """
    base = root / folder
    kind = FOLDERS[folder]
    if not base.is_dir():
        if base.is_symlink() or base.exists():
            why = problem(base) or "is not a folder"
            errors.append(
                ConfigError(f"{why}; `{folder}` must be a folder of {kind} files", file=folder)
            )
        return {}

    def unlisted(exc: OSError) -> None:
        where = _rel(Path(exc.filename), root) if exc.filename else folder
        errors.append(ConfigError(f"cannot list this folder ({exc.strerror})", file=where))

    entries: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(base, onerror=unlisted):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for entry in (*dirnames, *filenames):
            if not entry.startswith(".") and Path(entry).suffix in (".yml", ".yaml"):
                entries.append(Path(dirpath) / entry)
    found: dict[str, Path] = {}
    files = []
    for path in sorted(entries, key=lambda p: p.relative_to(root).as_posix()):
        if (reason := problem(path)) is not None:
            message = f"{reason}; each {kind} is one YAML file"
            errors.append(ConfigError(message, file=_rel(path, root)))
        else:
            files.append(path)
    for path in files:
        name, rel = path.stem, _rel(path, root)
        if name in found:
            first = _rel(found[name], root)
            errors.append(
                ConfigError(
                    f"duplicate {kind} name `{name}`: also defined in {first}; "
                    "names are file names and must be unique, so rename one",
                    file=rel,
                )
            )
            continue
        if not _NAME.match(name):
            errors.append(
                ConfigError(
                    f"invalid {kind} name `{name}`: file names must start with a letter or "
                    "`_` and hold only letters, digits, `_` and `-`",
                    file=rel,
                )
            )
            continue
        found[name] = path
    return found


def _read(path: Path, root: Path, errors: list[ConfigError]) -> tuple[Any, Positions] | None:
    try:
        data, positions = read_yaml(path, root)
    except ConfigError as exc:
        errors.append(exc)
        return None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        errors.append(
            ConfigError("must be a mapping of `key: value` lines", file=_rel(path, root), line=1)
        )
        return None
    return data, positions


def _connector_model(
    data: dict[str, Any],
    positions: Positions,
    kind: str,
    known: dict[str, str],
    load: Callable[[str], Any],
) -> tuple[Any, list[ConfigError]]:
    """The config model of the connector named by ``type``, or the errors explaining why not."""
    file, types_ = positions.file.as_posix(), ", ".join(sorted(known)) or "none"
    type_ = data.get("type")
    if type_ is None:
        return None, [
            ConfigError(f"missing required key `type` (known: {types_})", file=file, key="type")
        ]
    line = positions.line("type")
    if not isinstance(type_, str) or type_ not in known:
        close = difflib.get_close_matches(str(type_), sorted(known), n=1)
        hint = f"did you mean `{close[0]}`? " if close else ""
        message = f"unknown {kind} type `{type_}` ({hint}known: {types_})"
        return None, [ConfigError(message, file=file, line=line, key="type")]
    try:
        cls = load(type_)
        model = cls.config_model
    except Exception as exc:  # a broken plugin must not crash validation of the rest
        return None, [
            ConfigError(
                f"cannot load the `{type_}` {kind} connector ({known[type_]}): "
                f"{type(exc).__name__}: {exc}; check that its package is installed",
                file=file,
                line=line,
                key="type",
            )
        ]
    return model, []


def _sync_errors(data: dict[str, Any], positions: Positions) -> tuple[Any, list[ConfigError]]:
    """Validate a sync; each mapping is checked against the one kind its keys name."""
    instance, errors = validate(SyncConfig, data, positions)
    if instance is not None:
        return instance, []
    mappings = data.get("mappings")
    if not isinstance(mappings, list):
        return None, errors
    # Replace the union's noisy errors with those of the mapping kind the user meant.
    # The model-level duplicate check has no position; report it per mapping instead.
    kept = [
        e
        for e in errors
        if not (e.key and _MAPPING_KEY.match(e.key)) and "is mapped twice" not in e.reason
    ]
    return None, kept + _mapping_errors(mappings, data, positions) + _duplicate_fields(
        mappings, positions
    )


def _mapping_errors(
    mappings: list[Any], data: dict[str, Any], positions: Positions
) -> list[ConfigError]:
    errors: list[ConfigError] = []
    file = positions.file.as_posix()
    for i, item in enumerate(mappings):
        key = f"mappings.{i}"
        if not isinstance(item, dict):
            errors.append(
                ConfigError(
                    "must be a mapping with `field` and one of `column`, `value` or `template`",
                    file=file,
                    line=positions.line(key),
                    key=key,
                )
            )
            continue
        kinds = [k for k in MAPPING_KINDS if k in item] or _guess_kind(item)
        if len(kinds) != 1:
            message = (
                f"give only one of {', '.join(f'`{k}`' for k in kinds)}"
                if kinds
                else "needs one of `column` (copy a column), `value` (a constant) or "
                "`template` (a Liquid template)"
            )
            errors.append(ConfigError(message, file=file, line=positions.line(key), key=key))
            continue
        _, found = validate(
            MAPPING_KINDS[kinds[0]], item, positions, loc_prefix=("mappings", i), whole=data
        )
        errors += found
    return errors


def _guess_kind(item: dict[str, Any]) -> list[str]:
    """The mapping kind a misspelt key (``colum``) was meant to name, when there is one."""
    guesses = {
        close[0]
        for key in item
        if (close := difflib.get_close_matches(str(key), list(MAPPING_KINDS), n=1, cutoff=0.7))
    }
    return sorted(guesses) if len(guesses) == 1 else []


def _duplicate_fields(mappings: list[Any], positions: Positions) -> list[ConfigError]:
    errors: list[ConfigError] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(mappings):
        field = item.get("field") if isinstance(item, dict) else None
        if not isinstance(field, str):
            continue
        if field in seen:
            key = f"mappings.{i}.field"
            errors.append(
                ConfigError(
                    f"field `{field}` is mapped twice (also by mappings.{seen[field]}); "
                    "map each target field once",
                    file=positions.file.as_posix(),
                    line=positions.line(key),
                    key=key,
                )
            )
        else:
            seen[field] = i
    return errors


def quote_table(name: str) -> str:
    """``schema.table`` as a quoted SQL name; a name already holding quotes is kept as is."""
    if '"' in name:
        return name
    return ".".join('"' + part + '"' for part in name.split("."))


def _model_sql(
    config: ModelConfig,
    yml: Path,
    root: Path,
    errors: list[ConfigError],
    dbt: RefResolver,
    positions: Positions,
) -> tuple[str, Path | None] | None:
    """The model's query, with dbt references resolved (see ``backhaul.dbt.refs``)."""
    try:
        sql, sql_file = _query(config, yml, root, dbt, positions)
        if config.dbt is not None or config.table is not None:
            return sql, sql_file
        if sql_file is not None:
            return dbt.render(sql, file=_rel(sql_file, root)), sql_file
        return dbt.render(sql, file=_rel(yml, root), line=positions.line("sql"), key="sql"), None
    except ConfigError as exc:
        errors.append(exc)
        return None


def _query(
    config: ModelConfig, yml: Path, root: Path, dbt: RefResolver, positions: Positions
) -> tuple[str, Path | None]:
    """The model's query as written, and the SQL file it was read from (if any)."""
    if config.sql is not None:
        return config.sql, None
    if config.table is not None:
        return f"SELECT * FROM {quote_table(config.table)}", None
    if config.dbt is not None:
        return dbt.select_sql(config.dbt, file=_rel(yml, root), line=positions.line("dbt")), None
    sql_file = yml.with_suffix(".sql")
    rel = _rel(yml, root)
    if not (sql_file.exists() or sql_file.is_symlink()):
        raise ConfigError(
            f"missing SQL file {_rel(sql_file, root)}: create it, or set `sql` or `table` in {rel}",
            file=rel,
        )
    try:
        return read_text(sql_file), sql_file
    except NotReadable as exc:
        raise ConfigError(
            f"{exc.reason}; it should hold the model's query", file=_rel(sql_file, root)
        ) from exc


def _orphan_sql(root: Path, models: dict[str, Path]) -> Iterator[ConfigError]:
    base = root / "models"
    if not base.is_dir():
        return
    known = {p.with_suffix(".sql") for p in models.values()}
    for sql in sorted(base.rglob("*.sql")):
        if sql not in known and not sql.with_suffix(".yml").exists():
            if sql.with_suffix(".yaml").exists():
                continue
            yield ConfigError(
                f"SQL file without a model definition: create {_rel(sql.with_suffix('.yml'), root)}"
                " with `source` and `primary_key`",
                file=_rel(sql, root),
            )


# --- the project ----------------------------------------------------------------------------


def find_root(path: str | Path) -> tuple[Path, Path]:
    """The project folder and its ``backhaul.yml``.

    Raises:
        ConfigError: There is no project file there, or it is not a readable file.
    """
    start = Path(path).resolve()
    if start.name in PROJECT_FILES and not start.is_dir():
        candidates = [start]
        start = start.parent
    else:
        candidates = [start / name for name in PROJECT_FILES]
    for candidate in candidates:
        if not (candidate.exists() or candidate.is_symlink()):
            continue
        reason = problem(candidate)
        if reason is not None:
            raise ConfigError(f"{reason}; it should hold the project settings", file=candidate.name)
        return start, candidate
    raise ConfigError(f"no backhaul.yml in {start}: run `backhaul init` to create a project")


def _files(
    root: Path, folder: str, errors: list[ConfigError]
) -> Iterator[tuple[str, Path, dict[str, Any], Positions]]:
    """Each readable definition in ``folder``: name, path, data and key positions."""
    for name, path in _entity_files(root, folder, errors).items():
        if (read := _read(path, root, errors)) is not None:
            yield name, path, read[0], read[1]


def _connectors(
    root: Path,
    folder: str,
    known: dict[str, str],
    load: Callable[[str], Any],
    errors: list[ConfigError],
    overlays: dict[str, dict[str, Any]] | None = None,
) -> Iterator[tuple[str, Any, dict[str, Any], Positions]]:
    """Sources or destinations, each validated with its connector's config model (with the
    chosen target's values laid over its file's)."""
    for name, _, data, positions in _files(root, folder, errors):
        if overlays and name in overlays:
            data = {**data, **overlays[name]}
        model, found = _connector_model(data, positions, FOLDERS[folder], known, load)
        if model is not None:
            config, found = validate(model, data, positions)
            found += check_references(data, positions=positions, syntax_only=True)
            if config is not None and not found:
                yield name, config, data, positions
        errors += found


def _target(
    config: ProjectConfig, name: str | None, positions: Positions, errors: list[ConfigError]
) -> TargetConfig | None:
    """The target called ``name`` (None: none chosen), or an error naming the known ones."""
    if not name:
        return None
    found = config.targets.get(name)
    if found is None:
        known = ", ".join(sorted(config.targets)) or "none: add `targets:` to backhaul.yml"
        key = "default_target" if name == config.default_target else None
        errors.append(
            ConfigError(
                f"unknown target `{name}` (known: {known})",
                file=positions.file.as_posix(),
                line=positions.line(key) if key else None,
                key=key,
            )
        )
    return found


def _unknown_overlays(
    label: str,
    target: TargetConfig,
    sources: dict[str, Any],
    destinations: dict[str, Any],
    positions: Positions,
    root: Path,
) -> list[ConfigError]:
    """A target that sets values for a source or destination no file defines."""
    errors: list[ConfigError] = []
    for kind, overlays, known in (
        ("sources", target.sources, sources),
        ("destinations", target.destinations, destinations),
    ):
        for name in sorted(set(overlays) - set(known)):
            if (root / kind / f"{name}.yml").exists() or (root / kind / f"{name}.yaml").exists():
                continue  # the file exists but is invalid: its own error says why
            key = f"targets.{label}.{kind}.{name}"
            errors.append(
                ConfigError(
                    f"the target sets {kind[:-1]} `{name}`, which no file in {kind}/ defines",
                    file=positions.file.as_posix(),
                    line=positions.line(key),
                    key=key,
                )
            )
    return errors


def load_project(
    path: str | Path = ".",
    *,
    registry: Registry | None = None,
    isolate: bool = False,
    target: str | None = None,
) -> Project:
    """Load and validate every file of the project in ``path``.

    Positions (and so every error) name files relative to the project folder.

    Args:
        path: The project folder (or its ``backhaul.yml``).
        registry: Connector registry; default: built-ins plus installed entry points.
        isolate: Keep going past invalid source, model, destination and sync files: each
            is left out and its errors kept in :attr:`Project.broken`, so that the syncs
            that do not use it can still run (``run --all``, the scheduler, the workers).
            Problems in any other file still raise.
        target: The environment of ``targets:`` to lay over the files; default: the
            ``BACKHAUL_TARGET`` variable, else ``default_target``, else none.

    Returns:
        The project, with ``${env:NAME}`` references unresolved.

    Raises:
        ConfigError: No project file was found.
        ConfigErrors: Any file is invalid (with ``isolate``: any file that is not one
            definition); holds every problem found in every file.
    """
    root, project_file = find_root(path)
    reg = registry if registry is not None else Registry.discover()
    errors: list[ConfigError] = []

    project_config: ProjectConfig | None = None
    project_positions: Positions | None = None
    chosen: TargetConfig | None = None
    chosen_name = ""
    if (read := _read(project_file, root, errors)) is not None:
        project_positions = read[1]
        project_config, found = validate(ProjectConfig, read[0], project_positions)
        errors += found
        if project_config is not None:
            chosen_name = (
                target or os.environ.get("BACKHAUL_TARGET") or project_config.default_target or ""
            )
            chosen = _target(project_config, chosen_name, project_positions, errors)
        if chosen is not None and chosen.state:
            data = {**read[0], "state": {**(read[0].get("state") or {}), **chosen.state}}
            project_config, found = validate(ProjectConfig, data, project_positions)
            errors += found

    sources = {
        name: SourceDef(name, config, data, pos)
        for name, config, data, pos in _connectors(
            root, "sources", reg.sources, reg.source, errors, chosen.sources if chosen else {}
        )
    }
    from backhaul.dbt.refs import RefResolver

    dbt = RefResolver(root, project_config.dbt_project if project_config else None)
    models: dict[str, ModelDef] = {}
    model_files: dict[str, Path] = {}
    for name, path_, data, positions in _files(root, "models", errors):
        model_files[name] = path_
        config, found = validate(ModelConfig, data, positions)
        errors += found
        if config is not None and (sql := _model_sql(config, path_, root, errors, dbt, positions)):
            models[name] = ModelDef(name, config, sql[0], sql[1], positions)
    errors += _orphan_sql(root, model_files)
    destinations = {
        name: DestinationDef(name, config, data, pos)
        for name, config, data, pos in _connectors(
            root,
            "destinations",
            reg.destinations,
            reg.destination,
            errors,
            chosen.destinations if chosen else {},
        )
    }
    if chosen is not None and project_positions is not None:
        errors += _unknown_overlays(
            chosen_name, chosen, sources, destinations, project_positions, root
        )
    syncs: dict[str, SyncDef] = {}
    for name, _, data, positions in _files(root, "syncs", errors):
        config, found = _sync_errors(data, positions)
        errors += found
        if config is not None:
            syncs[name] = SyncDef(name, config, positions)

    from backhaul.audiences.loading import load_audiences

    audiences = load_audiences(
        _files(root, "audience_schemas", errors),
        _files(root, "audiences", errors),
        sources,
        models,
        reg,
        errors,
        _files(root, "priority_lists", errors),
    )

    broken: dict[tuple[str, str], list[ConfigError]] = {}
    if errors and isolate and project_config is not None:
        broken = _isolated(errors)
        for folder, name in broken:
            entities: dict[str, dict[str, Any]] = {
                "sources": sources,
                "models": models,
                "destinations": destinations,
                "syncs": syncs,
            }
            entities[folder].pop(name, None)
        errors = []
    if errors or project_config is None:
        raise ConfigErrors(errors)
    return Project(
        root=root,
        config=project_config,
        sources=sources,
        models=audiences.models,
        destinations=destinations,
        syncs=syncs,
        registry=reg,
        positions=project_positions,
        audience_schemas=audiences.schemas,
        audiences=audiences.audiences,
        priority_lists=audiences.priority_lists,
        broken=broken,
    )


_ISOLABLE = ("sources", "models", "destinations", "syncs")


def _isolated(errors: list[ConfigError]) -> dict[tuple[str, str], list[ConfigError]]:
    """``errors`` by the definition whose file each names; raises when one names no
    definition (the project file, an audience, a folder), which nothing can run without."""
    found: dict[tuple[str, str], list[ConfigError]] = {}
    for error in errors:
        parts = Path(error.file).parts if error.file else ()
        if len(parts) < 2 or parts[0] not in _ISOLABLE:
            raise ConfigErrors(errors)
        found.setdefault((parts[0], Path(parts[-1]).stem), []).append(error)
    return found


__all__ = ["find_root", "load_project", "quote_table", "read_yaml", "validate"]
