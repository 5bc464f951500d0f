"""Scheduler state per sync: paused, since when its schedule is known, the last slot started."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from backhaul.state.migrations.ddl import timestamp

revision: str = "0007"
down_revision: str | None = "0006"


def upgrade() -> None:
    op.create_table(
        "schedule_states",
        sa.Column("sync", sa.String(255), nullable=False),
        timestamp("since"),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("paused_by", sa.String(64), nullable=True),
        timestamp("paused_at", nullable=True),
        timestamp("fired_slot", nullable=True),
        timestamp("fired_at", nullable=True),
        timestamp("updated_at"),
        sa.PrimaryKeyConstraint("sync", name="pk_schedule_states"),
    )


def downgrade() -> None:
    op.drop_table("schedule_states")
