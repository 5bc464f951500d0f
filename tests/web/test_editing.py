"""The editors' API on a real Git repository, the web app and the HubSpot emulator on
loopback: roles, one commit per save by the signed-in user, a hand comment surviving an
edit, the CLI's messages beside the field, secrets kept out of every commit, delete, the
destination's fields (HubSpot's, and Zendesk's from its emulator), preview and test
connection."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from tests.conftest import run_cli
from tests.web.editing_env import TOKEN_ENV
from tests.web.editing_env import EditEnv
from tests.web.editing_env import edit_env

from backhaul.config.yamledit import edit_yaml
from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.zendesk import ZendeskEmulator
from backhaul.web.auth import Role

pytestmark = pytest.mark.integration

HAND_SYNC = """\
# Leads to HubSpot: written by hand before the UI existed.
model: leads
destination: crm   # the emulator account
object: contacts
mode: upsert
match:
  fields: [email]
mappings:
  - {column: email, field: email}   # the identity
  - {column: first_name, field: firstname}
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EditEnv]:
    with edit_env(tmp_path_factory.mktemp("edit")) as found:
        c = found.client(Role.EDITOR)
        steps = [
            ("sources/warehouse", {"type": "duckdb", "values": {"path": "warehouse.duckdb"}}),
            (
                "models/leads",
                {
                    "values": {"source": "warehouse", "primary_key": ["id"]},
                    "sql": "SELECT id, email, first_name FROM leads",
                },
            ),
            (
                "destinations/crm",
                {
                    "type": "hubspot",
                    "values": {"token": TOKEN_ENV, "base_url": found.hubspot_url},
                },
            ),
        ]
        for path, body in steps:
            answer = c.put(f"/api/v1/edit/{path}", json=body)
            assert answer.status_code == 200, answer.text
        (found.root / "syncs").mkdir()
        (found.root / "syncs" / "leads_to_hubspot.yml").write_text(HAND_SYNC, encoding="utf-8")
        found.git("add", "syncs")
        found.git("commit", "-qm", "A sync written by hand")
        yield found


def _state(env: EditEnv, c: object, path: str) -> dict[str, object]:
    answer = c.get(f"/api/v1/edit/{path}")  # type: ignore[attr-defined]
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def test_viewers_and_operators_get_403_editors_and_admins_may(env: EditEnv) -> None:
    for role in (Role.VIEWER, Role.OPERATOR):
        c = env.client(role)
        assert c.get("/api/v1/edit/syncs/leads_to_hubspot").status_code == 403
        assert c.put("/api/v1/edit/syncs/x", json={"values": {}}).status_code == 403
        assert c.delete("/api/v1/edit/syncs/leads_to_hubspot").status_code == 403
        assert c.get("/edit").status_code == 403
        assert "/edit" not in c.get("/").text.split("<main>")[0]
    for role in (Role.EDITOR, Role.ADMIN):
        c = env.client(role)
        assert c.get("/edit").status_code == 200
        assert 'href="/edit"' in c.get("/").text
    # A save without the CSRF token is refused.
    c = env.client(Role.EDITOR)
    del c.headers["X-CSRF-Token"]
    assert c.put("/api/v1/edit/syncs/x", json={"values": {}}).status_code == 403


def test_an_edit_keeps_the_hand_comment_and_is_one_commit_by_the_user(env: EditEnv) -> None:
    c = env.client(Role.EDITOR)
    state = _state(env, c, "syncs/leads_to_hubspot")
    before = env.git("rev-parse", "HEAD").strip()
    answer = c.put(
        "/api/v1/edit/syncs/leads_to_hubspot",
        json={"values": {"mode": "mirror"}, "base": state["base"]},
    )
    assert answer.status_code == 200, answer.text
    text = (env.root / "syncs" / "leads_to_hubspot.yml").read_text(encoding="utf-8")
    assert text == HAND_SYNC.replace("mode: upsert", "mode: mirror")
    log = env.git("log", "--format=%an <%ae>|%s", f"{before}..HEAD").splitlines()
    assert log == [
        "editor_user <editor_user@users.backhaul.invalid>|"
        "Edit sync leads_to_hubspot: mode upsert -> mirror"
    ]
    files = env.git("show", "--name-only", "--format=", "HEAD").split()
    assert files == ["syncs/leads_to_hubspot.yml"]
    # The app serves the change at once.
    assert c.get("/api/v1/syncs/leads_to_hubspot").json()["mode"] == "mirror"
    # Saving again from the stale base is refused: the file changed since it was opened.
    stale = c.put(
        "/api/v1/edit/syncs/leads_to_hubspot",
        json={"values": {"mode": "upsert"}, "base": state["base"]},
    )
    assert stale.status_code == 409


