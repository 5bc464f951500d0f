"""Turn a model's dbt references into SQL: ``dbt: name`` and ``{{ ref('name') }}``.

The rule, exactly: a model with ``dbt: NAME`` (or ``dbt: ref('NAME')``) runs
``SELECT * FROM "schema"."alias"`` of that dbt node. In model SQL (a ``.sql`` file or inline
``sql``), each ``{{ ref('NAME') }}`` or ``{{ ref('PACKAGE', 'NAME') }}`` is replaced by the
node's ``"schema"."alias"``; no other Jinja is rendered. The manifest is only read when a
model has a reference, and then once per project load.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING

from backhaul.dbt.manifest import REF_JINJA
from backhaul.dbt.manifest import DbtNode
from backhaul.dbt.manifest import Manifest
from backhaul.dbt.manifest import load_manifest
from backhaul.dbt.manifest import parse_ref
from backhaul.errors import ConfigError
from backhaul.files import NotReadable
from backhaul.files import read_text

if TYPE_CHECKING:
    from backhaul.config.project import ModelDef
    from backhaul.config.project import Project


@dataclass
class RefResolver:
    """Resolves dbt references of the models of one project against its manifest."""

    root: Path
    dbt_project: str | None
    _manifest: Manifest | None = field(default=None, repr=False)
    _error: ConfigError | None = field(default=None, repr=False)

    @property
    def project_dir(self) -> Path | None:
        if self.dbt_project is None:
            return None
        path = Path(self.dbt_project).expanduser()
        return (path if path.is_absolute() else self.root / path).resolve()

    def manifest(self) -> Manifest:
        """The manifest, read once.

        Raises:
            ConfigError: No ``dbt_project`` is set, or its manifest cannot be read.
        """
        if self._manifest is not None:
            return self._manifest
        if self._error is None:
            folder = self.project_dir
            if folder is None:
                self._error = ConfigError(
                    "this model refers to a dbt model but backhaul.yml has no `dbt_project`: "
                    "set it to the dbt project folder (relative to backhaul.yml)"
                )
            else:
                try:
                    self._manifest = load_manifest(folder)
                    return self._manifest
                except ConfigError as exc:
                    self._error = exc
        raise self._error

    def node(self, ref: str, *, file: str, line: int | None, key: str | None) -> DbtNode:
        """The node a ``dbt:`` value or ``ref(...)`` names; errors point at file:line."""
        try:
            package, name = parse_ref(ref)
            return self.manifest().resolve(name, package)
        except ConfigError as exc:
            raise ConfigError(exc.reason, file=file, line=line, key=key) from None

    def select_sql(self, ref: str, *, file: str, line: int | None) -> str:
        """``SELECT * FROM <relation>`` for a model's ``dbt:`` value."""
        node = self.node(ref, file=file, line=line, key="dbt")
        return f"SELECT * FROM {node.relation}"

    def render(
        self, sql: str, *, file: str, line: int | None = None, key: str | None = None
    ) -> str:
        """``sql`` with each ``{{ ref(...) }}`` replaced by its relation.

        ``line`` is the line of an inline ``sql`` key; for a SQL file (``line`` None) errors
        name the line of the reference in the file.
        """
        if "ref" not in sql:  # the common case: no manifest needed
            return sql

        def replace(match: re.Match[str]) -> str:
            where = line if line is not None else sql.count("\n", 0, match.start()) + 1
            return self.node(_ref_text(match), file=file, line=where, key=key).relation

        return REF_JINJA.sub(replace, sql)


def model_refs(project: Project, model: ModelDef) -> list[str]:
    """The ``ref(...)`` texts a model depends on, as written (``dbt:`` or SQL)."""
    if model.config.dbt is not None:
        return [model.config.dbt]
    text = model.config.sql
    if text is None and model.sql_file is not None:
        try:
            text = read_text(model.sql_file)
        except NotReadable:  # the loader says why
            return []
    if not text:
        return []
    return [_ref_text(m) for m in REF_JINJA.finditer(text)]


def _ref_text(match: re.Match[str]) -> str:
    """``ref('name')`` or ``ref('package', 'name')`` from a REF_JINJA match."""
    if match.group(4):
        return f"ref('{match.group(2)}', '{match.group(4)}')"
    return f"ref('{match.group(2)}')"


def model_nodes(project: Project, model: ModelDef, manifest: Manifest) -> list[DbtNode]:
    """The dbt nodes a model reads (unknown references are left out)."""
    out: list[DbtNode] = []
    for ref in model_refs(project, model):
        package, name = parse_ref(ref)
        node = manifest.find(name, package)
        if node is not None and node not in out:
            out.append(node)
    return out


__all__ = ["RefResolver", "model_nodes", "model_refs"]
