"""Priority lists saved as ``priority_lists/NAME.yml``: loading, mistakes as
``file:line: key: message``, the model they compile to, and syncing one."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from tests.audiences.projects import audience_file
from tests.audiences.projects import duckdb_project
from tests.audiences.projects import write
from tests.audiences.test_operators import DATA
from tests.conftest import run_cli
from tests.conftest import sqlite_rows

from backhaul import api
from backhaul.audiences.explore import open_explorer
from backhaul.errors import ConfigErrors

pytestmark = pytest.mark.integration

EU = "schema: people\nconditions:\n  - {column: country, op: in, value: [FR, DE]}\n"
VIP = "schema: people\nconditions:\n  - {column: vip, op: equals, value: true}\n"
OFFERS = """\
# VIP offer first: a VIP in Europe gets it, not the newsletter.
description: One offer per person
audiences:
  - vip
  - eu
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = duckdb_project(tmp_path / "proj", DATA)
    audience_file(root, "eu", EU)
    audience_file(root, "vip", VIP)
    return root


def _rows(root: Path, sql: str) -> list[tuple[object, ...]]:
    with duckdb.connect(str(root / "wh.duckdb"), read_only=True) as con:
        return con.execute(f"SELECT * FROM ({sql}) ORDER BY 1").fetchall()


def _errors(root: Path) -> list[str]:
    with pytest.raises(ConfigErrors) as caught:
        api.load_project(root)
    return [str(e) for e in caught.value.errors]


def test_a_priority_list_loads_as_a_model_where_the_first_audience_wins(root: Path) -> None:
    write(root, "priority_lists/offers.yml", OFFERS)
    project = api.load_project(root)

    plist = project.priority_lists["offers"]
    assert plist.schema == "people" and plist.config.audiences == ["vip", "eu"]
    model = project.models["offers"]
    assert model.config.primary_key == ["id"]
    assert model.config.description == "One offer per person"
    # vip: 1 and 5 (also in eu); eu: 2 only, as 1 and 5 went to the first audience.
    assert _rows(root, model.sql) == [(1, "vip"), (2, "eu"), (5, "vip")]
    with open_explorer(project, "people") as ex:
        assert sorted(ex.priority(["vip", "eu"])) == [("eu", 1), ("vip", 2)]


def test_the_order_of_the_file_decides(root: Path) -> None:
    write(root, "priority_lists/offers.yml", "audiences: [eu, vip]\n")
    model = api.load_project(root).models["offers"]
    assert _rows(root, model.sql) == [(1, "eu"), (2, "eu"), (5, "eu")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "audiences:\n  - vip\n  - euu\n",
            "priority_lists/bad.yml:3: audiences.1: unknown audience `euu` (did you mean `eu`?",
        ),
        (
            "audiences:\n  - vip\n  - eu\n  - vip\n",
            "priority_lists/bad.yml:4: audiences.2: audience `vip` is listed twice",
        ),
        ("audiences: []\n", "priority_lists/bad.yml:1: audiences: "),
        ("audiences: [vip]\nwinner: first\n", "priority_lists/bad.yml:2: winner: "),
    ],
)
def test_mistakes_name_the_file_line_and_key(root: Path, text: str, expected: str) -> None:
    write(root, "priority_lists/bad.yml", text)
    found = _errors(root)
    assert any(e.startswith(expected) for e in found), found


def test_audiences_of_two_schemas_are_refused(root: Path) -> None:
    write(root, "audience_schemas/accounts.yml", "parent:\n  model: accounts\n")
    audience_file(
        root, "big", "schema: accounts\nconditions:\n  - {column: seats, op: gt, value: 10}\n"
    )
    write(root, "priority_lists/mixed.yml", "audiences:\n  - vip\n  - big\n")
    found = _errors(root)
    assert any(
        e.startswith("priority_lists/mixed.yml:3: audiences.1: audience `big` is built on schema")
        and "a priority list needs one schema" in e
        for e in found
    ), found


def test_a_priority_list_cannot_take_an_audience_name(root: Path) -> None:
    write(root, "priority_lists/vip.yml", "audiences: [eu]\n")
    found = _errors(root)
    assert any("priority list `vip` has the name of the audience" in e for e in found), found


def test_a_priority_list_syncs_like_a_model(root: Path) -> None:
    write(root, "priority_lists/offers.yml", OFFERS)
    write(
        root,
        "destinations/offers.yml",
        "type: sqlite\npath: offers.sqlite\ntable: offers\ncreate_table: true\n",
    )
    write(
        root,
        "syncs/offers.yml",
        "model: offers\ndestination: offers\nmode: mirror\nmax_remove_pct: 100\nmappings:\n"
        "  - {column: id, field: id}\n  - {column: audience, field: offer}\n",
    )
    checked = run_cli("validate", "-C", str(root))
    assert checked.returncode == 0, checked.stderr
    first = api.run(api.load_project(root), "offers")
    assert first.status.value == "succeeded", first
    assert sqlite_rows(root / "offers.sqlite", "offers") == [(1, "vip"), (2, "eu"), (5, "vip")]
    with duckdb.connect(str(root / "wh.duckdb")) as con:
        con.execute("UPDATE people SET vip = false WHERE id = 5")  # falls to the next audience
        con.execute("UPDATE people SET country = 'US' WHERE id = 2")  # in none any more
    second = api.run(api.load_project(root), "offers")
    assert second.status.value == "succeeded", second
    assert (second.counts.changed, second.counts.removed) == (1, 1)
    assert sqlite_rows(root / "offers.sqlite", "offers") == [(1, "vip"), (5, "eu")]
