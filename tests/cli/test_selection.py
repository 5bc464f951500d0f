"""Choosing syncs like dbt: names with wildcards, tag:, model:, destination:, commas to
intersect, + for sequences, --exclude; `--version`; JSON output of the read commands and
GitHub annotations from validate."""

from __future__ import annotations

import json
from importlib.metadata import version

import pytest
from tests.conftest import Builder
from tests.conftest import run_cli

from backhaul.errors import ConfigError
from backhaul.selection import parse_atom
from backhaul.selection import select

pytestmark = pytest.mark.integration


def _project(project: Builder) -> Builder:
    project.users(3)
    project.destination("crm", type="sqlite", path="crm.sqlite", table="c", create_table=True)
    project.destination("mail", type="sqlite", path="mail.sqlite", table="m", create_table=True)
    project.sync("crm_a", destination="crm", tags=["nightly", "sales"])
    project.sync("crm_b", destination="crm", tags=["hourly"], schedule={"after": ["crm_a"]})
    project.sync("mail_c", destination="mail", tags=["nightly"], schedule={"after": ["crm_b"]})
    project.sync("mail_off", destination="mail", tags=["nightly"], enabled=False)
    return project


def test_selectors_choose_like_dbt(project: Builder) -> None:
    loaded = _project(project).load()

    assert select(loaded, []) == ["crm_a", "crm_b", "mail_c"]  # every enabled sync
    assert select(loaded, ["crm_*"]) == ["crm_a", "crm_b"]
    assert select(loaded, ["tag:nightly"]) == ["crm_a", "mail_c"]  # not the disabled one
    assert select(loaded, ["mail_off"]) == ["mail_off"]  # named exactly: runs though disabled
    assert select(loaded, ["destination:mail"]) == ["mail_c"]
    assert select(loaded, ["model:users"]) == ["crm_a", "crm_b", "mail_c"]
    assert select(loaded, ["tag:nightly,destination:crm"]) == ["crm_a"]  # intersection
    assert select(loaded, ["tag:hourly tag:sales"]) == ["crm_a", "crm_b"]  # union
    assert select(loaded, ["+mail_c"]) == ["crm_a", "crm_b", "mail_c"]  # its sequence upstream
    assert select(loaded, ["crm_b+"]) == ["crm_b", "mail_c"]  # and downstream
    assert select(loaded, ["+crm_b+"]) == ["crm_a", "crm_b", "mail_c"]
    assert select(loaded, ["tag:nightly"], ["destination:mail"]) == ["crm_a"]
    assert select(loaded, [], ["crm_*"]) == ["mail_c"]
    assert select(loaded, ["nothing_*"]) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("color:red", "unknown selector method `color:` in `color:red`"),
        ("tag:", "empty selector `tag:`"),
    ],
)
def test_a_bad_selector_is_one_clear_error(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_atom(text)
    assert caught.value.message.startswith(message)


def test_an_unknown_exact_name_is_an_error(project: Builder) -> None:
    loaded = _project(project).load()
    with pytest.raises(ConfigError, match="unknown sync `crm_z`"):
        select(loaded, ["crm_z"])


def test_run_and_plan_take_selections(project: Builder) -> None:
    _project(project)

    planned = project.cli("plan", "--select", "tag:nightly", "--exclude", "mail_*", "--json")
    assert planned.returncode == 0, planned.stderr
    assert [p["sync"] for p in json.loads(planned.stdout)] == ["crm_a"]
    one = project.cli("plan", "crm_b", "--json")
    assert json.loads(one.stdout)["sync"] == "crm_b"  # one sync named: one object

    ran = project.cli("run", "-s", "+crm_b", "--json")
    assert ran.returncode == 0, ran.stderr
    assert [r["sync"] for r in json.loads(ran.stdout)] == ["crm_a", "crm_b"]
    status = json.loads(project.cli("status", "--json").stdout)
    ran_by_sync = {s["sync"]: s["last_run"] for s in status}
    assert ran_by_sync["crm_a"]["status"] == "succeeded" and ran_by_sync["mail_c"] is None
    assert [s["sync"] for s in status] == ["crm_a", "crm_b", "mail_c", "mail_off"]
    chosen = json.loads(project.cli("status", "--json", "-s", "destination:mail").stdout)
    assert [s["sync"] for s in chosen] == ["mail_c"]  # mail_off is disabled

    none = project.cli("run", "--select", "nothing_*")
    assert none.returncode == 2
    assert none.stderr.strip() == "error: no sync selected: name one, use --all, or --select"


def test_version_and_json_of_the_read_commands(project: Builder) -> None:
    _project(project)
    shown = run_cli("--version")
    assert shown.returncode == 0 and shown.stdout.strip() == f"backhaul {version('backhaul')}"

    models = json.loads(project.cli("models", "--json").stdout)
    assert models == [
        {
            "model": "users",
            "kind": "model",
            "audience_schema": None,
            "source": "wh",
            "primary_key": ["id"],
            "used_by": ["crm_a", "crm_b", "mail_c", "mail_off"],
        }
    ]
    schedules = {s["sync"]: s for s in json.loads(project.cli("schedules", "--json").stdout)}
    assert schedules["crm_b"]["schedule"] == "after crm_a" and not schedules["crm_b"]["paused"]
    ok = project.cli("validate", "--offline", "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout) == {"ok": True, "errors": []}


def test_validate_errors_as_json_and_github_annotations(project: Builder) -> None:
    _project(project)
    project.write("syncs/bad.yml", "model: users\ndestination: crm\nmode: sideways\n")

    as_json = project.cli("validate", "--offline", "--format", "json")
    assert as_json.returncode == 2
    data = json.loads(as_json.stdout)
    assert data["ok"] is False
    assert data["errors"][0]["file"] == "syncs/bad.yml"
    assert data["errors"][0]["line"] == 3 and data["errors"][0]["key"] == "mode"

    github = project.cli("validate", "--offline", "--format", "github")
    assert github.returncode == 2
    first = github.stdout.splitlines()[0]
    assert first.startswith("::error file=syncs/bad.yml,line=3,title=mode::")


def test_runs_across_syncs_with_filters(project: Builder) -> None:
    _project(project)
    project.write(
        "destinations/mail.yml",
        {"type": "postgres", "url": "postgresql://u:${env:BH_TEST_NEVER_SET}@127.0.0.1/x"},
    )
    assert project.cli("run", "--all").returncode == 2  # mail_c fails its checks

    every = json.loads(project.cli("runs", "--json").stdout)
    assert sorted(r["sync"] for r in every) == ["crm_a", "crm_b", "mail_c"]
    failed = json.loads(project.cli("runs", "--status", "failed", "--json").stdout)
    assert [r["sync"] for r in failed] == ["mail_c"]
    assert "BH_TEST_NEVER_SET" in failed[0]["error"]
    crm = json.loads(project.cli("runs", "-s", "destination:crm", "--since", "1h", "--json").stdout)
    assert sorted(r["sync"] for r in crm) == ["crm_a", "crm_b"]
    assert json.loads(project.cli("runs", "--since", "2999-01-01", "--json").stdout) == []
    assert json.loads(project.cli("runs", "--trigger", "schedule", "--json").stdout) == []
    table = project.cli("runs", "--status", "failed")
    assert table.returncode == 0 and "mail_c" in table.stdout and "crm_a" not in table.stdout
    bad = project.cli("runs", "--since", "yesterday")
    assert bad.returncode == 2 and bad.stderr.startswith("error: --since takes a duration")
