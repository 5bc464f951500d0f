"""The migrations' building blocks name things as the current tables do."""

from __future__ import annotations

from sqlalchemy import ForeignKeyConstraint

from backhaul.state.migrations.ddl import cascade
from backhaul.state.migrations.ddl import index_name
from backhaul.state.migrations.ddl import serial_id
from backhaul.state.migrations.ddl import timestamp
from backhaul.state.tables import metadata


def test_index_names_are_those_of_the_tables() -> None:
    indexes = [index for table in metadata.sorted_tables for index in table.indexes]
    assert indexes
    for index in indexes:
        assert index.table is not None
        columns = tuple(column.name for column in index.columns)
        assert index_name(index.table.name, columns) == index.name


def test_cascades_are_named_and_behave_as_the_tables_foreign_keys() -> None:
    keys = [
        key
        for table in metadata.sorted_tables
        for key in table.constraints
        if isinstance(key, ForeignKeyConstraint)
    ]
    assert keys
    for key in keys:
        [column] = key.column_keys
        made = cascade(key.table.name, column, key.referred_table.name)
        assert made.name == key.name
        assert made.ondelete == key.ondelete == "CASCADE"
        assert [element.target_fullname for element in made.elements] == [
            element.target_fullname for element in key.elements
        ]


def test_serial_id_and_timestamp_columns() -> None:
    id_ = serial_id()
    assert (id_.name, id_.nullable, id_.autoincrement) == ("id", False, True)
    at = timestamp("at", nullable=True)
    assert (at.name, at.nullable, getattr(at.type, "timezone", None)) == ("at", True, True)
