"""Dagster: the syncs of a project downstream of a real dbt project, materialised in-process.

The dbt assets are dagster-dbt's, built from the same manifest, so the dependency keys
are checked against what dagster-dbt really produces (not against a copy of its rule).
"""

# No `from __future__ import annotations`: Dagster reads the `context` annotation itself.

import shutil
import sys
from pathlib import Path

import dagster as dg
import pytest
from dagster_dbt import DbtCliResource
from dagster_dbt import dbt_assets

from backhaul import api
from backhaul.integrations.dagster import BackhaulResource
from backhaul.integrations.dagster import BackhaulTranslator
from backhaul.integrations.dagster import SyncProps
from backhaul.integrations.dagster import backhaul_assets

from .conftest import SyncProject

# dagster-dbt itself calls a Dagster API that Dagster deprecates (context.op).
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:dagster_dbt.*")

WEB = "http://backhaul.example:8080"
KEY = dg.AssetKey


def _dbt(syncs: SyncProject) -> tuple[dg.AssetsDefinition, DbtCliResource]:
    @dbt_assets(manifest=syncs.dbt.target / "manifest.json")
    def shop(context: dg.AssetExecutionContext, dbt: DbtCliResource):  # type: ignore[no-untyped-def]
        yield from dbt.cli(["build"], context=context).stream()

    executable = shutil.which("dbt", path=str(Path(sys.executable).parent))
    assert executable is not None
    resource = DbtCliResource(
        project_dir=str(syncs.dbt.root),
        profiles_dir=str(syncs.dbt.root),
        dbt_executable=executable,
    )
    return shop, resource


def _materialisations(result: dg.ExecuteInProcessResult) -> dict[dg.AssetKey, dict[str, object]]:
    out = {}
    for m in result.asset_materializations_for_node("backhaul_syncs"):
        out[m.asset_key] = {k: v.value for k, v in m.metadata.items()}
    return out


def test_assets_depend_on_the_dbt_assets_their_models_read(syncs: SyncProject) -> None:
    shop, _ = _dbt(syncs)
    syncs_assets = backhaul_assets(syncs.root)

    deps = {spec.key: {d.asset_key for d in spec.deps} for spec in syncs_assets.specs}
    assert deps == {
        KEY(["backhaul", "customers_to_db"]): {KEY(["customers"])},
        KEY(["backhaul", "orders_to_db"]): {KEY(["marts", "orders"]), KEY(["customers"])},
        KEY(["backhaul", "plans_update"]): {KEY(["customers"])},
    }
    # The keys are the ones dagster-dbt gave the dbt models.
    assert {KEY(["customers"]), KEY(["marts", "orders"])} <= set(shop.keys)
    assert syncs_assets.can_subset
    spec = next(s for s in syncs_assets.specs if s.key == KEY(["backhaul", "customers_to_db"]))
    assert spec.group_name == "backhaul"
    assert spec.kinds == {"backhaul", "sqlite"}
    assert "crm" in spec.tags


def test_materialising_runs_the_syncs_after_dbt_and_records_their_counts(
    syncs: SyncProject,
) -> None:
    shop, dbt = _dbt(syncs)
    resource = BackhaulResource(project_dir=str(syncs.root), web_url=WEB)

    result = dg.materialize(
        [shop, backhaul_assets(syncs.root)], resources={"dbt": dbt, "backhaul": resource}
    )

    assert result.success
    found = _materialisations(result)
    assert set(found) == {
        KEY(["backhaul", "customers_to_db"]),
        KEY(["backhaul", "orders_to_db"]),
        KEY(["backhaul", "plans_update"]),
    }
    customers = found[KEY(["backhaul", "customers_to_db"])]
    assert (customers["added"], customers["changed"], customers["removed"]) == (3, 0, 0)
    assert customers["rejected"] == 0 and customers["status"] == "succeeded"
    assert customers["run_url"] == f"{WEB}/runs/{customers['run_id']}"
    plans = found[KEY(["backhaul", "plans_update"])]
    assert (plans["added"], plans["rejected"], plans["status"]) == (3, 1, "partial")
    assert syncs.table("contacts") == [
        (1, "ada@example.com"),
        (2, "grace@example.com"),
        (3, "alan@example.com"),
    ]
    with api.open_store(syncs.bh.load()) as store:
        runs = store.runs(limit=10)
    assert sorted((r.sync, r.trigger) for r in runs) == [
        ("customers_to_db", "dagster"),
        ("orders_to_db", "dagster"),
        ("plans_update", "dagster"),
    ]
    assert str(customers["run_id"]) in {r.run_id for r in runs}

    # A second materialisation finds nothing new, except the row still rejected.
    again = _materialisations(
        dg.materialize([backhaul_assets(syncs.root)], resources={"backhaul": resource})
    )
    assert again[KEY(["backhaul", "customers_to_db"])]["added"] == 0
    assert again[KEY(["backhaul", "plans_update"])]["rejected"] == 1


