"""Waits you can see: a run's time spent waiting, each call's response headers and wait."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(
            sa.Column("wait_s", sa.Float(), nullable=False, server_default=sa.text("0"))
        )
    with op.batch_alter_table("http_calls") as batch:
        batch.add_column(sa.Column("response_headers", sa.Text(), nullable=True))
        batch.add_column(
            sa.Column("wait_ms", sa.Float(), nullable=False, server_default=sa.text("0"))
        )
        batch.add_column(sa.Column("wait_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("http_calls") as batch:
        batch.drop_column("wait_reason")
        batch.drop_column("wait_ms")
        batch.drop_column("response_headers")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("wait_s")
