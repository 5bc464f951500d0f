"""Logging of the long-running commands (scheduler, worker, serve)."""

from __future__ import annotations

import logging
import sys


def setup_logging(level: int = logging.INFO) -> None:
    """Send Backhaul's log records to stderr, one line each."""
    root = logging.getLogger("backhaul")
    if any(getattr(h, "_backhaul", False) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler._backhaul = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)


__all__ = ["setup_logging"]
