"""Run records: runs, per-row outcomes and the API-call log.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

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
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in COUNT_COLUMNS),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
    )
    op.create_index("ix_runs_sync_started_at", "runs", ["sync", "started_at"])

    op.create_table(
        "run_rows",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("op", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("operation", sa.String(64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("call_id", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_run_rows"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_run_rows_run_id_runs", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_run_rows_run_id_status", "run_rows", ["run_id", "status"])
    op.create_index("ix_run_rows_run_id_key", "run_rows", ["run_id", "key"])

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
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("call_id", name="pk_http_calls"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_http_calls_run_id_runs", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_http_calls_run_id", "http_calls", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_http_calls_run_id", table_name="http_calls")
    op.drop_table("http_calls")
    op.drop_index("ix_run_rows_run_id_key", table_name="run_rows")
    op.drop_index("ix_run_rows_run_id_status", table_name="run_rows")
    op.drop_table("run_rows")
    op.drop_index("ix_runs_sync_started_at", table_name="runs")
    op.drop_table("runs")
