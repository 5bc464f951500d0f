"""Airflow: the operator in-process, and deferred against a `backhaul serve` on loopback.

The deferrable path is exercised the way Airflow drives it: ``execute`` raises
``TaskDeferred`` carrying the trigger; the trigger is rebuilt from its ``serialize()``
output (as the triggerer does), run to its first event, and the event is handed to the
method the task resumes in.
"""

from __future__ import annotations

import asyncio
import importlib
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException
from airflow.sdk.exceptions import TaskDeferred
from airflow.triggers.base import BaseTrigger
from airflow.triggers.base import TriggerEvent

from backhaul import api
from backhaul.integrations.airflow import BackhaulRunTrigger
from backhaul.integrations.airflow import BackhaulSyncOperator

from .conftest import Served
from .conftest import SyncProject


def _first_event(trigger: BaseTrigger) -> TriggerEvent:
    async def first() -> TriggerEvent:
        async for event in trigger.run():
            return event
        raise AssertionError("the trigger fired no event")

    return asyncio.run(first())


def _as_triggerer(trigger: BaseTrigger) -> BaseTrigger:
    """A new trigger built from ``serialize()``, as Airflow's triggerer builds it."""
    path, kwargs = trigger.serialize()
    module, _, name = path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    rebuilt: BaseTrigger = cls(**kwargs)
    return rebuilt


def test_in_process_run_returns_the_counts(syncs: SyncProject) -> None:
    op = BackhaulSyncOperator(
        task_id="customers", sync="customers_to_db", project_dir=str(syncs.root)
    )

    result = op.execute(context={})

    assert result["status"] == "succeeded" and result["sync"] == "customers_to_db"
    assert (result["counts"]["added"], result["counts"]["rejected"]) == (3, 0)
    with api.open_store(syncs.bh.load()) as store:
        (run,) = store.runs(limit=5)
    assert (run.run_id, run.trigger) == (result["run_id"], "airflow")
    assert len(syncs.table("contacts")) == 3


def test_in_process_partial_fails_only_when_asked(syncs: SyncProject) -> None:
    lenient = BackhaulSyncOperator(task_id="p1", sync="plans_update", project_dir=str(syncs.root))
    assert lenient.execute(context={})["status"] == "partial"

    strict = BackhaulSyncOperator(
        task_id="p2", sync="plans_update", project_dir=str(syncs.root), fail_on_partial=True
    )
    with pytest.raises(AirflowException, match="was partial: 1 rows rejected"):
        strict.execute(context={})


def test_in_process_failed_run_fails_the_task(syncs: SyncProject) -> None:
    syncs.bh.write(
        "models/customers.yml",
        {
            "source": "wh",
            "primary_key": "id",
            "sql": "SELECT id, CASE WHEN id = 2 THEN error('model failed on row 2') "
            'ELSE email END AS email FROM "main"."customers"',
        },
    )
    op = BackhaulSyncOperator(task_id="c", sync="customers_to_db", project_dir=str(syncs.root))
    with pytest.raises(AirflowException, match=r"customers_to_db` run \S+ failed: .*row 2"):
        op.execute(context={})


def test_deferred_run_against_backhaul_serve(syncs: SyncProject, served_syncs: Served) -> None:
    op = BackhaulSyncOperator(
        task_id="orders",
        sync="orders_to_db",
        url=served_syncs.url,
        token=served_syncs.token,
        deferrable=True,
        poll_interval=0.2,
    )

    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context={})

    assert deferred.value.method_name == "execute_complete"
    trigger = _as_triggerer(deferred.value.trigger)
    assert isinstance(trigger, BackhaulRunTrigger)
    event = _first_event(trigger)
    assert event.payload["status"] == "finished"
    result: dict[str, Any] = op.execute_complete(context={}, event=event.payload)
    assert result["status"] == "succeeded"
    assert result["counts"]["added"] == 3
    assert result["url"] == f"{served_syncs.url}/runs/{result['run_id']}"
    assert len(syncs.table("orders")) == 3
    with api.open_store(syncs.bh.load()) as store:
        (run,) = store.runs(limit=5)
    assert (run.run_id, run.trigger) == (result["run_id"], "web")


def test_deferred_partial_run_fails_when_asked(syncs: SyncProject, served_syncs: Served) -> None:
    op = BackhaulSyncOperator(
        task_id="plans",
        sync="plans_update",
        url=served_syncs.url,
        token=served_syncs.token,
        deferrable=True,
        poll_interval=0.2,
        fail_on_partial=True,
    )
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context={})
    event = _first_event(_as_triggerer(deferred.value.trigger))
    with pytest.raises(AirflowException, match="was partial"):
        op.execute_complete(context={}, event=event.payload)


def test_remote_blocking_run_and_bad_token(syncs: SyncProject, served_syncs: Served) -> None:
    op = BackhaulSyncOperator(
        task_id="c",
        sync="customers_to_db",
        url=served_syncs.url,
        token=served_syncs.token,
        poll_interval=0.2,
    )
    assert op.execute(context={})["counts"]["added"] == 3

    bad = BackhaulSyncOperator(
        task_id="c2", sync="customers_to_db", url=served_syncs.url, token="nope", poll_interval=0.2
    )
    with pytest.raises(AirflowException, match=r"401.*check the API token"):
        bad.execute(context={})


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="either project_dir"):
        BackhaulSyncOperator(task_id="x", sync="s")
    with pytest.raises(ValueError, match="needs a remote"):
        BackhaulSyncOperator(task_id="x", sync="s", project_dir=".", deferrable=True)
