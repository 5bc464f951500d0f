"""The SQLite source: a real database file, read-only, streamed in batches."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from tests.conftest import Builder
from tests.conftest import sqlite_rows

from backhaul.errors import SourceError
from backhaul.sources.sqlite import SQLiteSource
from backhaul.sources.sqlite import SQLiteSourceConfig

pytestmark = pytest.mark.integration


def make_db(path: Path, rows: int = 1200) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT, score REAL, note TEXT)")
    con.executemany(
        "INSERT INTO users VALUES (?, ?, ?, ?)",
        [(i, f"u{i}@example.com", i / 4, None if i % 3 else "x") for i in range(1, rows + 1)],
    )
    con.commit()
    con.close()


def source(root: Path, path: str = "wh.sqlite") -> SQLiteSource:
    return SQLiteSource(SQLiteSourceConfig(type="sqlite", path=path), root)


def test_stream_in_batches_with_types(tmp_path: Path) -> None:
    make_db(tmp_path / "wh.sqlite")
    src = source(tmp_path)
    try:
        assert src.columns("SELECT id, email FROM users;") == {"id": "ANY", "email": "ANY"}
        batches = list(src.stream("SELECT * FROM users ORDER BY id", batch_size=500))
    finally:
        src.close()
    assert [b.num_rows for b in batches] == [500, 500, 200]
    assert str(batches[0].schema.field("score").type) == "double"
    # `note` is NULL in the first two rows: its type is taken from the values of the batch.
    assert batches[0].slice(0, 3).to_pylist()[2] == {
        "id": 3,
        "email": "u3@example.com",
        "score": 0.75,
        "note": "x",
    }


def test_a_column_that_changes_type_names_the_fix(tmp_path: Path) -> None:
    make_db(tmp_path / "wh.sqlite", rows=10)
    src = source(tmp_path)
    try:
        reader = src.stream("SELECT CASE WHEN id < 5 THEN id ELSE 'text' END AS v FROM users", 4)
        with pytest.raises(SourceError, match="cast it to one type"):
            reader.read_all()
    finally:
        src.close()


def test_missing_file_table_and_read_only(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist; check `path`"):
        source(tmp_path, "nope.sqlite").check()
    make_db(tmp_path / "wh.sqlite", rows=3)
    src = source(tmp_path)
    try:
        with pytest.raises(SourceError, match="no such table: missing"):
            src.columns("SELECT * FROM missing")
        with pytest.raises(SourceError, match="readonly"):
            src.stream("DELETE FROM users RETURNING id").read_all()
    finally:
        src.close()
    assert len(sqlite_rows(tmp_path / "wh.sqlite", "users")) == 3


def test_sync_from_sqlite(project: Builder) -> None:
    make_db(project.root / "wh.sqlite", rows=50)
    project.write("sources/wh.yml", {"type": "sqlite", "path": "wh.sqlite"})
    project.model("users", "SELECT id, email FROM users")
    dest = project.sqlite_destination()
    project.sync("to_db")
    assert project.run("to_db").counts.succeeded == 50
    assert sqlite_rows(dest)[-1] == (50, "u50@example.com")
    assert project.run("to_db").counts.planned == 0
