"""Every `--json` output matches the JSON Schema of its shape (`backhaul schema --outputs`
writes them), checked with an independent validator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from tests.conftest import Builder
from tests.conftest import run_cli

from backhaul import api
from backhaul.cli.shapes import OUTPUTS
from backhaul.cli.shapes import output_schema
from backhaul.web.auth import Role
from backhaul.web.users import UserStore

pytestmark = pytest.mark.integration


def _check(command: str, text: str) -> Any:
    data = json.loads(text)
    jsonschema.validate(data, output_schema(command))
    return data


def test_every_json_output_matches_its_schema(project: Builder) -> None:
    project.users(5)
    project.sql(  # one row without a key: invalid
        "CREATE OR REPLACE TABLE users AS SELECT * FROM users UNION ALL "
        "SELECT NULL, 'nobody@example.com', 'no id', 0"
    )
    project.destination("db", type="sqlite", path="o.sqlite", table="c", create_table=True)
    project.sync("s", destination="db", schedule={"every": "1h"})
    project.sync("t", destination="db", object="t", tags=["x"])

    plan_one = _check("plan", project.cli("plan", "s", "--json").stdout)
    assert plan_one["sync"] == "s" and plan_one["dry_run"] is True
    _check("plan", project.cli("plan", "--json").stdout)
    ran = _check("run", project.cli("run", "--all", "--json").stdout)
    assert {r["sync"] for r in ran} == {"s", "t"}
    assert ran[0]["counts"]["invalid"] == 1  # the run is partial
    runs = _check("runs", project.cli("runs", "--json").stdout)
    assert len(runs) == 2
    status = _check("status", project.cli("status", "--json").stdout)
    assert status[0]["last_run"]["status"] == "partial"
    _check("models", project.cli("models", "--json").stdout)
    schedules = _check("schedules", project.cli("schedules", "--json").stdout)
    assert {s["sync"]: s["kind"] for s in schedules}["s"] == "interval"
    _check("validate", project.cli("validate", "--offline", "--json").stdout)
    with api.open_store(project.load()) as store:
        UserStore(store).add("ana", "a-long-password-1", Role.EDITOR)
    users = _check("users list", project.cli("users", "list", "--json").stdout)
    assert users == [{"user": "ana", "role": "editor", "active_tokens": []}]
    checked = _check("test-connection", project.cli("test-connection", "wh", "--json").stdout)
    assert checked[0]["kind"] == "source" and checked[0]["ok"] is True
    project.write("syncs/bad.yml", "model: users\ndestination: db\nmode: sideways\n")
    bad = _check("validate", project.cli("validate", "--offline", "--json").stdout)
    assert bad["ok"] is False and bad["errors"][0]["line"] == 3


def test_a_validator_refuses_a_wrong_shape() -> None:
    # The schemas are strict enough to catch a renamed or missing key.
    run = {
        "run_id": "r",
        "sync": "s",
        "status": "succeeded",
        "trigger": "cli",
        "started_at": "2026-01-01T00:00:00+00:00",
        "finished_at": None,
        "duration_s": 0.0,
        "full_resync": False,
        "git_commit": None,
        "wait_s": 0.0,
        "counts": {"queried": 1},
        "error": None,
    }
    try:
        jsonschema.validate([run], output_schema("runs"))
    except jsonschema.ValidationError as exc:
        assert "required property" in exc.message
    else:
        raise AssertionError("an incomplete counts object passed the schema")


def test_schema_writes_the_output_schemas(tmp_path: Path) -> None:
    out = tmp_path / "schemas"
    result = run_cli("schema", "--out", str(out), "--outputs")
    assert result.returncode == 0, result.stderr
    for command in OUTPUTS:
        file = out / "outputs" / f"{command.replace(' ', '-')}.schema.json"
        written = json.loads(file.read_text())
        jsonschema.Draft202012Validator.check_schema(written)
        assert written["title"] == f"backhaul {command} --json"
