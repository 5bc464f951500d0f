"""Web app: users, API tokens, the audit log, and an index for the newest runs."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from backhaul.state.migrations.ddl import cascade
from backhaul.state.migrations.ddl import create_index
from backhaul.state.migrations.ddl import drop_index
from backhaul.state.migrations.ddl import serial_id
from backhaul.state.migrations.ddl import timestamp

revision: str = "0002"
down_revision: str | None = "0001"


def upgrade() -> None:
    op.create_table(
        "users",
        serial_id(),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("username", name="uq_users_username"),
    )
    op.create_table(
        "api_tokens",
        serial_id(),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        timestamp("created_at"),
        timestamp("revoked_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_tokens"),
        cascade("api_tokens", "user_id", "users"),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
    )
    op.create_table(
        "audit_log",
        serial_id(),
        timestamp("at"),
        sa.Column("actor", sa.String(64), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(255), nullable=True),
        sa.Column("details", sa.Text(), nullable=True),
        sa.Column("ip", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    create_index("audit_log", "at")
    create_index("runs", "started_at", "id")


def downgrade() -> None:
    drop_index("runs", "started_at", "id")
    drop_index("audit_log", "at")
    op.drop_table("audit_log")
    op.drop_table("api_tokens")
    op.drop_table("users")
