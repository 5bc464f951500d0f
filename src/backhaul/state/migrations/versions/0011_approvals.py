"""Commits an admin approved to run (``approval: required``)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from backhaul.state.migrations.ddl import create_index
from backhaul.state.migrations.ddl import drop_index
from backhaul.state.migrations.ddl import timestamp

revision: str = "0011"
down_revision: str | None = "0010"


def upgrade() -> None:
    op.create_table(
        "approvals",
        sa.Column("project", sa.String(255), nullable=False),
        sa.Column("commit", sa.String(64), nullable=False),
        sa.Column("approved_by", sa.String(64), nullable=False),
        timestamp("approved_at"),
        sa.Column("via", sa.String(16), nullable=False),
        sa.Column("required", sa.Boolean(), nullable=False),
        sa.Column("draft", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("project", "commit", name="pk_approvals"),
    )
    create_index("approvals", "project", "approved_at")


def downgrade() -> None:
    drop_index("approvals", "project", "approved_at")
    op.drop_table("approvals")