def test_an_invalid_value_comes_back_beside_its_key_with_the_cli_message(env: EditEnv) -> None:
    c = env.client(Role.EDITOR)
    state = _state(env, c, "syncs/leads_to_hubspot")
    head = env.git("rev-parse", "HEAD").strip()
    text = (env.root / "syncs" / "leads_to_hubspot.yml").read_text(encoding="utf-8")
    answer = c.put(
        "/api/v1/edit/syncs/leads_to_hubspot",
        json={"values": {"batch_size": "0"}, "base": state["base"]},
    )
    assert answer.status_code == 422, answer.text
    (problem,) = answer.json()["error"]["problems"]
    assert problem["key"] == "batch_size" and problem["file"] == "syncs/leads_to_hubspot.yml"
    # The same text `backhaul validate` prints for that file.
    broken = env.root.parent / f"broken-{uuid.uuid4().hex[:8]}"
    shutil.copytree(env.root, broken)
    (broken / "syncs" / "leads_to_hubspot.yml").write_text(
        edit_yaml(text, {"batch_size": 0}), encoding="utf-8"
    )
    cli = run_cli("validate", "--offline", "-C", str(broken))
    assert cli.returncode != 0 and problem["text"] in cli.stdout + cli.stderr
    # Nothing was kept or committed.
    assert (env.root / "syncs" / "leads_to_hubspot.yml").read_text(encoding="utf-8") == text
    assert env.git("rev-parse", "HEAD").strip() == head


def test_a_secret_is_written_as_an_env_reference_and_never_committed(env: EditEnv) -> None:
    c = env.client(Role.EDITOR)
    # A literal value where a secret goes is refused, beside its field.
    answer = c.put(
        "/api/v1/edit/destinations/crm2",
        json={"type": "hubspot", "values": {"token": env.token, "base_url": env.hubspot_url}},
    )
    assert answer.status_code == 422
    assert answer.json()["error"]["problems"][0]["key"] == "token"
    text = (env.root / "destinations" / "crm.yml").read_text(encoding="utf-8")
    assert f"token: ${{env:{TOKEN_ENV}}}" in text
    history = env.git("log", "-p", "--all")
    assert env.token not in history
    assert not (env.root / "destinations" / "crm2.yml").exists()


def test_the_destination_lists_its_fields_and_the_source_tests_its_connection(
    env: EditEnv,
) -> None:
    c = env.client(Role.EDITOR)
    fields = c.get("/api/v1/edit/destinations/crm/fields?object=contacts").json()["fields"]
    by_name = {f["name"]: f for f in fields}
    assert by_name["email"]["unique"] and by_name["firstname"]["type"] == "text"
    check = c.post("/api/v1/edit/sources/warehouse/check").json()
    assert check["ok"] and check["version"].startswith("DuckDB")
    text = "type: duckdb\npath: warehouse.duckdb\n"
    unsaved = c.post("/api/v1/edit/sources/warehouse_two/check", json={"text": text}).json()
    assert unsaved["ok"] and unsaved["version"].startswith("DuckDB")
    assert not (env.root / "sources" / "warehouse_two.yml").exists()
    preview = c.post(
        "/api/v1/edit/models/preview",
        json={"source": "warehouse", "sql": "SELECT id, email FROM leads ORDER BY id"},
    ).json()
    assert [col["name"] for col in preview["columns"]] == ["id", "email"]
    assert preview["rows"][0] == [1, "ann@example.com"]


