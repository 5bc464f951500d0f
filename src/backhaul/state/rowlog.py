"""Row logs: the per-row outcomes of a run that went well, in Parquet beside the run store.

A run of a million rows has a million outcomes, nearly all ``ok``. Written one SQL row each
into the metadata store they cost half of a first run and ~119 bytes per row per run for
good; here they cost a few bytes per row, are written in bulk from Arrow, and expire.

Layout, one folder per run under ``state.row_logs.path`` (default ``<state.path>/row_logs``)::

    row_logs/<run_id>/outcomes.arrows    while the run is running (Arrow IPC stream)
    row_logs/<run_id>/outcomes.parquet   once it ended (zstd, sorted by key)

Only ``ok`` and ``skipped`` outcomes come here; ``rejected`` and ``invalid`` ones stay in the
metadata store's ``run_rows`` table, where the debugger, the run page and retries read them
and where retention never reaches.

Crash safety: the engine hands a batch's outcomes over only after the batch's checkpoint
committed, and each batch is appended to the stream (one write, in the OS's cache once the
call returns) before the next one starts. A process killed at any instant leaves a stream
whose last message may be torn; :func:`read_stream` stops before it, so what a reader sees
is a prefix of what was checkpointed, never a row whose checkpoint did not commit. The run
that follows (holding the sync's run lock) turns the stream into Parquet.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from typing import Any
from typing import BinaryIO

import pyarrow as pa
import pyarrow.compute as pc

from backhaul.errors import RowLogError
from backhaul.errors import first_line
from backhaul.files import MISSING
from backhaul.files import NotReadable
from backhaul.files import open_regular
from backhaul.files import problem

log = logging.getLogger(__name__)

COLUMNS = ("key", "op", "status", "error", "operation", "call_id")
SCHEMA = pa.schema([(name, pa.string()) for name in COLUMNS])
LOGGED = ("ok", "skipped")  # statuses kept in the row log; the others go to run_rows
STREAM = "outcomes.arrows"
PARQUET = "outcomes.parquet"
_TMP = ".tmp"
SPILL = "duckdb_temp"
_OWN_FILES = (STREAM, PARQUET, PARQUET + _TMP)
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
ROW_GROUP = 122_880  # rows per Parquet row group: DuckDB's own default


@dataclass(frozen=True)
class Retention:
    """How long row logs are kept.

    Args:
        keep_days: Delete the row log of a run that started more than this many days ago.
        keep_runs: Also keep only the newest this many runs' row logs of each sync.
    """

    keep_days: float | None = 30
    keep_runs: int | None = None


def usable_id(run_id: str) -> bool:
    """Whether ``run_id`` can name a folder (engine run ids always can)."""
    return bool(_SAFE_ID.match(run_id)) and run_id not in (".", "..")


def split_outcomes(table: pa.Table) -> tuple[pa.Table, pa.Table]:
    """``(logged, kept)``: the ok and skipped outcomes, and the rejected and invalid ones."""
    mask = pc.is_in(table.column("status"), pa.array(LOGGED, pa.string()))
    mask = pc.fill_null(mask, False)
    return table.filter(mask), table.filter(pc.invert(mask))


def conform(table: pa.Table) -> pa.Table:
    """The outcome columns in their fixed order, all strings."""
    return table.select(list(COLUMNS)).cast(SCHEMA)


class RowLogWriter:
    """Appends one run's outcomes to its stream; thread-safe."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / STREAM
        self._sink = pa.OSFile(str(self.path), "wb")  # unbuffered: each write is a syscall
        options = pa.ipc.IpcWriteOptions(compression="zstd")
        self._writer = pa.ipc.new_stream(self._sink, SCHEMA, options=options)
        self._lock = threading.Lock()
        self.rows = 0

    def append(self, table: pa.Table) -> None:
        """Append one batch's outcomes (one stream message per record batch)."""
        if not table.num_rows:
            return
        with self._lock:
            for batch in conform(table).combine_chunks().to_batches():
                self._writer.write_batch(batch)
            self.rows += table.num_rows

    def close(self) -> None:
        with self._lock:
            self._writer.close()
            self._sink.close()


def read_stream(path: Path) -> Iterator[pa.RecordBatch]:
    """The whole record batches of a stream, stopping quietly at a torn last message.

    Raises:
        RowLogError: Something other than a regular file stands at ``path`` (reading a
            named pipe would wait forever), or it cannot be opened.
    """
    source = _open_regular(path)
    if source is None:
        return
    with source:
        try:
            reader = pa.ipc.open_stream(source)
        except (pa.ArrowInvalid, OSError):  # killed before the schema was written
            return
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except (pa.ArrowInvalid, OSError):  # the message a kill cut short
                return
            yield batch


def _open_regular(path: Path) -> BinaryIO | None:
    """``path`` opened for reading when it is a regular file (never waiting on a pipe);
    None when nothing is there."""
    try:
        return open_regular(path)
    except NotReadable as exc:
        if exc.reason == MISSING:
            return None
        raise RowLogError(unreadable(path, exc.reason)) from None


