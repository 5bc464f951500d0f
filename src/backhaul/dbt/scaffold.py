"""``backhaul init --from-dbt``: Backhaul models for selected dbt models.

Each selected dbt model becomes ``models/NAME.yml`` with ``dbt: NAME``. Its primary key
is the column that has both a ``unique`` and a ``not_null`` test in dbt; without one the
file says ``primary_key: TODO``, which ``backhaul validate`` reports (with the model's
columns) until it is set. The warehouse source is taken from the dbt profile when it can
be told: a dbt-duckdb file path, or a dbt-postgres connection (its password as
``${env:NAME}``); otherwise the source file holds a TODO.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from backhaul.config.models import NAME_PATTERN
from backhaul.config.scaffold import SCHEMA_DIR
from backhaul.config.scaffold import default_name
from backhaul.config.schema import modeline
from backhaul.config.schema import write_schemas
from backhaul.dbt.manifest import DbtNode
from backhaul.dbt.manifest import load_manifest
from backhaul.errors import ConfigError
from backhaul.files import MISSING
from backhaul.files import problem
from backhaul.files import read_text
from backhaul.plugins import Registry

TODO_KEY = "TODO"
SOURCE = "warehouse"


def init_from_dbt(
    dir: Path,
    dbt_dir: Path,
    selectors: list[str],
    *,
    name: str | None = None,
    force: bool = False,
    registry: Registry | None = None,
) -> list[Path]:
    """Write a project (or add models to the one in ``dir``) for selected dbt models.

    Args:
        dir: The Backhaul project folder (created if needed).
        dbt_dir: The dbt project folder; its ``target/manifest.json`` must exist.
        selectors: dbt model names or ``tag:NAME``; empty selects every model.
        name: Project name for a new project; default: the folder name.
        force: Overwrite model files that exist already.
        registry: Connectors for the editor schemas; default: installed connectors.

    Returns:
        The files written.

    Raises:
        ConfigError: No manifest, a selector matches nothing, or an existing project
            does not point at this dbt project.
    """
    dir, dbt_dir = Path(dir).resolve(), Path(dbt_dir).resolve()
    found = problem(dbt_dir / "dbt_project.yml")
    if found == MISSING:
        raise ConfigError(f"{dbt_dir} is not a dbt project (it has no dbt_project.yml)")
    if found is not None:
        raise ConfigError(f"{dbt_dir / 'dbt_project.yml'} {found}: it should be dbt's project file")
    nodes = load_manifest(dbt_dir).select(selectors)
    dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if not (dir / "backhaul.yml").exists():
        written += _new_project(dir, dbt_dir, name)
    else:
        _check_existing(dir, dbt_dir)
    for node in nodes:
        path = dir / "models" / f"{node.name}.yml"
        if path.exists() and not force:
            continue
        if not re.match(NAME_PATTERN, node.name):
            continue  # dbt names are identifiers, so this is only a safeguard
        _write(path, modeline("model", f"models/{node.name}.yml", SCHEMA_DIR), _model(node))
        written.append(path)
    written += write_schemas(dir / SCHEMA_DIR, registry, schema_dir=SCHEMA_DIR)
    return written


def _new_project(dir: Path, dbt_dir: Path, name: str | None) -> list[Path]:
    name = name if name is not None else default_name(dir)
    if not re.match(NAME_PATTERN, name):
        raise ConfigError(f"invalid project name `{name}`: use letters, digits, `_` and `-`")
    rel = Path(os.path.relpath(dbt_dir, dir)).as_posix()
    project = (
        f"name: {name}\nversion: 1\ndbt_project: {_scalar(rel)}   # models read its "
        "target/manifest.json\nstate:\n  path: .backhaul\n"
    )
    source = _source(dir, dbt_dir)
    written = []
    for rel_path, kind, text in (
        ("backhaul.yml", "project", project),
        (f"sources/{SOURCE}.yml", "source", source),
    ):
        path = dir / rel_path
        _write(path, modeline(kind, rel_path, SCHEMA_DIR) if kind else "", text)
        written.append(path)
    gitignore = dir / ".gitignore"
    if not gitignore.exists():
        gitignore.write_text("# Backhaul local state\n.backhaul/\n", encoding="utf-8")
        written.append(gitignore)
    return written


def _check_existing(dir: Path, dbt_dir: Path) -> None:
    from backhaul.config.loader import read_yaml

    data, _ = read_yaml(dir / "backhaul.yml", dir)
    current = data.get("dbt_project") if isinstance(data, dict) else None
    if current is None or (dir / str(current)).resolve() != dbt_dir:
        raise ConfigError(
            f"backhaul.yml points at dbt project {current or '(none)'}: set `dbt_project: "
            f"{Path(os.path.relpath(dbt_dir, dir)).as_posix()}` in it first",
            file="backhaul.yml",
        )


def _write(path: Path, header: str, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text((header + "\n" if header else "") + text, encoding="utf-8")


def _model(node: DbtNode) -> str:
    lines = [f"source: {SOURCE}", f"dbt: {node.name}"]
    if node.key_columns:
        key = node.key_columns[0] if len(node.key_columns) == 1 else list(node.key_columns)
        tests = "tests" if len(node.key_columns) == 1 else "tests on each"
        lines.append(f"primary_key: {_scalar(key)}   # from dbt's unique + not_null {tests}")
    else:
        hint = f" (columns: {', '.join(node.columns)})" if node.columns else ""
        lines.append(
            f"primary_key: {TODO_KEY}   # TODO: the column(s) that identify a row{hint}; "
            "a unique + not_null test in dbt would fill this in"
        )
    if node.description:
        lines.append(f"description: {_scalar(node.description)}")
    if node.tags:
        lines.append(f"tags: [{', '.join(_scalar(t) for t in node.tags)}]")
    return "\n".join(lines) + "\n"


def _source(dir: Path, dbt_dir: Path) -> str:
    """The source file for the dbt profile's warehouse, or a TODO when it cannot tell."""
    output = _profile_output(dbt_dir)
    kind = output.get("type") if output else None
    if kind == "duckdb":
        path = output.get("path") if output else None
        if isinstance(path, str) and "{{" not in path and path != ":memory:":
            full = Path(path).expanduser()
            full = full if full.is_absolute() else dbt_dir / full
            shown = Path(os.path.relpath(full.resolve(), dir)).as_posix()
            return f"type: duckdb\npath: {_scalar(shown)}   # the file dbt builds into\n"
    if kind == "postgres" and output is not None:
        fields = {k: output.get(k) for k in ("host", "port", "user", "dbname")}
        if all(isinstance(v, str | int) and "{{" not in str(v) for v in fields.values()):
            return (
                "type: postgres\n"
                f"host: {_scalar(str(fields['host']))}\n"
                f"port: {fields['port']}\n"
                f"user: {_scalar(str(fields['user']))}\n"
                "password: ${env:WAREHOUSE_PASSWORD}   # set this variable before running\n"
                f"database: {_scalar(str(fields['dbname']))}\n"
            )
    return (
        "# TODO: could not tell the warehouse from the dbt profile; point this at the\n"
        "# database dbt builds into (see `backhaul schema` for the source types).\n"
        "type: duckdb\npath: TODO.duckdb\n"
    )


