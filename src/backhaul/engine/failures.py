"""What breaks underneath a run, said in one line with what to do next.

DuckDB reports a damaged snapshot file, a full disk and a model that fails on one of its
rows as the same kind of exception, from the same connection. Each guard here wraps one
step whose files are known, so the error can name the right file: the model's SQL file
for a failing row, the sync's snapshot file for damage, its disk for a failed write. Any
other error passes through untouched: it is a bug and must show as one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path

import duckdb
import pyarrow as pa

from backhaul.config.project import ModelDef
from backhaul.config.project import Project
from backhaul.errors import ModelError
from backhaul.errors import SourceError
from backhaul.errors import StateError
from backhaul.errors import first_line
from backhaul.state import snapshots
from backhaul.state.snapshots import Failure
from backhaul.state.snapshots import failure


class Phase(StrEnum):
    """Where a run was when the state failed: it decides what was sent and what happens next."""

    PLAN = "plan"  # nothing has been sent yet
    CHECKPOINT = "checkpoint"  # a batch was delivered; recording it failed
    FINISH = "finish"  # everything delivered is in the checkpoint log


def shown(project: Project, path: Path) -> str:
    """A state path as messages name it: relative to the project folder when inside it."""
    try:
        return path.relative_to(project.root).as_posix()
    except ValueError:
        return path.as_posix()


def state_error(project: Project, sync: str, kind: Failure, cause: str, phase: Phase) -> StateError:
    """The one-line message for a state failure of ``kind`` during ``phase``."""
    file = shown(project, snapshots.state_path(project.state_dir, sync))
    again = f"run `backhaul run {sync}` again"
    if kind is Failure.DAMAGED:
        done = "nothing was sent" if phase is Phase.PLAN else "the run stopped"
        return StateError(
            f"the snapshot of sync `{sync}` is damaged ({file}: {cause}); {done}. "
            f"`backhaul reset {sync}` forgets it, and the next run sends every model row again "
            "like a full resync (deleting nothing); or restore the file from a backup"
        )
    if kind is Failure.MEMORY:
        done = "nothing was sent" if phase is Phase.PLAN else "the run stopped"
        return StateError(
            f"sync `{sync}` ran out of memory (state.memory_limit "
            f"{project.config.state.memory_limit}; DuckDB spills to "
            f"{shown(project, project.state_dir / 'tmp')}/ "
            f"while that disk has room): {cause}; {done}. Raise state.memory_limit in "
            f"backhaul.yml or free disk space, then {again}"
        )
    where = f"no space left on the disk of {file} ({cause})"
    if phase is Phase.PLAN:
        return StateError(
            f"{where} while planning sync `{sync}`; nothing was sent. Free space there and {again}"
        )
    if phase is Phase.CHECKPOINT:
        return StateError(
            f"{where} while recording delivered rows; the run stopped. Free space there and "
            f"{again}: rows whose delivery was not recorded are sent again"
        )
    return StateError(
        f"{where} while folding the checkpoints into the snapshot; every delivered row is in "
        f"the checkpoint log. Free space there and {again}"
    )


@contextmanager
def state_guard(project: Project, sync: str, phase: Phase) -> Iterator[None]:
    """Turn a damaged snapshot, a full disk or exhausted memory into a :class:`StateError`."""
    try:
        yield
    except duckdb.Error as exc:
        path = snapshots.state_path(project.state_dir, sync)
        kind = failure(exc, path)
        if kind is None:
            raise
        raise state_error(project, sync, kind, cause(exc, path), phase) from None


def cause(exc: duckdb.Error, path: Path) -> str:
    """DuckDB's first line, without the state file's path (the message names it already)."""
    return first_line(exc).replace(f' "{path}"', "").rstrip(".")


def model_error(project: Project, model: ModelDef, cause: str) -> ModelError:
    """A model query that failed on its rows, naming the model's SQL (file, or key)."""
    message = (
        f"the model query failed on its rows: {cause.rstrip('.')}; fix the query (or the data) and run "
        "again. Nothing was sent"
    )
    if model.sql_file is not None:
        return ModelError(message, file=shown(project, model.sql_file))
    key = "sql" if model.config.sql is not None else "table" if model.config.table else "dbt"
    return ModelError(
        message, file=model.positions.file.as_posix(), line=model.positions.line(key), key=key
    )


@contextmanager
def model_guard(project: Project, model: ModelDef) -> Iterator[None]:
    """Around a statement that reads the model's rows (and writes only scratch tables).

    A value the query cannot compute (a failed cast, a division by zero, ``error()``)
    becomes a :class:`ModelError`; a damaged warehouse file a :class:`SourceError`, so it is
    never taken for a damaged snapshot. A full disk goes on to :func:`state_guard`.
    """
    try:
        yield
    except (duckdb.DataError, duckdb.InvalidInputException) as exc:
        raise model_error(project, model, first_line(exc)) from None
    except duckdb.Error as exc:
        if failure(exc) is not Failure.DAMAGED:
            raise
        raise SourceError(
            f"the warehouse of source `{model.config.source}` could not be read while running "
            f"model `{model.name}`: {first_line(exc)}; nothing was sent"
        ) from None


class StreamWatch:
    """Wraps a source's stream to keep the error it raised while DuckDB was reading it.

    DuckDB reports a failing Python stream as its own error with the traceback as text;
    the source's typed error (a Postgres error mid-stream) is kept here instead.
    """

    def __init__(self, reader: pa.RecordBatchReader) -> None:
        self.error: BaseException | None = None
        self._inner = reader
        self.reader = pa.RecordBatchReader.from_batches(reader.schema, self._batches())

    def _batches(self) -> Iterator[pa.RecordBatch]:
        try:
            yield from self._inner
        except BaseException as exc:
            self.error = exc
            raise


__all__ = [
    "Phase",
    "StreamWatch",
    "cause",
    "model_error",
    "model_guard",
    "shown",
    "state_error",
    "state_guard",
]
