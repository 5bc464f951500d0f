"""Building blocks the migrations in ``versions/`` make their tables from.

Applied migrations call these, so what each one produces must never change: a store
migrated later would otherwise differ from one migrated earlier. To build something else,
add a function rather than edit one. Constraint and index names are spelled out here, not
left to ``tables.NAMING_CONVENTION``, for the same reason.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op


def serial_id() -> sa.Column[Any]:
    """The ``id`` column of a table whose rows the database numbers."""
    return sa.Column("id", sa.Integer(), autoincrement=True, nullable=False)


def timestamp(name: str, *, nullable: bool = False) -> sa.Column[Any]:
    """A timezone-aware timestamp (``timestamptz`` on Postgres); the store writes UTC."""
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def cascade(table: str, column: str, parent: str) -> sa.ForeignKeyConstraint:
    """``table.column`` references ``parent.id``, and its rows are deleted with their parent.

    Args:
        table: The table being created.
        column: Its column holding the parent's id.
        parent: The referenced table.
    """
    return sa.ForeignKeyConstraint(
        [column], [f"{parent}.id"], name=f"fk_{table}_{column}_{parent}", ondelete="CASCADE"
    )


def index_name(table: str, columns: tuple[str, ...]) -> str:
    """``ix_<table>_<column>_<column>...``: the name every index of the store has."""
    return f"ix_{table}_{'_'.join(columns)}"


def create_index(table: str, *columns: str) -> None:
    """Index ``columns`` of ``table``, in that order."""
    op.create_index(index_name(table, columns), table, list(columns))


def drop_index(table: str, *columns: str) -> None:
    """Drop the index :func:`create_index` made on ``columns`` of ``table``."""
    op.drop_index(index_name(table, columns), table_name=table)
