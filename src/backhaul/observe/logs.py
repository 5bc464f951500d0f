"""Structured logs: one line per record, as text or JSON, with the run id and sync on each.

:class:`LogSink` is an event sink that logs a run's lifecycle (start, plan, waits, notices,
finish) and, from its start to its finish, tags every record logged on that run's thread
(the engine's, the HTTP client's, the alert sink's) with the run id and sync through
context variables. Messages come from typed events whose texts the engine has already
redacted, so no secret reaches a log line.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC
from datetime import datetime
from typing import Any
from typing import Literal

from backhaul.observe.events import Notice
from backhaul.observe.events import Planned
from backhaul.observe.events import RunEvent
from backhaul.observe.events import RunFinished
from backhaul.observe.events import RunStarted
from backhaul.observe.events import Waiting

LogFormat = Literal["text", "json"]
_RUN_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "backhaul_run_id", default=None
)
_SYNC: contextvars.ContextVar[str | None] = contextvars.ContextVar("backhaul_sync", default=None)
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "run_id", "sync"}

log = logging.getLogger("backhaul.run")


class RunContext(logging.Filter):
    """Adds ``run_id`` and ``sync`` to every record (from the record, else the context)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "run_id", None) is None:
            record.run_id = _RUN_ID.get()
        if getattr(record, "sync", None) is None:
            record.sync = _SYNC.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, run_id, sync, extras."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "run_id": getattr(record, "run_id", None),
            "sync": getattr(record, "sync", None),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                data[key] = value if isinstance(value, int | float | bool | str) else str(value)
        if record.exc_info:
            data["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(data, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``time level logger [sync run_id] message``."""

    def format(self, record: logging.LogRecord) -> str:
        sync, run_id = getattr(record, "sync", None), getattr(record, "run_id", None)
        where = f"[{sync or '-'} {run_id or '-'}] " if sync or run_id else ""
        time = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        line = f"{time} {record.levelname} {record.name}: {where}{record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup_logging(fmt: LogFormat = "text", level: int = logging.INFO) -> None:
    """Send Backhaul's records (and procrastinate's and uvicorn's) to stderr in ``fmt``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RunContext())
    handler._backhaul = True  # type: ignore[attr-defined]
    for name in ("backhaul", "procrastinate", "uvicorn"):
        logger = logging.getLogger(name)
        logger.handlers = [h for h in logger.handlers if not getattr(h, "_backhaul", False)]
        logger.addHandler(handler)
        logger.setLevel(level if name == "backhaul" else max(level, logging.INFO))
        logger.propagate = False


class LogSink:
    """An event sink that logs each run's lifecycle and tags its thread's records."""

    def __call__(self, event: RunEvent) -> None:
        if isinstance(event, RunStarted):
            _RUN_ID.set(event.run_id)
            _SYNC.set(event.sync)
            log.info("run started", extra={"run_id": event.run_id, "sync": event.sync})
        elif isinstance(event, Planned):
            c = event.counts
            log.info(
                "planned: %d to send (added %d, changed %d, removed %d, invalid %d)",
                event.to_send,
                c.added,
                c.changed,
                c.removed,
                c.invalid,
                extra={"run_id": event.run_id, "sync": event.sync, "to_send": event.to_send},
            )
        elif isinstance(event, Waiting):
            log.info(
                "waiting %.1f s (%s): %s",
                event.seconds,
                event.kind.value,
                event.reason,
                extra={"run_id": event.run_id, "sync": event.sync, "wait_s": event.seconds},
            )
        elif isinstance(event, Notice):
            log.warning(event.message, extra={"run_id": event.run_id, "sync": event.sync})
        elif isinstance(event, RunFinished):
            s = event.summary
            c = s.counts
            log.log(
                logging.ERROR if s.status.value == "failed" else logging.INFO,
                "run %s in %.1f s: queried %d, added %d, changed %d, removed %d, "
                "succeeded %d, rejected %d, invalid %d%s",
                s.status.value,
                s.duration_s,
                c.queried,
                c.added,
                c.changed,
                c.removed,
                c.succeeded,
                c.rejected,
                c.invalid,
                f"; error: {s.error}" if s.error else "",
                extra={"run_id": s.run_id, "sync": s.sync, "status": s.status.value},
            )
            _RUN_ID.set(None)
            _SYNC.set(None)


__all__ = ["JsonFormatter", "LogFormat", "LogSink", "RunContext", "TextFormatter", "setup_logging"]
