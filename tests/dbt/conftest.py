"""A real dbt project on DuckDB, built once per session and copied for each test.

The session fixture writes a tiny dbt project (two models with tags, a seed, tests) and
runs ``dbt build`` in a subprocess, so dbt's logging and globals stay out of pytest. Each
test gets a copy of the built project (warehouse file and ``target/`` included) with its
profile pointing at the copy, so tests may change models and rebuild without affecting
each other.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version
from pathlib import Path

import pytest
from tests.conftest import Builder


def _installed(*dists: str) -> bool:
    # By distribution, not by import: pytest puts tests/ on sys.path, where this very
    # folder is a package named `dbt` that would shadow the real one.
    try:
        return all(version(d) for d in dists)
    except PackageNotFoundError:
        return False


if not _installed("dbt-core", "dbt-duckdb"):
    pytest.skip("dbt-core and dbt-duckdb are test dependencies", allow_module_level=True)

DBT_PROJECT = """\
name: shop
version: "1.0"
profile: shop
config-version: 2
models:
  shop:
    +materialized: table
"""

PROFILES = """\
shop:
  target: dev
  outputs:
    dev:
      type: duckdb
      path: {path}
      threads: 1
"""

MODELS = {
    "models/customers.sql": """\
{{ config(tags=['crm']) }}
select id, email, plan from {{ ref('plans') }}
""",
    "models/orders.sql": """\
{{ config(tags=['finance', 'crm'], alias='order_facts', schema='marts') }}
select id * 10 as order_id, id as customer_id, id * 100 as amount
from {{ ref('customers') }}
""",
    "models/schema.yml": """\
version: 2
models:
  - name: customers
    description: One row per customer.
    columns:
      - name: id
        data_tests: [unique, not_null]
      - name: email
        data_tests: [not_null]
      - name: plan
  - name: orders
    description: Orders with their amount.
    columns:
      - name: order_id
        data_tests: [unique]
      - name: customer_id
      - name: amount
""",
    "seeds/plans.csv": """\
id,email,plan
1,ada@example.com,pro
2,grace@example.com,free
3,alan@example.com,pro
""",
}


@dataclass
class DbtProject:
    """A built dbt project folder whose DuckDB warehouse is ``warehouse``."""

    root: Path

    @property
    def warehouse(self) -> Path:
        return self.root / "shop.duckdb"

    @property
    def target(self) -> Path:
        return self.root / "target"

    def write(self, rel: str, text: str) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")

    def dbt(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a dbt command in this project; fail the test when dbt fails."""
        done = dbt(self.root, *args)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done


def dbt(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DO_NOT_TRACK": "1",
        "DBT_PROFILES_DIR": str(root),
        "DBT_LOG_PATH": str(root / "logs"),
        "NO_COLOR": "1",
    }
    return subprocess.run(
        [sys.executable, "-c", "from dbt.cli.main import cli; cli()", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def write_profile(root: Path) -> None:
    (root / "profiles.yml").write_text(PROFILES.format(path=root / "shop.duckdb"), encoding="utf-8")


@pytest.fixture(scope="session")
def built_dbt(tmp_path_factory: pytest.TempPathFactory) -> DbtProject:
    """The dbt project, built once: seed, two models, their tests."""
    project = DbtProject(tmp_path_factory.mktemp("dbt") / "shop")
    project.write("dbt_project.yml", DBT_PROJECT)
    for rel, text in MODELS.items():
        project.write(rel, text)
    write_profile(project.root)
    project.dbt("build", "--no-partial-parse")
    return project


@pytest.fixture
def dbt_project(built_dbt: DbtProject, tmp_path: Path) -> DbtProject:
    """A private copy of the built dbt project (its profile points at the copy)."""
    root = tmp_path / "shop"
    shutil.copytree(built_dbt.root, root, ignore=shutil.ignore_patterns("logs"))
    write_profile(root)
    return DbtProject(root)


@pytest.fixture
def bh(dbt_project: DbtProject, tmp_path: Path) -> Builder:
    """A Backhaul project next to the dbt project, reading the same warehouse file."""
    return Builder(
        tmp_path / "bh",
        warehouse_file=str(dbt_project.warehouse),
        project_extra={"dbt_project": "../shop"},
    )
