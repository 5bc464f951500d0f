"""Alerts: rules judged on run events and the clock, state per sync and rule, channels.

See docs/alerts.md. :class:`AlertSink` is the event sink the CLI, the Python API and the
web app attach to runs; :class:`AlertEngine` holds the rules, state and channels.
"""

from __future__ import annotations

from backhaul.alerts.engine import AlertEngine
from backhaul.alerts.rules import NextRun
from backhaul.alerts.rules import SyncRules
from backhaul.alerts.rules import sync_rules
from backhaul.alerts.sink import AlertSink

__all__ = ["AlertEngine", "AlertSink", "NextRun", "SyncRules", "sync_rules"]
