"""A :class:`~backhaul.calls.CallRecorder` that writes to the run store."""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection

from sqlalchemy.exc import SQLAlchemyError

from backhaul.calls import HttpCall
from backhaul.state.store import RunStore

log = logging.getLogger(__name__)


class StoreRecorder:
    """Buffers recorded HTTP calls and writes them to the store in batches.

    Thread-safe: calls may arrive from several tasks or threads at once. Call
    :meth:`flush` (or :meth:`close`) when the run ends, or the last partial batch is lost.

    Args:
        store: where calls are written.
        run_id: the run the calls belong to.
        flush_every: buffered calls that trigger a write.
    """

    def __init__(self, store: RunStore, run_id: str, flush_every: int = 200) -> None:
        self.store = store
        self.run_id = run_id
        self.flush_every = max(1, flush_every)
        self.dropped = 0  # calls lost because the store refused an automatic flush
        self._buffer: list[HttpCall] = []
        # Held while writing too, so batches reach the store in the order they were recorded.
        self._lock = threading.Lock()

    def record(self, call: HttpCall) -> None:
        """Buffer one call; write the buffer once it holds ``flush_every`` calls.

        A failed automatic write is logged and counted in :attr:`dropped` rather than
        raised: losing debugger entries must not fail the sync that made the calls.
        """
        with self._lock:
            self._buffer.append(call)
            if len(self._buffer) < self.flush_every:
                return
            batch, self._buffer = self._buffer, []
            try:
                self.store.add_calls(self.run_id, batch)
            except SQLAlchemyError as exc:
                self.dropped += len(batch)
                log.warning(
                    "could not record %d HTTP calls of run %s: %s",
                    len(batch),
                    self.run_id,
                    getattr(exc, "orig", exc),
                )

    def take(self, call_ids: Collection[str]) -> list[HttpCall]:
        """Remove the buffered calls with these ids and return them, for the caller to write
        (with the rows they carried, in one transaction); other calls stay buffered."""
        if not call_ids:
            return []
        with self._lock:
            taken = [c for c in self._buffer if c.call_id in call_ids]
            if taken:
                self._buffer = [c for c in self._buffer if c.call_id not in call_ids]
            return taken

    def flush(self) -> None:
        """Write every buffered call now; errors from the store are raised."""
        with self._lock:
            batch, self._buffer = self._buffer, []
            self.store.add_calls(self.run_id, batch)

    def close(self) -> None:
        """Flush what is left; the recorder may still be used afterwards."""
        self.flush()
