"""The source protocol: a warehouse that runs a model's SQL and streams Arrow batches."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from typing import ClassVar
from typing import Protocol
from typing import runtime_checkable

import duckdb
import pyarrow as pa


@runtime_checkable
class Source(Protocol):
    """An open connection to a warehouse."""

    config_model: ClassVar[type[Any]]
    config: Any  # the source file, secrets resolved (its model is ``config_model``)

    def __init__(self, config: Any, project_dir: Path) -> None:
        """Open the warehouse named by ``config`` (its secrets resolved); relative paths
        are relative to ``project_dir``."""

    def columns(self, sql: str) -> dict[str, str]:
        """Column names and types of ``sql``'s result, without running it in full.

        Raises :class:`~backhaul.errors.SourceError` with the warehouse's message when the
        SQL does not compile.
        """
        ...

    def stream(self, sql: str, batch_size: int = 100_000) -> pa.RecordBatchReader:
        """Run ``sql`` and stream its rows as Arrow record batches."""
        ...

    def attach(self, con: duckdb.DuckDBPyConnection, alias: str) -> str | None:
        """Make the warehouse readable from ``con`` without copying, when possible.

        Returns the SQL prefix to qualify the model's tables with (the planner then runs the
        model inside ``con``), or ``None`` when the source cannot be attached and must be
        streamed.
        """
        ...

    def check(self) -> None: ...

    def close(self) -> None: ...
