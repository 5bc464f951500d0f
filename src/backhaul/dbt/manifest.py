"""Read dbt's ``target/manifest.json``: models, their relations, tags, columns and tests.

Only the few keys Backhaul needs are read, so any manifest from dbt 1.5 on works. The
relation of a node is ``"schema"."alias"``: the database part is left out on purpose,
because the Backhaul source already connects to that database (and DuckDB attaches the
warehouse file under its own name, which need not match dbt's).
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

from backhaul.errors import ConfigError
from backhaul.files import MISSING
from backhaul.files import NotReadable
from backhaul.files import read_text

# The manifest of a large dbt project runs to hundreds of megabytes.
MAX_ARTIFACT_BYTES = 2 * 1024**3

# Nodes that `ref()` can point at: each is built into a relation in the warehouse.
REF_TYPES = ("model", "seed", "snapshot")
_REF_ARGS = r"""\(\s*(['"])([^'"]+)\1\s*(?:,\s*(['"])([^'"]+)\3\s*)?\)"""
# `ref('name')` or `ref('package', 'name')`, as a model's `dbt:` value.
REF_CALL = re.compile(rf"^\s*ref\s*{_REF_ARGS}\s*$")
# `{{ ref('name') }}` inside model SQL; nothing else in the SQL is treated as Jinja.
REF_JINJA = re.compile(rf"\{{\{{-?\s*ref\s*{_REF_ARGS}\s*-?\}}\}}")


@dataclass(frozen=True)
class DbtNode:
    """One dbt model (or seed, or snapshot) as the manifest describes it."""

    unique_id: str
    name: str
    package: str
    resource_type: str
    database: str | None
    schema: str
    alias: str
    tags: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()
    description: str = ""
    # Columns with both a `unique` and a `not_null` test: good primary-key candidates.
    key_columns: tuple[str, ...] = ()
    # The `schema` the node's config sets (before dbt's generate_schema_name), if any.
    config_schema: str | None = None
    # The unique ids of the nodes it is built from (its parents in dbt's graph).
    depends_on: tuple[str, ...] = ()

    @property
    def relation(self) -> str:
        """``"schema"."alias"``, quoted for SQL."""
        return f"{_quote(self.schema)}.{_quote(self.alias)}"

    @property
    def ref(self) -> str:
        """The ``ref('name')`` that points at this node."""
        return f"ref('{self.name}')"


@dataclass(frozen=True)
class Manifest:
    """The nodes of one dbt project's manifest, looked up by name."""

    path: Path
    project_name: str
    nodes: dict[str, DbtNode]  # by unique_id
    disabled: frozenset[str] = field(default_factory=frozenset)  # names of disabled nodes

    def find(self, name: str, package: str | None = None) -> DbtNode | None:
        """The node ``ref(package, name)`` points at; the root project's wins a tie."""
        found = [
            n
            for n in self.nodes.values()
            if n.name == name and (package is None or n.package == package)
        ]
        if len(found) > 1:
            found = [n for n in found if n.package == self.project_name] or found
        return found[0] if found else None

    def resolve(self, name: str, package: str | None = None) -> DbtNode:
        """Like :meth:`find`, but an unknown name is an error saying what to do.

        Raises:
            ConfigError: No such node (the message suggests close names).
        """
        node = self.find(name, package)
        if node is not None:
            return node
        shown = f"{package}.{name}" if package else name
        if name in self.disabled:
            raise ConfigError(f"dbt model `{shown}` is disabled in the dbt project")
        names = sorted({n.name for n in self.nodes.values()})
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"did you mean `{close[0]}`? " if close else ""
        raise ConfigError(
            f"unknown dbt model `{shown}` in {self.path} ({hint}known: "
            f"{', '.join(names) or 'none'}); run `dbt parse` if it was added recently"
        )

    def select(self, selectors: list[str]) -> list[DbtNode]:
        """Models chosen by name or ``tag:NAME``; every model when ``selectors`` is empty.

        Raises:
            ConfigError: A selector matches nothing.
        """
        models = sorted(
            (n for n in self.nodes.values() if n.resource_type == "model"),
            key=lambda n: n.name,
        )
        if not selectors:
            return models
        chosen: dict[str, DbtNode] = {}
        for sel in selectors:
            if sel.startswith("tag:"):
                hits = [n for n in models if sel[4:] in n.tags]
            else:
                hits = [self.resolve(sel)]
            if not hits:
                raise ConfigError(f"`--select {sel}` matches no dbt model in {self.path}")
            chosen.update((n.unique_id, n) for n in hits)
        return sorted(chosen.values(), key=lambda n: n.name)


def parse_ref(text: str) -> tuple[str | None, str]:
    """``(package, name)`` from ``ref('name')``, ``ref('pkg', 'name')`` or a bare name.

    Raises:
        ConfigError: The text is none of those.
    """
    match = REF_CALL.match(text)
    if match:
        first, second = match.group(2), match.group(4)
        return (first, second) if second else (None, first)
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", text.strip()):
        return None, text.strip()
    raise ConfigError(
        f"`{text}` is not a dbt model reference: write the model's name, `ref('name')` "
        "or `ref('package', 'name')`"
    )


def target_path(project_dir: Path) -> Path:
    """The dbt project's target folder (``target-path`` in dbt_project.yml, else target)."""
    target = "target"
    config = project_dir / "dbt_project.yml"
    if config.is_file():
        from ruamel.yaml import YAML

        try:
            data = YAML(typ="safe").load(config.read_text(encoding="utf-8"))
        except Exception:  # a broken dbt_project.yml is dbt's to report; use the default
            data = None
        if isinstance(data, dict) and isinstance(data.get("target-path"), str):
            target = data["target-path"]
    path = Path(target)
    return path if path.is_absolute() else project_dir / path


def read_artifact(path: Path, what: str, missing: str) -> Any:
    """The JSON document of the dbt artifact at ``path``, read only from a regular file (a
    named pipe would be waited on forever). ``what`` names it in messages; ``missing`` says
    what to run when it is not there.

    Raises:
        ConfigError: The file is missing, is no regular file, or is not JSON.
    """
    try:
        return json.loads(read_text(path, limit=MAX_ARTIFACT_BYTES))
    except NotReadable as exc:
        if exc.reason == MISSING:
            raise ConfigError(f"no {what} at {path}: {missing}") from None
        raise ConfigError(f"cannot read {what} {path}: it {exc.reason}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc}") from None


def load_manifest(path: Path) -> Manifest:
    """Read a manifest file (or the one in a dbt project folder's target path).

    Raises:
        ConfigError: The file is missing or is not a dbt manifest.
    """
    if path.is_dir():
        path = target_path(path) / "manifest.json"
    data = read_artifact(
        path,
        "dbt manifest",
        "run `dbt parse` (or `dbt build`) in the dbt project first, or fix `dbt_project` in "
        "backhaul.yml",
    )
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), dict):
        raise ConfigError(f"{path} is not a dbt manifest (it has no `nodes`)")
    metadata = data.get("metadata") or {}
    keys = _key_columns(data["nodes"])
    nodes: dict[str, DbtNode] = {}
    for uid, raw in data["nodes"].items():
        if isinstance(raw, dict) and raw.get("resource_type") in REF_TYPES:
            nodes[uid] = _node(uid, raw, keys.get(uid, ()))
    disabled = {
        str(raw.get("name"))
        for entries in (data.get("disabled") or {}).values()
        for raw in (entries if isinstance(entries, list) else [])
        if isinstance(raw, dict)
    }
    return Manifest(path, str(metadata.get("project_name") or ""), nodes, frozenset(disabled))


def _node(uid: str, raw: dict[str, Any], keys: tuple[str, ...]) -> DbtNode:
    columns = raw.get("columns") or {}
    return DbtNode(
        unique_id=uid,
        name=str(raw["name"]),
        package=str(raw.get("package_name") or ""),
        resource_type=str(raw["resource_type"]),
        database=raw.get("database"),
        schema=str(raw.get("schema") or ""),
        alias=str(raw.get("alias") or raw["name"]),
        tags=tuple(str(t) for t in raw.get("tags") or ()),
        columns=tuple(str(c.get("name", k)) for k, c in columns.items()),
        description=str(raw.get("description") or ""),
        key_columns=keys,
        config_schema=_config_schema(raw),
        depends_on=tuple(str(n) for n in (raw.get("depends_on") or {}).get("nodes") or ()),
    )


def _config_schema(raw: dict[str, Any]) -> str | None:
    config = raw.get("config")
    schema = config.get("schema") if isinstance(config, dict) else None
    return schema if isinstance(schema, str) and schema else None


def _key_columns(nodes: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    """Per model, the columns that have both a `unique` and a `not_null` test."""
    tests: dict[tuple[str, str], set[str]] = {}
    for raw in nodes.values():
        if not isinstance(raw, dict) or raw.get("resource_type") != "test":
            continue
        meta = raw.get("test_metadata") or {}
        kind = meta.get("name")
        column = raw.get("column_name") or (meta.get("kwargs") or {}).get("column_name")
        target = raw.get("attached_node") or next(
            iter((raw.get("depends_on") or {}).get("nodes") or []), None
        )
        if kind in ("unique", "not_null") and column and target:
            tests.setdefault((target, str(column)), set()).add(kind)
    out: dict[str, tuple[str, ...]] = {}
    for (target, column), kinds in sorted(tests.items()):
        if kinds == {"unique", "not_null"}:
            out[target] = (*out.get(target, ()), column)
    return out


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


__all__ = [
    "REF_CALL",
    "REF_JINJA",
    "DbtNode",
    "Manifest",
    "load_manifest",
    "parse_ref",
    "target_path",
]