def _profile_output(dbt_dir: Path) -> dict[str, Any] | None:
    """The dbt profile target the project builds with, when a profiles.yml has it."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe")
    try:
        project = yaml.load(read_text(dbt_dir / "dbt_project.yml"))
        profile_name = project.get("profile") if isinstance(project, dict) else None
        folders = [os.environ.get("DBT_PROFILES_DIR"), str(dbt_dir), "~/.dbt"]
        for folder in (Path(f).expanduser() for f in folders if f):
            file = folder / "profiles.yml"
            if not file.is_file():
                continue
            profiles = yaml.load(read_text(file))
            profile = profiles.get(profile_name) if isinstance(profiles, dict) else None
            if isinstance(profile, dict):
                outputs = profile.get("outputs") or {}
                output = outputs.get(profile.get("target", "dev"))
                return output if isinstance(output, dict) else None
    except Exception:  # an unreadable profile only means we cannot tell
        return None
    return None


def _scalar(value: Any) -> str:
    """A YAML scalar (or flow list) for ``value``, quoted when plain text would not do."""
    if isinstance(value, list):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    text = str(value)
    if re.fullmatch(r"[A-Za-z0-9_./][A-Za-z0-9_./ -]*", text) and not text.endswith(" "):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


__all__ = ["TODO_KEY", "init_from_dbt"]
