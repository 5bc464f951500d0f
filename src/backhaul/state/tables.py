"""Tables of the metadata store (the run records), as SQLAlchemy Core objects.

This module describes the schema the latest migration produces; the migrations in
``state/migrations/versions`` are what actually create it. A test compares the two, so a
change here without a matching migration fails the build.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean
from sqlalchemy import Column
from sqlalchemy import DateTime
from sqlalchemy import Dialect
from sqlalchemy import Float
from sqlalchemy import ForeignKey
from sqlalchemy import Index
from sqlalchemy import Integer
from sqlalchemy import MetaData
from sqlalchemy import String
from sqlalchemy import Table
from sqlalchemy import Text
from sqlalchemy import text
from sqlalchemy.types import TypeDecorator

from backhaul.summary import Counts

# Fixed names for constraints, so every database (and every future migration) agrees on them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# Alembic's bookkeeping table. Named for Backhaul so a store that shares a Postgres database
# with an application that also uses Alembic does not collide with its ``alembic_version``.
VERSION_TABLE = "backhaul_schema_version"

# Added by migration 0006, with a default of 0 for the runs already recorded: rows that
# needed no call, and delivered rows by kind of change.
OUTCOME_COLUMNS = (
    "skipped",
    "delivered_added",
    "delivered_changed",
    "delivered_removed",
    "delivered_retried",
)
# The other counters of :class:`backhaul.summary.Counts`, in its order. Every counter has
# one integer column, so a new counter fails the schema test until a migration adds it.
COUNT_COLUMNS = tuple(f.name for f in fields(Counts) if f.name not in OUTCOME_COLUMNS)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware.

    SQLite has no timezone support, so values are normalised to UTC before they are
    written and tagged as UTC when they are read; Postgres stores ``timestamptz``.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        # A naive value is taken to be UTC already: that is what every caller in Backhaul uses.
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _serial_id() -> Column[int]:
    """The ``id`` primary key of a table whose rows the database numbers."""
    return Column("id", Integer, primary_key=True, autoincrement=True)


def _timestamp(name: str, *, nullable: bool = False) -> Column[datetime]:
    """A moment in time, stored in UTC (see :class:`UTCDateTime`)."""
    return Column(name, UTCDateTime, nullable=nullable)


def _belongs_to(name: str, parent: Table, *, nullable: bool = False) -> Column[Any]:
    """The ``id`` of a row of ``parent``: a row that belongs to it is deleted with it."""
    id_ = parent.c.id
    return Column(name, id_.type, ForeignKey(id_, ondelete="CASCADE"), nullable=nullable)


runs = Table(
    "runs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("sync", String(255), nullable=False),
    Column("status", String(16), nullable=False),
    Column("trigger", String(32), nullable=False),
    Column("full_resync", Boolean, nullable=False),
    Column("dry_run", Boolean, nullable=False),
    Column("git_commit", String(64), nullable=True),
    # The project's files differed from git_commit when the run started (None: not known).
    Column("git_dirty", Boolean, nullable=True),
    _timestamp("started_at"),
    _timestamp("finished_at", nullable=True),
    Column("error", Text, nullable=True),
    *(Column(name, Integer, nullable=False) for name in COUNT_COLUMNS),
    # Seconds during which at least one call waited: rate limits, retries, throttling.
    Column("wait_s", Float, nullable=False, server_default=text("0")),
    *(Column(name, Integer, nullable=False, server_default=text("0")) for name in OUTCOME_COLUMNS),
    Index("ix_runs_sync_started_at", "sync", "started_at"),
)

run_rows = Table(
    "run_rows",
    metadata,
    _serial_id(),
    _belongs_to("run_id", runs),
    Column("key", Text, nullable=False),
    Column("op", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("operation", String(64), nullable=True),
    Column("error", Text, nullable=True),
    Column("call_id", String(64), nullable=True),
    Index("ix_run_rows_run_id_status", "run_id", "status"),
    Index("ix_run_rows_run_id_key", "run_id", "key"),
)

http_calls = Table(
    "http_calls",
    metadata,
    Column("call_id", String(64), primary_key=True),
    _belongs_to("run_id", runs),
    Column("method", String(16), nullable=False),
    Column("url", Text, nullable=False),
    Column("status", Integer, nullable=True),
    Column("latency_ms", Float, nullable=False),
    Column("request_headers", Text, nullable=False),  # JSON object, already redacted
    Column("request_body", Text, nullable=True),
    Column("response_body", Text, nullable=True),
    Column("error", Text, nullable=True),
    Column("attempt", Integer, nullable=False),
    _timestamp("started_at"),
    Column("response_headers", Text, nullable=True),  # JSON object, already redacted
    Column("wait_ms", Float, nullable=False, server_default=text("0")),  # held before sending
    Column("wait_reason", Text, nullable=True),
    Index("ix_http_calls_run_id", "run_id"),
)

# -- web app: users, API tokens and the audit log (migration 0002) -------------------------

users = Table(
    "users",
    metadata,
    _serial_id(),
    Column("username", String(64), nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),  # argon2id, never the password
    Column("role", String(16), nullable=False),
    _timestamp("created_at"),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    _serial_id(),
    _belongs_to("user_id", users),
    Column("name", String(128), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),  # sha256 hex of the token
    Column("prefix", String(16), nullable=False),  # first characters, to recognise a token
    _timestamp("created_at"),
    _timestamp("revoked_at", nullable=True),
)

audit_log = Table(
    "audit_log",
    metadata,
    _serial_id(),
    _timestamp("at"),
    Column("actor", String(64), nullable=True),  # username, or None for anonymous
    Column("action", String(64), nullable=False),
    Column("target", String(255), nullable=True),
    Column("details", Text, nullable=True),  # JSON object
    Column("ip", String(64), nullable=True),
    Index("ix_audit_log_at", "at"),
)

# -- web app: sign-in sessions (migration 0003) ------------------------------------------

web_sessions = Table(
    "web_sessions",
    metadata,
    # SHA-256 hex of the session id the browser holds: reading the table gives no cookie.
    Column("id", String(64), primary_key=True),
    _belongs_to("user_id", users),
    _timestamp("created_at"),
    _timestamp("last_seen_at"),
    # Ending every session of a user (sign-out, password or role change) finds them here.
    Index("ix_web_sessions_user_id", "user_id"),
)

# Failed sign-ins of the last minutes, shared by every process of `backhaul serve`: the
# sign-in limit counts them per address (across user names) and per address and name.
sign_in_failures = Table(
    "sign_in_failures",
    metadata,
    _serial_id(),
    Column("address", String(64), nullable=False),
    Column("name", String(255), nullable=False),  # the user name tried, lower-cased
    _timestamp("at"),
    Index("ix_sign_in_failures_address_at", "address", "at"),
)

# The newest runs across all syncs (overview chart, GET /api/v1/runs) without a sort.
Index("ix_runs_started_at_id", runs.c.started_at, runs.c.id)

# -- alerts: state per (sync, rule), history, deliveries and mutes (migration 0005) --------

alert_states = Table(
    "alert_states",
    metadata,
    Column("sync", String(255), primary_key=True),
    Column("rule", String(32), primary_key=True),
    Column("state", String(16), nullable=False),  # "ok" | "firing"
    _timestamp("since"),
    Column("message", Text, nullable=True),
    Column("run_id", String(64), nullable=True),
    Column("notified", Boolean, nullable=False),  # the raise reached the channels
    _timestamp("updated_at"),
)

alert_events = Table(
    "alert_events",
    metadata,
    _serial_id(),
    _timestamp("at"),
    Column("sync", String(255), nullable=False),
    Column("rule", String(32), nullable=False),
    Column("kind", String(16), nullable=False),  # "raised" | "resolved" | "test"
    Column("message", Text, nullable=False),
    Column("run_id", String(64), nullable=True),
    Column("muted", Boolean, nullable=False),
    Index("ix_alert_events_sync_at", "sync", "at"),
    Index("ix_alert_events_at", "at"),
)

alert_deliveries = Table(
    "alert_deliveries",
    metadata,
    _serial_id(),
    # Run lifecycle messages and metrics belong to no alert.
    _belongs_to("event_id", alert_events, nullable=True),
    Column("run_id", String(64), nullable=True),
    Column("what", String(32), nullable=False),  # "alert.raised", "run.started", "metrics"...
    Column("channel", String(255), nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("status", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("request", Text, nullable=True),  # what was sent, redacted and truncated
    _timestamp("at"),
    Index("ix_alert_deliveries_event_id", "event_id"),
    Index("ix_alert_deliveries_at", "at"),
)

alert_mutes = Table(
    "alert_mutes",
    metadata,
    Column("sync", String(255), primary_key=True),
    Column("rule", String(32), primary_key=True),  # "*": every rule of the sync
    Column("muted_by", String(64), nullable=True),
    _timestamp("muted_at"),
)

# The scheduler's state per sync: paused or not, since when the schedule is known (the base
# of the first expected run), and the last slot a run was started for (a compare-and-set
# claim, so two schedulers never start the same slot twice).
schedule_states = Table(
    "schedule_states",
    metadata,
    Column("sync", String(255), primary_key=True),
    _timestamp("since"),
    Column("paused", Boolean, nullable=False),
    Column("paused_by", String(64), nullable=True),
    _timestamp("paused_at", nullable=True),
    _timestamp("fired_slot", nullable=True),
    _timestamp("fired_at", nullable=True),
    _timestamp("updated_at"),
)

# One rate-limit budget per destination account, shared by every worker (Postgres stores
# only): the pause a vendor asked for, today's count against the daily quota, and the
# calls in the current window (JSON; see destinations/http/budget.py).
rate_budgets = Table(
    "rate_budgets",
    metadata,
    Column("account", String(255), primary_key=True),
    Column("paused_until", Float, nullable=False),
    Column("day", String(10), nullable=False),
    Column("day_used", Integer, nullable=False),
    Column("calls", Text, nullable=False),
    _timestamp("updated_at"),
)

# Commits an admin approved to run (`approval: required` in backhaul.yml; see
# backhaul/approval.py). ``required`` is whether that commit's backhaul.yml asked for
# approval, so a later unapproved commit cannot switch approval off for itself.
approvals = Table(
    "approvals",
    metadata,
    Column("project", String(255), primary_key=True),
    Column("commit", String(64), primary_key=True),
    Column("approved_by", String(64), nullable=False),
    _timestamp("approved_at"),
    Column("via", String(16), nullable=False),  # "web", "cli" or "save" (an admin's web save)
    Column("required", Boolean, nullable=False),
    Column("draft", String(255), nullable=True),  # the draft branch merged, if any
    Index("ix_approvals_project_approved_at", "project", "approved_at"),
)
