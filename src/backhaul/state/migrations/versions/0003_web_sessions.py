"""Web app: server-side sign-in sessions, so signing out ends a session everywhere."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from backhaul.state.migrations.ddl import cascade
from backhaul.state.migrations.ddl import create_index
from backhaul.state.migrations.ddl import drop_index
from backhaul.state.migrations.ddl import timestamp

revision: str = "0003"
down_revision: str | None = "0002"


def upgrade() -> None:
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        timestamp("created_at"),
        timestamp("last_seen_at"),
        sa.PrimaryKeyConstraint("id", name="pk_web_sessions"),
        cascade("web_sessions", "user_id", "users"),
    )
    create_index("web_sessions", "user_id")


def downgrade() -> None:
    drop_index("web_sessions", "user_id")
    op.drop_table("web_sessions")
