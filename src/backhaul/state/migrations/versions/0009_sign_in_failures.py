"""Failed sign-ins in the store, so every web process counts them together."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from backhaul.state.migrations.ddl import create_index
from backhaul.state.migrations.ddl import drop_index
from backhaul.state.migrations.ddl import serial_id
from backhaul.state.migrations.ddl import timestamp

revision: str = "0009"
down_revision: str | None = "0008"


def upgrade() -> None:
    op.create_table(
        "sign_in_failures",
        serial_id(),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        timestamp("at"),
        sa.PrimaryKeyConstraint("id", name="pk_sign_in_failures"),
    )
    create_index("sign_in_failures", "address", "at")


def downgrade() -> None:
    drop_index("sign_in_failures", "address", "at")
    op.drop_table("sign_in_failures")
