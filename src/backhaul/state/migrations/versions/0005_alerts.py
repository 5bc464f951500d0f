"""Alerts: state per sync and rule, the history of raises and recoveries, deliveries, mutes."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from backhaul.state.migrations.ddl import cascade
from backhaul.state.migrations.ddl import create_index
from backhaul.state.migrations.ddl import drop_index
from backhaul.state.migrations.ddl import serial_id
from backhaul.state.migrations.ddl import timestamp

revision: str = "0005"
down_revision: str | None = "0004"


def alert_key() -> tuple[sa.Column[Any], sa.Column[Any]]:
    """The sync and the rule an alert is about: the key of its state and of its mute."""
    return (
        sa.Column("sync", sa.String(255), nullable=False),
        sa.Column("rule", sa.String(32), nullable=False),
    )


def upgrade() -> None:
    op.create_table(
        "alert_states",
        *alert_key(),
        sa.Column("state", sa.String(16), nullable=False),
        timestamp("since"),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("notified", sa.Boolean(), nullable=False),
        timestamp("updated_at"),
        sa.PrimaryKeyConstraint("sync", "rule", name="pk_alert_states"),
    )
    op.create_table(
        "alert_events",
        serial_id(),
        timestamp("at"),
        *alert_key(),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("muted", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alert_events"),
    )
    create_index("alert_events", "sync", "at")
    create_index("alert_events", "at")
    op.create_table(
        "alert_deliveries",
        serial_id(),
        sa.Column("event_id", sa.Integer(), nullable=True),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("what", sa.String(32), nullable=False),
        sa.Column("channel", sa.String(255), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("request", sa.Text(), nullable=True),
        timestamp("at"),
        sa.PrimaryKeyConstraint("id", name="pk_alert_deliveries"),
        cascade("alert_deliveries", "event_id", "alert_events"),
    )
    create_index("alert_deliveries", "event_id")
    create_index("alert_deliveries", "at")
    op.create_table(
        "alert_mutes",
        *alert_key(),
        sa.Column("muted_by", sa.String(64), nullable=True),
        timestamp("muted_at"),
        sa.PrimaryKeyConstraint("sync", "rule", name="pk_alert_mutes"),
    )


def downgrade() -> None:
    op.drop_table("alert_mutes")
    drop_index("alert_deliveries", "at")
    drop_index("alert_deliveries", "event_id")
    op.drop_table("alert_deliveries")
    drop_index("alert_events", "at")
    drop_index("alert_events", "sync", "at")
    op.drop_table("alert_events")
    op.drop_table("alert_states")
