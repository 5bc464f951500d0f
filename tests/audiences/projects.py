"""Real project folders for audience tests: the test world as models, the schema file, and
audience files, on a DuckDB file or on a Postgres database."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from tests.audiences.world import TABLES
from tests.audiences.world import Data
from tests.audiences.world import DuckWorld
from tests.audiences.world import PgWorld

SCHEMA_YML = """\
# What audiences of people can filter on.
description: People who use the product
parent:
  model: people
  key: id
  columns:
    name: {type: string, personal: true}
    country: string
    age: number
    score: number
    vip: boolean
    born: date
    seen: timestamp
    account_id: number
related:
  accounts:
    model: accounts
    cardinality: "N:1"
    key: id
    parent_key: account_id
    columns: {plan: string, seats: number}
  orders:
    model: orders
    cardinality: "1:N"
    key: person_id
    columns: {amount: number, status: string}
events:
  visits:
    model: visits
    key: person_id
    timestamp: at
    columns: {page: string}
"""


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def duckdb_project(root: Path, data: Data) -> Path:
    """A project whose warehouse is a DuckDB file holding ``data``."""
    root.mkdir(parents=True, exist_ok=True)
    world = DuckWorld(str(root / "wh.duckdb"))
    try:
        world.load(data)
    finally:
        world.close()
    _files(root, "type: duckdb\npath: wh.duckdb\n", "")
    return root


def postgres_project(root: Path, world: PgWorld, url: str, data: Data) -> Path:
    """A project reading ``data`` from ``world``'s schema in the Postgres database at ``url``."""
    world.load(data)
    _files(root, f"type: postgres\nurl: {url}\n", f"{world.schema}.")
    return root


def _files(root: Path, source: str, prefix: str) -> None:
    write(root, "backhaul.yml", "name: audiences\n")
    write(root, "sources/wh.yml", source)
    keys = {
        "people": "id",
        "accounts": "id",
        "orders": "[person_id, amount]",
        "visits": "[person_id, at]",
    }
    for table in TABLES:
        write(
            root,
            f"models/{table}.yml",
            f"source: wh\nprimary_key: {keys[table]}\ntable: {prefix}{table}\n",
        )
    write(root, "audience_schemas/people.yml", SCHEMA_YML)


def audience_file(root: Path, name: str, text: str) -> Path:
    return write(root, f"audiences/{name}.yml", text)


def rows(data: Data, **extra: Any) -> dict[str, list[dict[str, Any]]]:
    return {**{k: list(v) for k, v in data.items()}, **extra}
