"""Helpers for the config tests: project folders on disk and an in-process registry."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from typing import ClassVar
from typing import Literal

import duckdb
import pyarrow as pa

from backhaul.destinations.base import Batch
from backhaul.destinations.base import Capabilities
from backhaul.destinations.base import DestinationConfig
from backhaul.destinations.base import DestinationContext
from backhaul.destinations.base import Operation
from backhaul.destinations.base import RecordResult
from backhaul.plugins import BUILTIN_SOURCES
from backhaul.plugins import Registry
from backhaul.sources.duckdb import DuckDBSource


class CrmConfig(DestinationConfig):
    type: Literal["test"]
    url: str
    password: str | None = None


class _Sink:
    """Keeps written records in memory; enough to stand in for a real connector."""

    def __init__(self, config: DestinationConfig, context: DestinationContext) -> None:
        self.config = config
        self.context = context
        self.records: list[dict[str, Any]] = []

    async def check(self) -> None:
        return None

    async def prepare(
        self, fields: Mapping[str, pa.DataType], match_fields: Sequence[str], object: str | None
    ) -> None:
        return None

    async def write(self, batch: Batch) -> list[RecordResult]:
        self.records += list(batch.records())
        return [RecordResult.ok(i) for i in range(len(batch))]

    async def close(self) -> None:
        return None


class CrmStandIn(_Sink):
    config_model: ClassVar[type[DestinationConfig]] = CrmConfig
    capabilities: ClassVar[Capabilities] = Capabilities(
        operations=frozenset(Operation), max_batch_size=100, default_batch_size=50
    )


class FileStandInConfig(DestinationConfig):
    """The keys the `file` connector takes."""

    type: Literal["file"]
    format: Literal["csv", "jsonl", "parquet"]
    path: str
    layout: Literal["per_run", "current"] = "per_run"


class FileStandIn(_Sink):
    config_model: ClassVar[type[DestinationConfig]] = FileStandInConfig
    capabilities: ClassVar[Capabilities] = Capabilities(
        operations=frozenset(Operation), max_batch_size=10_000
    )


class TrackedDuckDBSource(DuckDBSource):
    """The DuckDB source, remembering which instances were closed."""

    opened: ClassVar[list[TrackedDuckDBSource]] = []

    def __init__(self, config: Any, project_dir: Path) -> None:
        super().__init__(config, project_dir)
        self.closed = False
        TrackedDuckDBSource.opened.append(self)

    def close(self) -> None:
        self.closed = True
        super().close()


def registry(**extra: str) -> Registry:
    """A registry with the DuckDB source and the two test destinations above."""
    destinations = {
        "test": f"{__name__}:CrmStandIn",
        "file": f"{__name__}:FileStandIn",
        **extra,
    }
    return Registry(destinations=destinations, sources=dict(BUILTIN_SOURCES))


def write(root: Path, files: Mapping[str, str]) -> Path:
    """Write ``files`` (path -> dedented text) under ``root``; return ``root``."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return root


def warehouse(path: Path) -> Path:
    """A DuckDB file with a small `users` table."""
    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE users AS SELECT * FROM (VALUES (1, 'a@x.io', 'Ada'), (2, 'b@x.io', 'Bo'))"
        " AS t(id, email, first_name)"
    )
    con.close()
    return path


GOOD = {
    "backhaul.yml": """
        name: acme
        defaults:
          batch_size: 50
        """,
    "sources/warehouse.yml": """
        type: duckdb
        path: warehouse.duckdb
        """,
    "models/users.yml": """
        source: warehouse
        primary_key: id
        """,
    "models/users.sql": """
        SELECT id, email, first_name FROM users
        """,
    "destinations/crm.yml": """
        type: test
        url: https://crm.example.com/api
        password: ${env:BACKHAUL_TEST_CRM_PASSWORD}
        """,
    "syncs/users_to_crm.yml": """
        model: users
        destination: crm
        mappings:
          - column: id
            field: id
          - column: email
            field: email
          - template: "Hi {{ first_name }}"
            field: greeting
          - value: backhaul
            field: origin
        """,
}


def good_project(root: Path, changes: Mapping[str, str] | None = None) -> Path:
    """The GOOD project (with ``changes``: path -> text; empty text leaves a file out)."""
    files = {**GOOD, **(changes or {})}
    write(root, {k: v for k, v in files.items() if v})
    warehouse(root / "warehouse.duckdb")
    return root