def _project_files(root: Path) -> dict[str, bytes]:
    """Every file of the project but Git's and the app's own state."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not {".git", ".backhaul"} & set(p.relative_to(root).parts)
    }


def test_test_connection_tries_the_unsaved_text_as_the_cli_would_and_writes_nothing(
    env: EditEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = env.client(Role.EDITOR)
    wrong_env = "BACKHAUL_EDIT_TEST_WRONG_TOKEN"
    monkeypatch.setenv(wrong_env, "pat-na1-not-the-token")
    head = env.git("rev-parse", "HEAD")
    before = _project_files(env.root)
    url = "/api/v1/edit/destinations/crm_try/check"

    good = f"type: hubspot\ntoken: ${{env:{TOKEN_ENV}}}\nbase_url: {env.hubspot_url}\n"
    ok = c.post(url, json={"text": good})
    assert ok.status_code == 200 and ok.json()["ok"] and ok.json()["type"] == "hubspot", ok.text

    # A wrong token: the message `backhaul test-connection` prints for the saved file.
    bad = good.replace(TOKEN_ENV, wrong_env)
    refused = c.post(url, json={"text": bad}).json()
    assert refused["ok"] is False and env.token not in refused["message"]
    tried = env.root.parent / f"tried-{uuid.uuid4().hex[:8]}"
    shutil.copytree(env.root, tried)
    (tried / "destinations" / "crm_try.yml").write_text(bad, encoding="utf-8")
    cli = run_cli("test-connection", "crm_try", "-C", str(tried))
    first = refused["message"].splitlines()[0]
    assert cli.returncode != 0 and f"destination `crm_try`: {first}" in cli.stderr

    # A config mistake answers what a save answers: the problem at its file, line and key.
    for text, key in (
        (good + "bogus: 1\n", "bogus"),
        ("type: hubspot\ntoken: [unclosed\n", None),
    ):
        answer = c.post(url, json={"text": text})
        assert answer.status_code == 422, answer.text
        error = answer.json()["error"]
        assert error["message"] == "the project would not validate"
        (problem,) = error["problems"]
        assert problem["file"] == "destinations/crm_try.yml" and problem["line"]
        assert problem["key"] == key
        (tried / "destinations" / "crm_try.yml").write_text(text, encoding="utf-8")
        cli = run_cli("validate", "--offline", "-C", str(tried))
        assert cli.returncode != 0 and problem["text"] in cli.stdout + cli.stderr

    # The form as a save sends it (the editor's button) is tried the same way...
    form = {"type": "hubspot", "values": {"token": TOKEN_ENV, "base_url": env.hubspot_url}}
    assert c.post(url, json=form).json()["ok"]
    changed = {"values": {"token": wrong_env}, "base": _state(env, c, "destinations/crm")["base"]}
    assert c.post("/api/v1/edit/destinations/crm/check", json=changed).json() == {
        "ok": False,
        "message": refused["message"],
    }
    # ...and a value a save refuses answers the save's own error.
    literal = {"type": "hubspot", "values": {"token": env.token, "base_url": env.hubspot_url}}
    checked = c.post(url, json=literal)
    assert checked.status_code == 422 and env.token not in checked.text
    assert checked.json() == c.put("/api/v1/edit/destinations/crm_try", json=literal).json()

    # Nothing was written or committed; without a body the saved file is tested.
    assert _project_files(env.root) == before
    assert env.git("rev-parse", "HEAD") == head and env.git("status", "--porcelain") == ""
    assert c.post(url).status_code == 404
    assert c.post("/api/v1/edit/destinations/crm/check").json()["ok"]


def test_delete_is_refused_while_used_and_then_is_one_commit(env: EditEnv) -> None:
    c = env.client(Role.EDITOR)
    page = c.get("/edit/models/leads/delete")
    assert "sync leads_to_hubspot" in page.text and "models/leads.sql" in page.text
    refused = c.delete("/api/v1/edit/models/leads")
    assert refused.status_code == 422
    assert (env.root / "models" / "leads.sql").exists()
    made = c.put(
        "/api/v1/edit/models/spare",
        json={"values": {"source": "warehouse", "primary_key": ["id"]}, "sql": "SELECT 1 AS id"},
    )
    assert made.status_code == 200, made.text
    assert env.git("show", "--name-only", "--format=", "HEAD").split() == [
        "models/spare.sql",
        "models/spare.yml",
    ]
    gone = c.delete("/api/v1/edit/models/spare")
    assert gone.status_code == 200, gone.text
    assert not Path(env.root / "models" / "spare.yml").exists()
    assert env.git("log", "-1", "--format=%an|%s").strip() == "editor_user|Delete model spare"


def test_a_static_null_or_empty_value_is_written_as_a_value_mapping(env: EditEnv) -> None:
    c = env.client(Role.EDITOR)
    mappings = [
        {"column": "email", "field": "email"},
        {"value": None, "field": "phone"},
        {"value": "", "field": "city"},
        {"value": 42, "field": "jobtitle"},
        {"template": "{{ first_name }}", "field": "firstname", "cast": "string", "nulls": "skip"},
    ]
    values = {"model": "leads", "destination": "crm", "object": "contacts", "mode": "upsert"}
    body = {"values": values, "mappings": mappings, "match": ["email"]}
    made = c.put("/api/v1/edit/syncs/values_to_hubspot", json=body)
    try:
        assert made.status_code == 200, made.text
        text = (env.root / "syncs" / "values_to_hubspot.yml").read_text(encoding="utf-8")
        loaded = yaml.safe_load(text)
        assert loaded["mappings"] == mappings
    finally:
        if made.status_code == 200:
            assert c.delete("/api/v1/edit/syncs/values_to_hubspot").status_code == 200


def test_an_alert_channel_is_made_used_by_a_sync_and_kept_while_used(
    env: EditEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDIT_TEST_SLACK_HOOK", "https://hooks.slack.invalid/T0/B0/x")
    c = env.client(Role.EDITOR)
    form = c.get("/edit/channels/new?type=slack")
    assert form.status_code == 200 and 'id="f-webhook_url"' in form.text
    body = {"type": "slack", "values": {"webhook_url": "EDIT_TEST_SLACK_HOOK"}}
    made = c.put("/api/v1/edit/channels/team_slack", json=body)
    assert made.status_code == 200, made.text
    channel = env.root / "channels" / "team_slack.yml"
    assert channel.read_text(encoding="utf-8") == (
        "type: slack\nwebhook_url: ${env:EDIT_TEST_SLACK_HOOK}\n"
    )
    assert env.git("log", "-1", "--format=%s").strip() == "Create alert channel team_slack (slack)"
    assert "team_slack" in c.get("/edit").text
    # Its page offers a test; this Slack URL reaches nothing, and the Alerts page says so.
    assert 'id="send-test"' in c.get("/edit/channels/team_slack").text
    tried = c.post("/alerts/channels/team_slack/test")
    assert tried.status_code == 303
    assert tried.headers["location"] == "/alerts?tested=team_slack&tested_ok=false"

    # A sync's alerts name it (the form's YAML setting); then it cannot go.
    state = _state(env, c, "syncs/leads_to_hubspot")
    sync_text = str(state["text"])
    alerts = {"alerts": "channels: [team_slack]\nrules:\n  failed: true\n"}
    used = c.put(
        "/api/v1/edit/syncs/leads_to_hubspot", json={"values": alerts, "base": state["base"]}
    )
    assert used.status_code == 200, used.text
    try:
        page = c.get("/edit/channels/team_slack/delete")
        assert "sync leads_to_hubspot" in page.text
        assert c.delete("/api/v1/edit/channels/team_slack").status_code == 422
        assert channel.exists()
    finally:
        state = _state(env, c, "syncs/leads_to_hubspot")
        back = {"values": {"alerts": ""}, "base": state["base"]}
        assert c.put("/api/v1/edit/syncs/leads_to_hubspot", json=back).status_code == 200
        sync_file = env.root / "syncs" / "leads_to_hubspot.yml"
        assert sync_file.read_text(encoding="utf-8") == sync_text
    gone = c.delete("/api/v1/edit/channels/team_slack")
    assert gone.status_code == 200, gone.text
    assert not channel.exists()


def test_editing_a_models_sql_commits_the_sql_file_alone(env: EditEnv) -> None:
    c = env.client(Role.EDITOR)
    state = _state(env, c, "models/leads")
    assert state["sql_file"] == "models/leads.sql" and "FROM leads" in str(state["sql"])
    answer = c.put(
        "/api/v1/edit/models/leads",
        json={
            "values": {"source": "warehouse", "primary_key": "id"},
            "base": state["base"],
            "sql": "SELECT id, email, first_name FROM leads WHERE id < 3",
            "sql_base": state["sql_base"],
        },
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["message"] == "Edit model leads: sql"
    assert env.git("show", "--name-only", "--format=", "HEAD").split() == ["models/leads.sql"]
    assert (env.root / "models" / "leads.yml").read_text(encoding="utf-8") == (
        "source: warehouse\nprimary_key: [id]\n"
    )
    columns = c.get("/api/v1/edit/models/leads/columns").json()
    assert [col["name"] for col in columns["columns"]] == ["id", "email", "first_name"]


def test_sync_and_model_pages_link_to_their_editor_for_editors_only(env: EditEnv) -> None:
    editor, viewer = env.client(Role.EDITOR), env.client(Role.VIEWER)
    page = editor.get("/syncs/leads_to_hubspot")
    assert page.status_code == 200 and 'href="/edit/syncs/leads_to_hubspot"' in page.text
    assert 'href="/edit/syncs/' not in viewer.get("/syncs/leads_to_hubspot").text
    model = editor.get("/models/leads")
    assert model.status_code == 200 and 'href="/edit/models/leads"' in model.text
    assert 'href="/edit/models/' not in viewer.get("/models/leads").text


def test_a_fifo_where_a_file_would_be_is_refused_not_waited_on(env: EditEnv) -> None:
    c = env.client(Role.EDITOR)
    fifo = env.root / "syncs" / "pipe.yml"
    os.mkfifo(fifo)
    try:
        answer = c.get("/api/v1/edit/syncs/pipe")
        assert answer.status_code == 400, answer.text
        assert (
            answer.json()["error"]["message"]
            == "syncs/pipe.yml: is a named pipe (FIFO), not a file"
        )
    finally:
        fifo.unlink()


def test_a_zendesk_destination_lists_its_built_in_and_custom_fields(
    env: EditEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    token_env = f"BACKHAUL_EDIT_TEST_ZENDESK_{uuid.uuid4().hex[:8].upper()}"
    emulator = ZendeskEmulator(
        email="agent@example.com",
        api_token="zd-edit-token",
        user_fields=[{"key": "plan", "type": "dropdown", "title": "Plan"}],
    )
    monkeypatch.setenv(token_env, emulator.api_token)
    c = env.client(Role.EDITOR)
    with EmulatorServer(emulator) as server:
        made = c.put(
            "/api/v1/edit/destinations/helpdesk",
            json={
                "type": "zendesk",
                "values": {
                    "base_url": server.url,
                    "email": emulator.email,
                    "api_token": token_env,
                },
            },
        )
        assert made.status_code == 200, made.text
        fields = c.get("/api/v1/edit/destinations/helpdesk/fields?object=users").json()["fields"]
        wrong = c.get("/api/v1/edit/destinations/helpdesk/fields?object=macros").json()
    by_name = {f["name"]: f for f in fields}
    assert by_name["user_fields.plan"] == {
        "name": "user_fields.plan",
        "type": "text",
        "label": "Plan",
        "required": False,
        "unique": False,
        "read_only": False,
    }
    assert by_name["name"]["required"] and by_name["email"]["unique"]
    assert wrong["fields"] is None and "no object `macros`" in wrong["message"]
    assert emulator.api_token not in (env.root / "destinations" / "helpdesk.yml").read_text(
        encoding="utf-8"
    )
    assert c.delete("/api/v1/edit/destinations/helpdesk").status_code == 200