def _is_regular(path: Path) -> bool:
    """Whether a regular file is at ``path``: False when nothing is there.

    Raises:
        RowLogError: Something else is there (a folder, a named pipe, a device).
    """
    reason = problem(path)
    if reason == MISSING:
        return False
    if reason is not None:
        raise RowLogError(unreadable(path, reason))
    return True


def _bad_file(exc: BaseException) -> bool:
    """Whether DuckDB failed on the file it read (not on the query asked of it)."""
    import duckdb

    return isinstance(exc, duckdb.IOException | duckdb.InvalidInputException)


def unreadable(path: Path, reason: str) -> str:
    """The message for a row-log file that cannot be read: ``reason`` completes "<path> ..."."""
    return (
        f"row log {path} {reason}; move it out of the row-log folder (the run's record and "
        "its rejected and invalid rows stay readable without it)"
    )


class RowLogs:
    """The row-log folder of a project: writers, readers, compaction and retention.

    Args:
        root: The folder holding one sub-folder per run.
        retention: How long logs are kept.
    """

    def __init__(self, root: Path, retention: Retention | None = None) -> None:
        self.root = root
        self.retention = retention or Retention()
        self._writers: dict[str, RowLogWriter] = {}
        self._reader: Any = None
        self._lock = threading.Lock()

    def folder(self, run_id: str) -> Path:
        return self.root / run_id

    # -- writing -------------------------------------------------------------------------

    def append(self, run_id: str, table: pa.Table) -> bool:
        """Append outcomes to the run's stream; False when the run's log is already closed
        (the caller then keeps the rows elsewhere)."""
        if not usable_id(run_id):
            return False
        with self._lock:
            writer = self._writers.get(run_id)
            if writer is None:
                folder = self.folder(run_id)
                if (folder / PARQUET).exists() or (folder / STREAM).exists():
                    return False  # ended (or written by another process): never overwrite
                writer = self._writers[run_id] = RowLogWriter(folder)
        writer.append(table)
        return True

    def finish(self, run_id: str) -> None:
        """Close the run's stream (if this process wrote one) and turn it into Parquet."""
        with self._lock:
            writer = self._writers.pop(run_id, None)
        if writer is not None:
            writer.close()
        if usable_id(run_id):
            self.compact(run_id)

    def compact(self, run_id: str) -> None:
        """Turn a run's stream into one Parquet file sorted by key, then drop the stream.

        Also the recovery of a killed run: a torn last message is left out, a half-written
        Parquet file is replaced, and a stream left beside a finished Parquet file (killed
        between the rename and the delete) is deleted.
        """
        with self._lock:
            if run_id in self._writers:
                return  # still being written by this process
        folder = self.folder(run_id)
        stream, final, tmp = folder / STREAM, folder / PARQUET, folder / (PARQUET + _TMP)
        if _is_regular(final):
            stream.unlink(missing_ok=True)
            tmp.unlink(missing_ok=True)
            return
        if not _is_regular(stream):
            return
        batches = pa.RecordBatchReader.from_batches(SCHEMA, read_stream(stream))
        with _duck(folder) as con:
            con.register("incoming", batches)
            _write_sorted(con, "SELECT * FROM incoming", folder)
        stream.unlink()

    def write_whole(self, run_id: str, con: Any, select: str) -> bool:
        """Write a run's whole log at once, straight to its Parquet file, from ``select``
        (the outcome columns) run on the DuckDB connection ``con``, which sorts it.

        For a run whose every outcome is known in one relation (a first load in one
        statement): no stream is written and read back. False when the run has a log
        already, or is being written here; the caller then appends instead.
        """
        if not usable_id(run_id):
            return False
        folder = self.folder(run_id)
        with self._lock:
            if run_id in self._writers or any((folder / f).exists() for f in (STREAM, PARQUET)):
                return False
            folder.mkdir(parents=True, exist_ok=True)
        types = {row[0]: str(row[1]) for row in con.execute(f"DESCRIBE {select}").fetchall()}
        picked = ", ".join(_as_text(c, types[c]) for c in COLUMNS)
        _write_sorted(con, f"SELECT {picked} FROM ({select})", folder)
        return True

    # -- reading -------------------------------------------------------------------------

    def exists(self, run_id: str) -> bool:
        if not usable_id(run_id):
            return False
        folder = self.folder(run_id)
        return (folder / PARQUET).exists() or (folder / STREAM).exists()

    @contextmanager
    def relation(self, run_id: str) -> Iterator[tuple[Any, str] | None]:
        """``(cursor, source)``: a DuckDB cursor and the SQL naming the run's log in it
        (use as ``FROM {source}``), or None when the run has no log.

        Cursors share one in-memory DuckDB of this object, opened on first use: opening a
        database costs tens of milliseconds, a cursor next to nothing.
        """
        if not usable_id(run_id):
            yield None
            return
        folder = self.folder(run_id)
        final, stream = folder / PARQUET, folder / STREAM
        parquet = _is_regular(final)
        if not parquet and not _is_regular(stream):
            yield None
            return
        with self._lock:
            if self._reader is None:
                self._reader = _connect(None)
            cursor = self._reader.cursor()
        try:
            if parquet:
                try:
                    yield cursor, f"read_parquet('{_quote(final)}')"
                except Exception as exc:
                    if not _bad_file(exc):
                        raise
                    why = f"cannot be read as Parquet ({first_line(exc)})"
                    raise RowLogError(unreadable(final, why)) from None
            else:  # a running run, or a killed one not yet recovered
                cursor.register(
                    "live_log", pa.Table.from_batches(list(read_stream(stream)), SCHEMA)
                )
                yield cursor, "live_log"
        finally:
            cursor.close()

    def close(self) -> None:
        """Close the reading database (it opens again when needed)."""
        with self._lock:
            reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()

    # -- retention -----------------------------------------------------------------------

    def run_ids(self) -> list[str]:
        """Runs that have a row log (a folder holding one of its files)."""
        try:
            folders = [p for p in self.root.iterdir() if p.is_dir() and usable_id(p.name)]
        except FileNotFoundError:
            return []
        return sorted(p.name for p in folders if any((p / f).exists() for f in _OWN_FILES))

    def expired(
        self,
        runs: dict[str, tuple[str, datetime, bool]],
        now: datetime | None = None,
    ) -> list[str]:
        """Run ids whose logs retention deletes.

        Args:
            runs: ``run_id -> (sync, started_at, running)`` of the runs that have a folder
                and a run record; a folder with no record is judged by its age on disk.
            now: The time to judge ages at.
        """
        at = now or datetime.now(UTC)
        keep_days, keep_runs = self.retention.keep_days, self.retention.keep_runs
        cutoff = at - timedelta(days=keep_days) if keep_days is not None else None
        out: set[str] = set()
        by_sync: dict[str, list[tuple[datetime, str]]] = {}
        for run_id in self.run_ids():
            known = runs.get(run_id)
            if known is None:
                if cutoff is not None and _mtime(self.folder(run_id)) < cutoff:
                    out.add(run_id)
                continue
            sync, started, running = known
            if running:
                continue  # its writer may be open, here or on another machine
            if cutoff is not None and started < cutoff:
                out.add(run_id)
            by_sync.setdefault(sync, []).append((started, run_id))
        if keep_runs is not None:
            for found in by_sync.values():
                found.sort(reverse=True)
                out.update(run_id for _, run_id in found[keep_runs:])
        return sorted(out)

    def delete(self, run_id: str) -> int:
        """Delete a run's row-log files (only those) and its folder once empty; bytes freed."""
        folder = self.folder(run_id)
        freed = 0
        for name in _OWN_FILES:
            path = folder / name
            try:
                freed += path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                continue
        # What a compaction killed while it spilled to disk left behind.
        shutil.rmtree(folder / SPILL, ignore_errors=True)
        try:
            folder.rmdir()
        except OSError:
            log.info("row log folder %s holds other files; left in place", folder)
        return freed


