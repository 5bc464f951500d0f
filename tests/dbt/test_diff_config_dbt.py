"""`backhaul diff-config` next to a dbt project whose `target/` is not committed."""

from __future__ import annotations

from tests.cli.test_diff_config import commit
from tests.cli.test_diff_config import git
from tests.conftest import Builder

from .conftest import DbtProject


def test_old_revision_reads_dbt_models_through_the_working_manifest(
    bh: Builder, dbt_project: DbtProject
) -> None:
    top = bh.root.parent  # holds the dbt project (`shop`) and the Backhaul project (`bh`)
    bh.write("models/customers.yml", {"source": "wh", "primary_key": "id", "dbt": "customers"})
    bh.sqlite_destination()
    bh.sync("customers_to_db", model="customers")
    (top / ".gitignore").write_text(
        "target/\nlogs/\n*.duckdb\n*.duckdb.wal\n*.sqlite\n.backhaul/\n", encoding="utf-8"
    )
    git(top, "init", "-q", "-b", "main")
    commit(top, "dbt and backhaul")
    assert git(top, "ls-files", "shop/target") == ""  # the manifest is not in the revision
    assert (dbt_project.target / "manifest.json").is_file()
    assert bh.run("customers_to_db").counts.added == 3
    bh.sync("customers_to_db", model="customers", mode="mirror")

    done = bh.cli("diff-config")

    assert done.returncode == 0, done.stderr
    assert "did not load" not in done.stdout
    assert "does not load" not in done.stdout
    assert "mode upsert -> mirror" in done.stdout
    assert "plan now: 0 to add, 0 to change, 0 to remove" in done.stdout
