"""Run records: runs, per-row outcomes and the API-call log."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from backhaul.state.migrations.ddl import cascade
from backhaul.state.migrations.ddl import create_index
from backhaul.state.migrations.ddl import drop_index
from backhaul.state.migrations.ddl import serial_id
from backhaul.state.migrations.ddl import timestamp

revision: str = "0001"
down_revision: str | None = None

# Written out in full rather than imported from tables.py: a migration is a frozen record
# of one schema step and must not change when the current tables do.
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


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("sync", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("trigger", sa.String(32), nullable=False),
        sa.Column("full_resync", sa.Boolean(), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("git_commit", sa.String(64), nullable=True),
        timestamp("started_at"),
        timestamp("finished_at", nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in COUNT_COLUMNS),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
    )
    create_index("runs", "sync", "started_at")

    op.create_table(
        "run_rows",
        serial_id(),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("op", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("operation", sa.String(64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("call_id", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_run_rows"),
        cascade("run_rows", "run_id", "runs"),
    )
    create_index("run_rows", "run_id", "status")
    create_index("run_rows", "run_id", "key")

    op.create_table(
        "http_calls",
        sa.Column("call_id", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("request_headers", sa.Text(), nullable=False),
        sa.Column("request_body", sa.Text(), nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        timestamp("started_at"),
        sa.PrimaryKeyConstraint("call_id", name="pk_http_calls"),
        cascade("http_calls", "run_id", "runs"),
    )
    create_index("http_calls", "run_id")


def downgrade() -> None:
    drop_index("http_calls", "run_id")
    op.drop_table("http_calls")
    drop_index("run_rows", "run_id", "key")
    drop_index("run_rows", "run_id", "status")
    op.drop_table("run_rows")
    drop_index("runs", "sync", "started_at")
    op.drop_table("runs")