def _as_text(column: str, type_name: str) -> str:
    """``column`` as a string column of the Parquet file. An ENUM stays one: DuckDB writes
    it as strings from the dictionary it already has, which for a column holding one value
    (a first load's ``op``, ``status`` and ``operation``) costs a sixth of writing the same
    value as VARCHAR on every row. Read back, it is VARCHAR like the others."""
    if type_name == "VARCHAR" or type_name.startswith("ENUM("):
        return column
    return f"CAST({column} AS VARCHAR) AS {column}"


def _write_sorted(con: Any, select: str, folder: Path) -> None:
    """The rows of ``select``, sorted by key, as the folder's Parquet file: written beside
    it, then renamed over it, so a reader never sees half a file."""
    tmp, final = folder / (PARQUET + _TMP), folder / PARQUET
    # What a killed write left there goes first: never write into what stands at the path
    # (a named pipe would hold the write until somebody reads it).
    tmp.unlink(missing_ok=True)
    con.execute(
        f"COPY ({select} ORDER BY key) TO '{_quote(tmp)}' "
        f"(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE {ROW_GROUP})"
    )
    os.replace(tmp, final)
    _fsync_dir(folder)


def _mtime(path: Path) -> datetime:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except FileNotFoundError:
        return datetime.now(UTC)


def _quote(path: Path) -> str:
    return str(path).replace("'", "''")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _connect(spill: Path | None) -> Any:
    import duckdb

    con = duckdb.connect()
    con.execute("SET threads = 2")
    con.execute("SET memory_limit = '512MB'")
    if spill is not None:  # a sort larger than memory spills beside the log
        con.execute(f"SET temp_directory = '{_quote(spill / SPILL)}'")
    return con


@contextmanager
def _duck(spill: Path | None) -> Iterator[Any]:
    con = _connect(spill)
    try:
        yield con
    finally:
        con.close()


__all__ = [
    "COLUMNS",
    "LOGGED",
    "PARQUET",
    "SCHEMA",
    "STREAM",
    "Retention",
    "RowLogWriter",
    "RowLogs",
    "read_stream",
    "split_outcomes",
    "usable_id",
]
