"""A SQL-table destination with no table named anywhere is refused by the checks every
entry point makes, before anything runs (not only when the run opens the destination)."""

from __future__ import annotations

import pytest
from tests.conftest import Builder

pytestmark = pytest.mark.integration


def test_no_table_anywhere_is_refused_up_front(project: Builder) -> None:
    project.users(3)
    project.destination("db", type="sqlite", path="out.sqlite", create_table=True)
    project.sync("s", destination="db")

    checked = project.cli("validate", "--offline")
    ran = project.cli("run", "s")

    for result in (checked, ran):
        assert result.returncode == 2, result.stdout + result.stderr
        lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: syncs/s.yml"), lines
        assert ": object: sqlite destination has no table: set `table`" in lines[0]
    assert not (project.root / "out.sqlite").exists()