def test_a_subset_runs_only_its_syncs_and_the_threshold_fails_the_step(
    syncs: SyncProject,
) -> None:
    strict = BackhaulResource(project_dir=str(syncs.root), max_rejected=0)

    result = dg.materialize(
        [backhaul_assets(syncs.root)],
        resources={"backhaul": strict},
        selection=[KEY(["backhaul", "plans_update"])],
        raise_on_error=False,
    )

    assert not result.success
    failure = result.failure_data_for_node("backhaul_syncs")
    assert failure is not None
    assert "1 rejected rows, more than the 0 allowed" in str(failure.error)
    # The run happened and its counts are recorded, though the step failed.
    found = _materialisations(result)
    assert list(found) == [KEY(["backhaul", "plans_update"])]
    assert found[KEY(["backhaul", "plans_update"])]["rejected"] == 1
    with api.open_store(syncs.bh.load()) as store:
        assert [r.sync for r in store.runs(limit=10)] == ["plans_update"]

    lenient = BackhaulResource(project_dir=str(syncs.root), max_rejected=1)
    assert dg.materialize(
        [backhaul_assets(syncs.root)],
        resources={"backhaul": lenient},
        selection=[KEY(["backhaul", "plans_update"])],
    ).success


def test_a_failed_run_fails_the_step_without_a_materialisation(syncs: SyncProject) -> None:
    syncs.bh.write(
        "models/customers.yml",
        {
            "source": "wh",
            "primary_key": "id",
            "sql": "SELECT id, CASE WHEN id = 2 THEN error('model failed on row 2') "
            'ELSE email END AS email FROM "main"."customers"',
        },
    )
    result = dg.materialize(
        [backhaul_assets(syncs.root, syncs=["customers_to_db"])],
        resources={"backhaul": BackhaulResource(project_dir=str(syncs.root))},
        raise_on_error=False,
    )
    assert not result.success
    assert _materialisations(result) == {}
    failure = result.failure_data_for_node("backhaul_syncs")
    assert failure is not None and "customers_to_db" in str(failure.error)


def test_a_translator_customises_the_specs(syncs: SyncProject) -> None:
    class Crm(BackhaulTranslator):
        def get_asset_spec(self, props: SyncProps) -> dg.AssetSpec:
            spec = super().get_asset_spec(props)
            return spec.replace_attributes(
                key=KEY(["crm", props.sync.name]), group_name="crm", owners=["team:growth"]
            )

    assets = backhaul_assets(syncs.root, translator=Crm(), syncs=["customers_to_db"])
    (spec,) = assets.specs
    assert spec.key == KEY(["crm", "customers_to_db"])
    assert spec.group_name == "crm" and spec.owners == ["team:growth"]
    result = dg.materialize(
        [assets], resources={"backhaul": BackhaulResource(project_dir=str(syncs.root))}
    )
    assert _materialisations(result)[KEY(["crm", "customers_to_db"])]["added"] == 3


def test_unknown_sync_is_a_clear_error(syncs: SyncProject) -> None:
    from backhaul.errors import ConfigError

    with pytest.raises(ConfigError, match="nope"):
        backhaul_assets(syncs.root, syncs=["nope"])
