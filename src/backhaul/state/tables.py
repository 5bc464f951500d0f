"""Tables of the metadata store (the run records), as SQLAlchemy Core objects.

This module describes the schema the latest migration produces; the migrations in
``state/migrations/versions`` are what actually create it. A test compares the two, so a
change here without a matching migration fails the build.
"""

from __future__ import annotations

from datetime import UTC
from datetime import datetime

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

# The counters of :class:`backhaul.summary.Counts`, one integer column each.
COUNT_COLUMNS = (
    "queried",
    "added",
    "changed",
    "removed",
    "retried",
    "unchanged",
    "invalid",
    "succeeded",
    "rejected",
)
# Added by migration 0006: rows that needed no call, and delivered rows by kind of change.
OUTCOME_COLUMNS = (
    "skipped",
    "delivered_added",
    "delivered_changed",
    "delivered_removed",
    "delivered_retried",
)


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
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=True),
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
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(64), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
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
    Column("run_id", String(64), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("method", String(16), nullable=False),
    Column("url", Text, nullable=False),
    Column("status", Integer, nullable=True),
    Column("latency_ms", Float, nullable=False),
    Column("request_headers", Text, nullable=False),  # JSON object, already redacted
    Column("request_body", Text, nullable=True),
    Column("response_body", Text, nullable=True),
    Column("error", Text, nullable=True),
    Column("attempt", Integer, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("response_headers", Text, nullable=True),  # JSON object, already redacted
    Column("wait_ms", Float, nullable=False, server_default=text("0")),  # held before sending
    Column("wait_reason", Text, nullable=True),
    Index("ix_http_calls_run_id", "run_id"),
)

# -- web app: users, API tokens and the audit log (migration 0002) -------------------------

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),  # argon2id, never the password
    Column("role", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(128), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),  # sha256 hex of the token
    Column("prefix", String(16), nullable=False),  # first characters, to recognise a token
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
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
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_seen_at", UTCDateTime, nullable=False),
    # Ending every session of a user (sign-out, password or role change) finds them here.
    Index("ix_web_sessions_user_id", "user_id"),
)

# Failed sign-ins of the last minutes, shared by every process of `backhaul serve`: the
# sign-in limit counts them per address (across user names) and per address and name.
sign_in_failures = Table(
    "sign_in_failures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("address", String(64), nullable=False),
    Column("name", String(255), nullable=False),  # the user name tried, lower-cased
    Column("at", UTCDateTime, nullable=False),
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
    Column("since", UTCDateTime, nullable=False),
    Column("message", Text, nullable=True),
    Column("run_id", String(64), nullable=True),
    Column("notified", Boolean, nullable=False),  # the raise reached the channels
    Column("updated_at", UTCDateTime, nullable=False),
)

alert_events = Table(
    "alert_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
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
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "event_id",
        Integer,
        ForeignKey("alert_events.id", ondelete="CASCADE"),
        nullable=True,  # run lifecycle messages and metrics belong to no alert
    ),
    Column("run_id", String(64), nullable=True),
    Column("what", String(32), nullable=False),  # "alert.raised", "run.started", "metrics"...
    Column("channel", String(255), nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("status", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("request", Text, nullable=True),  # what was sent, redacted and truncated
    Column("at", UTCDateTime, nullable=False),
    Index("ix_alert_deliveries_event_id", "event_id"),
    Index("ix_alert_deliveries_at", "at"),
)

alert_mutes = Table(
    "alert_mutes",
    metadata,
    Column("sync", String(255), primary_key=True),
    Column("rule", String(32), primary_key=True),  # "*": every rule of the sync
    Column("muted_by", String(64), nullable=True),
    Column("muted_at", UTCDateTime, nullable=False),
)

# The scheduler's state per sync: paused or not, since when the schedule is known (the base
# of the first expected run), and the last slot a run was started for (a compare-and-set
# claim, so two schedulers never start the same slot twice).
schedule_states = Table(
    "schedule_states",
    metadata,
    Column("sync", String(255), primary_key=True),
    Column("since", UTCDateTime, nullable=False),
    Column("paused", Boolean, nullable=False),
    Column("paused_by", String(64), nullable=True),
    Column("paused_at", UTCDateTime, nullable=True),
    Column("fired_slot", UTCDateTime, nullable=True),
    Column("fired_at", UTCDateTime, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
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
    Column("updated_at", UTCDateTime, nullable=False),
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
    Column("approved_at", UTCDateTime, nullable=False),
    Column("via", String(16), nullable=False),  # "web", "cli" or "save" (an admin's web save)
    Column("required", Boolean, nullable=False),
    Column("draft", String(255), nullable=True),  # the draft branch merged, if any
    Index("ix_approvals_project_approved_at", "project", "approved_at"),
)
