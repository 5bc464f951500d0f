"""A loaded project: every definition with the file it came from.

Built by :func:`backhaul.config.loader.load_project`. Holds configs exactly as written:
``${env:NAME}`` references stay unresolved until :func:`backhaul.config.secrets.resolve`
is called at run time, so no secret value is ever kept on this object.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from backhaul.config.models import DuckDBSourceConfig
from backhaul.config.models import ModelConfig
from backhaul.config.models import ProjectConfig
from backhaul.config.models import SyncConfig
from backhaul.errors import ConfigError
from backhaul.plugins import Registry

if TYPE_CHECKING:
    from backhaul.audiences.defs import AudienceDef
    from backhaul.audiences.defs import AudienceSchemaDef
    from backhaul.audiences.priority import PriorityListDef
    from backhaul.state.rowlog import RowLogs


@dataclass(frozen=True)
class Positions:
    """Line numbers of the keys of one YAML file, by dotted key path (``mappings.2.column``)."""

    file: Path
    lines: dict[str, int] = field(default_factory=dict)

    def line(self, key: str | None) -> int | None:
        """The line of ``key``, or of its nearest parent that has one."""
        if key is None:
            return None
        parts = key.split(".")
        while parts:
            found = self.lines.get(".".join(parts))
            if found is not None:
                return found
            parts.pop()
        return None

    def error(self, message: str, key: str | None) -> ConfigError:
        """A :class:`ConfigError` naming this file, and ``key`` with its line."""
        return ConfigError(message, file=self.file.as_posix(), line=self.line(key), key=key)


def unknown_name(kind: str, name: str, known: Iterable[str]) -> str:
    """``unknown model `x` (did you mean `y`? known: ...)``, for a name that names nothing."""
    names = sorted(known)
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"did you mean `{close[0]}`? " if close else ""
    return f"unknown {kind} `{name}` ({hint}known: {', '.join(names) or 'none'})"


@dataclass(frozen=True)
class ConnectorDef:
    """A file of ``sources/`` or ``destinations/``: its connector's config and what it held."""

    name: str
    config: Any  # the connector's config model, with ``${env:..}`` references unresolved
    raw: dict[str, Any]
    positions: Positions


class SourceDef(ConnectorDef):
    """``sources/NAME.yml`` (the config is DuckDBSourceConfig for the default source)."""


@dataclass(frozen=True)
class ModelDef:
    name: str
    config: ModelConfig
    sql: str  # resolved query text (from the .sql file, inline `sql`, or `table`)
    sql_file: Path | None
    positions: Positions
    audience: str | None = None  # set when the model is compiled from audiences/NAME.yml
    personal: frozenset[str] = frozenset()  # columns an audience schema marks personal


class DestinationDef(ConnectorDef):
    """``destinations/NAME.yml``."""


@dataclass(frozen=True)
class SyncDef:
    name: str
    config: SyncConfig
    positions: Positions


@dataclass
class Project:
    """Everything in one project folder."""

    root: Path
    config: ProjectConfig
    sources: dict[str, SourceDef]
    models: dict[str, ModelDef]
    destinations: dict[str, DestinationDef]
    syncs: dict[str, SyncDef]
    registry: Registry
    positions: Positions | None = None
    audience_schemas: dict[str, AudienceSchemaDef] = field(default_factory=dict)
    audiences: dict[str, AudienceDef] = field(default_factory=dict)
    priority_lists: dict[str, PriorityListDef] = field(default_factory=dict)
    #: Definitions whose own file is invalid, by (folder, name), when the project was
    #: loaded with ``isolate=True``: they are left out of the dicts above and each sync
    #: that is (or uses) one fails alone with these errors.
    broken: dict[tuple[str, str], list[ConfigError]] = field(default_factory=dict)

    @property
    def state_dir(self) -> Path:
        path = Path(self.config.state.path)
        return path if path.is_absolute() else self.root / path

    @property
    def metadata_url(self) -> str:
        url = self.config.state.metadata_url
        if url:
            return url
        return f"sqlite:///{self.state_dir / 'backhaul.db'}"

    @property
    def row_logs(self) -> RowLogs:
        """The row-log folder of the project's runs, with its retention."""
        from backhaul.state.rowlog import Retention
        from backhaul.state.rowlog import RowLogs

        config = self.config.state.row_logs
        path = Path(config.path)
        return RowLogs(
            path if path.is_absolute() else self.state_dir / path,
            Retention(keep_days=config.keep_days, keep_runs=config.keep_runs),
        )

    @property
    def broken_syncs(self) -> list[str]:
        """Syncs whose own file is invalid (only with ``isolate=True``), in name order."""
        return sorted(name for folder, name in self.broken if folder == "syncs")

    def broken_errors(self, folder: str, name: str | None) -> list[ConfigError]:
        """The errors of an invalid definition (empty when it is sound or unknown)."""
        return list(self.broken.get((folder, name), [])) if name is not None else []

    def sync(self, name: str) -> SyncDef:
        try:
            return self.syncs[name]
        except KeyError:
            known = ", ".join(sorted(self.syncs)) or "none"
            raise ConfigError(f"unknown sync `{name}` (known: {known})") from None


__all__ = [
    "ConnectorDef",
    "DestinationDef",
    "DuckDBSourceConfig",
    "ModelDef",
    "Positions",
    "Project",
    "SourceDef",
    "SyncDef",
]
