"""Rate-limit budgets per destination account, shared by every worker."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from backhaul.state.migrations.ddl import timestamp

revision: str = "0008"
down_revision: str | None = "0007"


def upgrade() -> None:
    op.create_table(
        "rate_budgets",
        sa.Column("account", sa.String(255), nullable=False),
        sa.Column("paused_until", sa.Float(), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("day_used", sa.Integer(), nullable=False),
        sa.Column("calls", sa.Text(), nullable=False),
        timestamp("updated_at"),
        sa.PrimaryKeyConstraint("account", name="pk_rate_budgets"),
    )


def downgrade() -> None:
    op.drop_table("rate_budgets")
