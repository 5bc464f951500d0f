"""Alembic environment for the metadata store.

Backhaul runs migrations in-process: :class:`backhaul.state.store.RunStore` opens a
connection, begins a transaction, takes a lock, and hands the connection to Alembic through
``config.attributes["connection"]``. There is no ``alembic.ini`` and no URL here.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from backhaul.errors import BackhaulError
from backhaul.state.tables import VERSION_TABLE
from backhaul.state.tables import metadata


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise BackhaulError(
            "Backhaul migrations run in-process: use RunStore.upgrade() "
            "(or `backhaul` commands) rather than the alembic command line."
        )
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise BackhaulError("Offline (--sql) migrations are not supported for the metadata store.")
run_migrations_online()
