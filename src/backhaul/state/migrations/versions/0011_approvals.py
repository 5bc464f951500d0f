"""Commits an admin approved to run (``approval: required``).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    op.create_table(
        "approvals",
        sa.Column("project", sa.String(255), nullable=False),
        sa.Column("commit", sa.String(64), nullable=False),
        sa.Column("approved_by", sa.String(64), nullable=False),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("via", sa.String(16), nullable=False),
        sa.Column("required", sa.Boolean(), nullable=False),
        sa.Column("draft", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("project", "commit", name="pk_approvals"),
    )
    op.create_index("ix_approvals_project_approved_at", "approvals", ["project", "approved_at"])


def downgrade() -> None:
    op.drop_index("ix_approvals_project_approved_at", table_name="approvals")
    op.drop_table("approvals")
