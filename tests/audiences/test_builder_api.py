"""The audience builder's API on a real project in Git: explore, suggest, save (a commit by
the signed-in user), and who may do what."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
from tests.audiences.builder_env import HAND_WRITTEN
from tests.audiences.builder_env import BuilderEnv
from tests.audiences.builder_env import builder_env

from backhaul.web.auth import Role

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BuilderEnv]:
    with builder_env(tmp_path_factory.mktemp("builder")) as found:
        yield found


@pytest.fixture(scope="module")
def editor(env: BuilderEnv) -> Iterator[httpx.Client]:
    with closing(env.client(Role.EDITOR)) as client:
        yield client


@pytest.fixture(scope="module")
def viewer(env: BuilderEnv) -> Iterator[httpx.Client]:
    with closing(env.client(Role.VIEWER)) as client:
        yield client


def state_of(client: httpx.Client, path: str) -> dict[str, Any]:
    page = client.get(path)
    assert page.status_code == 200, page.text
    found = re.search(r'id="builder-state">(.*?)</script>', page.text, re.S)
    assert found
    state: dict[str, Any] = json.loads(found.group(1))
    return state


def count(env: BuilderEnv, sql: str) -> int:
    with duckdb.connect(str(env.root / "wh.duckdb"), read_only=True) as con:
        row = con.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


def test_the_builder_opens_a_hand_written_file_as_written(
    env: BuilderEnv, editor: httpx.Client
) -> None:
    state = state_of(editor, "/audiences/loyal")
    assert state["audience"]["conditions"] == [
        {"column": "country", "op": "in", "value": ["FR", "DE"]},
        {"column": "score", "op": "gte", "value": 1.0},
        {"column": "born", "op": "before", "value": "2000-01-01"},
    ]
    assert state["can_save"] and state["has_tests"] and state["git"]
    assert {c["name"]: c["type"] for c in state["catalog"]["parent"]["columns"]}["born"] == "date"


def test_an_unchanged_save_rewrites_nothing_and_commits_nothing(
    env: BuilderEnv, editor: httpx.Client
) -> None:
    state = state_of(editor, "/audiences/loyal")
    before = env.log()
    # The audience as the page would send it back after a trip through JSON.
    sent = json.loads(json.dumps(state["audience"]))
    answer = editor.put(
        "/api/v1/audiences/loyal",
        json={"name": "loyal", "schema": "people", "audience": sent, "base": state["base"]},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["changed"] is False
    assert (env.root / "audiences/loyal.yml").read_text(encoding="utf-8") == HAND_WRITTEN
    assert env.log() == before


def test_the_preview_size_matches_hand_written_sql(env: BuilderEnv, editor: httpx.Client) -> None:
    audience = {
        "conditions": [
            {"column": "country", "op": "in", "value": ["FR", "DE"]},
            {
                "any": [
                    {
                        "related": "accounts",
                        "where": [{"column": "plan", "op": "equals", "value": "enterprise"}],
                    },
                    {"event": "visits", "at_least": 2, "within_last_days": 30},
                ]
            },
        ]
    }
    answer = editor.post(
        "/api/v1/audiences/preview",
        json={"name": "draft", "schema": "people", "audience": audience, "breakdown": "country"},
    )
    assert answer.status_code == 200, answer.text
    out = answer.json()
    assert out["errors"] == []
    expected = count(
        env,
        """
        SELECT count(*) FROM people p
        WHERE p.country IN ('FR', 'DE') AND (
          EXISTS (SELECT 1 FROM accounts a WHERE a.id = p.account_id AND a.plan = 'enterprise')
          OR (SELECT count(*) FROM visits v WHERE v.person_id = p.id
              AND v.at >= now()::TIMESTAMP - INTERVAL 30 DAY AND v.at <= now()::TIMESTAMP) >= 2)
        """,
    )
    assert out["size"]["members"] == expected > 0
    assert out["groups"]["conditions.0"] == count(
        env, "SELECT count(*) FROM people WHERE country IN ('FR', 'DE')"
    )
    assert out["groups"]["conditions.1.any.0"] == count(
        env,
        "SELECT count(*) FROM people p JOIN accounts a ON a.id = p.account_id "
        "WHERE a.plan = 'enterprise'",
    )
    assert set(out["groups"]) == {
        "conditions.0",
        "conditions.1",
        "conditions.1.any.0",
        "conditions.1.any.1",
    }
    assert len(out["sample"]["rows"]) == 25
    names = out["sample"]["columns"].index("name")
    assert {row[names] for row in out["sample"]["rows"]} == {"***"}
    assert sum(n for _, n in out["breakdown"]["values"]) == expected
    assert out["breakdown"]["svg"].startswith("<svg")
    assert "SELECT" in out["sql"]


def test_overlap_priority_and_tests_in_the_preview(env: BuilderEnv, viewer: httpx.Client) -> None:
    state = state_of(viewer, "/audiences/loyal")
    answer = viewer.post(
        "/api/v1/audiences/preview",
        json={
            "name": "loyal",
            "schema": "people",
            "audience": state["audience"],
            "overlap": "pricing_viewers",
            "priority": ["pricing_viewers", "loyal"],
        },
    )
    out = answer.json()
    assert answer.status_code == 200, out
    both = out["overlap"]
    assert both["first"] == out["size"]["matched"]
    assert both["both"] + both["only_first"] == both["first"]
    first, second = out["priority"]
    assert first == ["pricing_viewers", both["second"]]
    assert second == ["loyal", both["only_first"]]
    assert [(t["case"], t["passed"]) for t in out["tests"]] == [
        ("a French high scorer is in", True)
    ]


def test_problems_come_back_beside_their_keys(editor: httpx.Client) -> None:
    audience = {"conditions": [{"column": "age", "op": "contains", "value": "x"}]}
    out = editor.post(
        "/api/v1/audiences/preview",
        json={"name": "draft", "schema": "people", "audience": audience},
    ).json()
    assert [e["key"] for e in out["errors"]] == ["conditions.0.op"]
    assert "does not apply to the number column `age`" in out["errors"][0]["message"]


def test_an_editor_saves_a_new_audience_as_a_commit_of_their_own(
    env: BuilderEnv, editor: httpx.Client
) -> None:
    audience = {
        "description": "Enterprise people",
        "conditions": [
            {
                "related": "accounts",
                "where": [{"column": "plan", "op": "equals", "value": "enterprise"}],
            },
            {"column": "born", "op": "after", "value": {"$date": "1980-01-01"}},
        ],
        "splits": {
            "holdout": 10,
            "groups": [{"name": "a", "percent": 45}, {"name": "b", "percent": 45}],
        },
    }
    answer = editor.put(
        "/api/v1/audiences/enterprise",
        json={"name": "enterprise", "schema": "people", "audience": audience, "base": ""},
    )
    assert answer.status_code == 200, answer.text
    author = "editor_user <editor_user@users.backhaul.invalid>"
    assert env.log()[0] == f"{author}|Create audience enterprise"
    text = (env.root / "audiences/enterprise.yml").read_text(encoding="utf-8")
    assert text == (
        "schema: people\n"
        "description: Enterprise people\n"
        "conditions:\n"
        "  - {related: accounts, where: [{column: plan, op: equals, value: enterprise}]}\n"
        "  - {column: born, op: after, value: 1980-01-01}\n"
        "splits:\n"
        "  holdout: 10\n"
        "  groups:\n"
        "    - {name: a, percent: 45}\n"
        "    - {name: b, percent: 45}\n"
    )
    # The app reloaded the project: the audience is a model now.
    assert editor.get("/api/v1/models/enterprise").status_code == 200
    assert "enterprise" in editor.get("/models/people").text
    # Saving again from the same base is a conflict: the file is no longer new.
    again = editor.put(
        "/api/v1/audiences/enterprise",
        json={"name": "enterprise", "schema": "people", "audience": audience, "base": ""},
    )
    assert again.status_code == 409, again.text


def test_viewers_and_operators_cannot_save(env: BuilderEnv) -> None:
    state_before = (env.root / "audiences/loyal.yml").read_text(encoding="utf-8")
    for role in (Role.VIEWER, Role.OPERATOR):
        client = env.client(role)
        try:
            state = state_of(client, "/audiences/loyal")
            assert state["can_save"] is False
            answer = client.put(
                "/api/v1/audiences/loyal",
                json={
                    "name": "loyal",
                    "schema": "people",
                    "audience": {"conditions": []},
                    "base": state["base"],
                },
            )
            assert answer.status_code == 403, answer.text
        finally:
            client.close()
    assert (env.root / "audiences/loyal.yml").read_text(encoding="utf-8") == state_before


def test_only_editors_may_run_their_own_raw_sql(viewer: httpx.Client, editor: httpx.Client) -> None:
    body = {"name": "draft", "schema": "people", "audience": {"conditions": [{"sql": "age > 30"}]}}
    refused = viewer.post("/api/v1/audiences/preview", json=body)
    assert refused.status_code == 400
    assert "editor role" in refused.json()["error"]["message"]
    assert editor.post("/api/v1/audiences/preview", json=body).status_code == 200


def test_invalid_saves_are_refused_with_the_cli_messages(
    env: BuilderEnv, editor: httpx.Client
) -> None:
    before = env.log()
    answer = editor.put(
        "/api/v1/audiences/broken",
        json={
            "name": "broken",
            "schema": "people",
            "base": "",
            "audience": {"conditions": [{"column": "nope", "op": "is_null"}]},
        },
    )
    assert answer.status_code == 422
    problems = answer.json()["error"]["problems"]
    assert problems[0]["key"] == "conditions.0.column"
    assert "`nope` is not a column of the parent model" in problems[0]["message"]
    assert not (env.root / "audiences/broken.yml").exists()
    assert env.log() == before


def test_value_suggestions_skip_personal_columns(editor: httpx.Client) -> None:
    values = editor.get(
        "/api/v1/audience-schemas/people/values", params={"column": "country"}
    ).json()["values"]
    assert values == ["DE", "ES", "FR", "GB", "IT", "US"]
    plans = editor.get(
        "/api/v1/audience-schemas/people/values", params={"table": "accounts", "column": "plan"}
    ).json()["values"]
    assert plans == ["enterprise", "free", "pro"]
    personal = editor.get(
        "/api/v1/audience-schemas/people/values", params={"column": "name"}
    ).json()
    assert personal == {"values": None}


def test_the_model_pages_show_the_audiences(editor: httpx.Client) -> None:
    parent = editor.get("/models/people").text
    assert 'id="model-audiences"' in parent and 'href="/audiences/loyal"' in parent
    assert 'href="/audiences/new?schema=people"' in parent
    assert 'id="open-builder" href="/audiences/loyal"' in editor.get("/models/loyal").text


def test_a_file_edited_by_hand_after_start_opens_as_it_is_now(
    env: BuilderEnv, editor: httpx.Client, tmp_path: Path
) -> None:
    path = env.root / "audiences/pricing_viewers.yml"
    original = path.read_text(encoding="utf-8")
    path.write_text(original + "description: edited by hand\n", encoding="utf-8")
    try:
        state = state_of(editor, "/audiences/pricing_viewers")
        assert state["audience"]["description"] == "edited by hand"
        # Not committed: a save must not commit the hand edit under the editor's name.
        answer = editor.put(
            "/api/v1/audiences/pricing_viewers",
            json={
                "name": "pricing_viewers",
                "schema": "people",
                "audience": state["audience"] | {"description": "x"},
                "base": state["base"],
            },
        )
        assert answer.status_code == 409
        assert "not committed" in answer.json()["error"]["message"]
    finally:
        path.write_text(original, encoding="utf-8")
