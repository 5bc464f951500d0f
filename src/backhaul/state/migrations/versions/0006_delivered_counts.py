"""Honest counts: rows delivered per kind of change, and rows skipped (needed no call).

Runs recorded before this revision get their delivered counts from their stored row
outcomes, so history charts show what was delivered, not what was planned.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"

DELIVERED = {
    "delivered_added": "add",
    "delivered_changed": "change",
    "delivered_removed": "remove",
    "delivered_retried": "retry",
}


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        for name in ("skipped", *DELIVERED):
            batch.add_column(
                sa.Column(name, sa.Integer(), nullable=False, server_default=sa.text("0"))
            )
    for name, kind in DELIVERED.items():
        op.execute(
            f"UPDATE runs SET {name} = (SELECT count(*) FROM run_rows "
            f"WHERE run_rows.run_id = runs.id AND run_rows.op = '{kind}' "
            "AND run_rows.status = 'ok' AND run_rows.operation IS NOT NULL)"
        )


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        for name in (*reversed(DELIVERED), "skipped"):
            batch.drop_column(name)
