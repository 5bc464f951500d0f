"""Priority lists saved from the builder: a file in ``priority_lists/``, a commit by the
signed-in user, hand edits kept, and only editors may save."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import closing

import httpx
import pytest
from tests.audiences.builder_env import BuilderEnv
from tests.audiences.builder_env import builder_env
from tests.audiences.builder_env import git

from backhaul.web.auth import Role

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BuilderEnv]:
    with builder_env(tmp_path_factory.mktemp("priority")) as found:
        yield found


@pytest.fixture(scope="module")
def editor(env: BuilderEnv) -> Iterator[httpx.Client]:
    with closing(env.client(Role.EDITOR)) as client:
        yield client


def _listed(client: httpx.Client) -> dict[str, dict[str, object]]:
    answer = client.get("/api/v1/priority-lists")
    assert answer.status_code == 200, answer.text
    return {p["name"]: p for p in answer.json()["priority_lists"]}


def _when_listed(client: httpx.Client, name: str) -> dict[str, object]:
    """The list once the app has seen its file (it looks for changed files every few
    seconds)."""
    for _ in range(100):
        found = _listed(client).get(name)
        if found is not None:
            return found
        time.sleep(0.1)
    raise AssertionError(f"the app never listed `{name}`")


def test_an_editor_saves_a_priority_list_as_a_commit_and_it_becomes_a_model(
    env: BuilderEnv, editor: httpx.Client
) -> None:
    answer = editor.put(
        "/api/v1/priority-lists/offers", json={"audiences": ["pricing_viewers", "loyal"]}
    )
    assert answer.status_code == 200, answer.text
    assert (env.root / "priority_lists/offers.yml").read_text(encoding="utf-8") == (
        "audiences:\n  - pricing_viewers\n  - loyal\n"
    )
    author = "editor_user <editor_user@users.backhaul.invalid>"
    assert env.log()[0] == f"{author}|Add priority list offers: pricing_viewers > loyal"
    listed = _listed(editor)["offers"]
    assert listed["schema"] == "people" and listed["audiences"] == ["pricing_viewers", "loyal"]
    assert editor.get("/api/v1/models/offers").status_code == 200
    # The same counts as the builder's priority panel.
    preview = editor.post(
        "/api/v1/audiences/preview",
        json={
            "name": "loyal",
            "schema": "people",
            "audience": {"conditions": []},
            "priority": ["pricing_viewers", "loyal"],
            "sample": False,
            "tests": False,
        },
    ).json()
    assert [n for n, _ in preview["priority"]] == ["pricing_viewers", "loyal"]
    # Saving as new again is a conflict, not an overwrite.
    again = editor.put("/api/v1/priority-lists/offers", json={"audiences": ["loyal"]})
    assert again.status_code == 409, again.text


def test_a_hand_edited_list_keeps_its_comments_and_keys_when_reordered(
    env: BuilderEnv, editor: httpx.Client
) -> None:
    path = env.root / "priority_lists/handmade.yml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(
        "# Campaign order agreed with marketing\ndescription: Spring offers\n"
        "audiences: [loyal, pricing_viewers]  # loyal first\n",
        encoding="utf-8",
    )
    git(env.root, "add", "priority_lists/handmade.yml")
    git(env.root, "commit", "-qm", "Spring offers, by hand")
    base = _when_listed(editor, "handmade")["base"]
    answer = editor.put(
        "/api/v1/priority-lists/handmade",
        json={"audiences": ["pricing_viewers", "loyal"], "base": base},
    )
    assert answer.status_code == 200, answer.text
    assert path.read_text(encoding="utf-8") == (
        "# Campaign order agreed with marketing\ndescription: Spring offers\n"
        "audiences: [pricing_viewers, loyal]  # loyal first\n"
    )
    # Unchanged: nothing written, nothing committed.
    head = env.log()[0]
    same = editor.put(
        "/api/v1/priority-lists/handmade",
        json={"audiences": ["pricing_viewers", "loyal"], "base": answer.json()["base"]},
    )
    assert same.status_code == 200 and same.json()["changed"] is False
    assert env.log()[0] == head


def test_an_invalid_list_is_refused_with_the_cli_message_and_nothing_is_written(
    env: BuilderEnv, editor: httpx.Client
) -> None:
    answer = editor.put("/api/v1/priority-lists/broken", json={"audiences": ["loyal", "loyall"]})
    assert answer.status_code == 422, answer.text
    problems = answer.json()["error"]["problems"]
    assert any(
        p["key"] == "audiences.1" and "unknown audience `loyall`" in p["message"] for p in problems
    ), problems
    assert not (env.root / "priority_lists/broken.yml").exists()


def test_viewers_cannot_save_a_priority_list(env: BuilderEnv) -> None:
    client = env.client(Role.VIEWER)
    try:
        answer = client.put("/api/v1/priority-lists/mine", json={"audiences": ["loyal"]})
        assert answer.status_code == 403, answer.text
        assert "mine" not in _listed(client)
    finally:
        client.close()
    assert not (env.root / "priority_lists/mine.yml").exists()
