"""Approval in the web app, on a real project in Git served on loopback: Run now meets the
gate; an editor's save becomes a draft branch and the checked-out files do not change; the
approvals page and API show drafts and unapproved commits with their review; only admins
approve (merging the draft) or reject; an admin's own save on an approved commit is
approved by that save."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.audiences.builder_env import BuilderEnv
from tests.audiences.builder_env import git
from tests.audiences.builder_env import people_project
from tests.audiences.builder_env import served
from tests.audiences.projects import write

from backhaul.gitsave import text_hash
from backhaul.web.auth import Role

pytestmark = pytest.mark.integration

DRAFT = "backhaul/draft-editor-user-audiences-enterprise"
ENTERPRISE = {
    "description": "Enterprise people",
    "conditions": [
        {
            "related": "accounts",
            "where": [{"column": "plan", "op": "equals", "value": "enterprise"}],
        }
    ],
}


@pytest.fixture
def env(tmp_path: Path) -> Iterator[BuilderEnv]:
    root = people_project(tmp_path)
    write(root, "backhaul.yml", "name: audiences\napproval:\n  required: true\n  branch: main\n")
    write(root, "destinations/db.yml", "type: sqlite\npath: dest.sqlite\ncreate_table: true\n")
    write(
        root,
        "syncs/s.yml",
        "model: loyal\ndestination: db\nobject: people\n"
        "mappings:\n  - {column: id, field: id}\n  - {column: name, field: name}\n",
    )
    with served(root) as found:
        yield found


@pytest.fixture
def clients(env: BuilderEnv) -> Iterator[dict[Role, httpx.Client]]:
    found = {role: env.client(role) for role in Role}
    try:
        yield found
    finally:
        for client in found.values():
            client.close()


def head(env: BuilderEnv) -> str:
    return git(env.root, "rev-parse", "HEAD").strip()


def run_now(client: httpx.Client) -> dict[str, Any]:
    answer = client.post("/api/v1/syncs/s/runs")
    assert answer.status_code == 202, answer.text
    run_id = answer.json()["run_id"]
    end = time.monotonic() + 300  # a bounded wait for the run's thread, never asserted on
    while True:
        found: dict[str, Any] = client.get(f"/api/v1/runs/{run_id}").json()
        if found["status"] not in ("running", "queued"):
            return found
        if time.monotonic() > end:
            raise AssertionError(f"run {run_id} did not finish: {found}")
        time.sleep(0.1)


def succeeded(client: httpx.Client) -> None:
    found = run_now(client)
    assert found["status"] == "succeeded", found


def save(client: httpx.Client, name: str, base: str = "") -> httpx.Response:
    return client.put(
        f"/api/v1/audiences/{name}",
        json={"name": name, "schema": "people", "audience": ENTERPRISE, "base": base},
    )


def test_run_now_is_refused_until_an_admin_approves(
    env: BuilderEnv, clients: dict[Role, httpx.Client]
) -> None:
    first = head(env)
    refused = run_now(clients[Role.OPERATOR])
    assert refused["status"] == "failed", refused
    assert f"commit {first[:10]} is not approved to run" in refused["error"], refused

    for role in (Role.VIEWER, Role.OPERATOR, Role.EDITOR):
        answer = clients[role].post(f"/api/v1/approvals/commits/{first}")
        assert answer.status_code == 403, (role, answer.text)
    approved = clients[Role.ADMIN].post(f"/api/v1/approvals/commits/{first}")
    assert approved.status_code == 200, approved.text
    assert approved.json()["approved_by"] == "admin_user"
    succeeded(clients[Role.OPERATOR])

    # A direct `git commit` on top of the approved commit waits for its own approval.
    write(env.root, "syncs/s.yml", (env.root / "syncs/s.yml").read_text() + "batch_size: 7\n")
    git(env.root, "commit", "-qam", "Smaller batches")
    second = head(env)
    refused = run_now(clients[Role.OPERATOR])
    assert refused["status"] == "failed" and second[:10] in refused["error"], refused
    listed = clients[Role.EDITOR].get("/api/v1/approvals", params={"review": "true"}).json()
    assert listed["required"] is True and listed["approved"] is False
    assert [c["subject"] for c in listed["commits"]] == ["Smaller batches"]
    assert listed["approved_base"] == first
    assert listed["review"]["error"] is None, listed["review"]
    assert any(s["sync"] == "s" for s in listed["review"]["syncs"])
    assert clients[Role.ADMIN].post(f"/api/v1/approvals/commits/{second}").status_code == 200
    succeeded(clients[Role.OPERATOR])


def test_an_editors_save_is_a_draft_until_an_admin_approves_it(
    env: BuilderEnv, clients: dict[Role, httpx.Client]
) -> None:
    first = head(env)
    assert clients[Role.ADMIN].post(f"/api/v1/approvals/commits/{first}").status_code == 200

    answer = save(clients[Role.EDITOR], "enterprise")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["draft"] == DRAFT and body["changed"] is True
    assert "/approvals" in body["warning"]
    # The checked-out files and HEAD did not move: what runs is still the approved commit.
    assert head(env) == first
    assert not (env.root / "audiences/enterprise.yml").exists()
    assert git(env.root, "status", "--porcelain").strip() == ""
    tip = git(env.root, "rev-parse", DRAFT).strip()
    assert git(env.root, "log", "-1", "--format=%an|%s", DRAFT).strip() == (
        "editor_user|Create audience enterprise"
    )
    succeeded(clients[Role.OPERATOR])

    # A second save from the text the editor got back lands on the same draft.
    again = clients[Role.EDITOR].put(
        "/api/v1/audiences/enterprise",
        json={
            "name": "enterprise",
            "schema": "people",
            "audience": {**ENTERPRISE, "description": "Big accounts"},
            "base": body["base"],
        },
    )
    assert again.status_code == 200, again.text
    tip = git(env.root, "rev-parse", DRAFT).strip()
    assert git(env.root, "rev-list", "--count", f"{first}..{tip}").strip() == "2"

    listed = clients[Role.EDITOR].get("/api/v1/approvals", params={"review": "true"}).json()
    (draft,) = listed["drafts"]
    assert draft["branch"] == DRAFT and draft["files"] == ["audiences/enterprise.yml"]
    assert draft["base"] == first and draft["commits"] == 2
    assert draft["review"]["error"] is None
    assert "enterprise" in draft["review"]["text"]

    page = clients[Role.ADMIN].get("/approvals")
    assert page.status_code == 200 and DRAFT in page.text and "Approve and merge" in page.text
    assert clients[Role.VIEWER].get("/approvals").status_code == 403
    editor_page = clients[Role.EDITOR].get("/approvals").text
    assert DRAFT in editor_page and "Approve and merge" not in editor_page

    url = f"/api/v1/approvals/drafts/{DRAFT}/approve"
    for role in (Role.VIEWER, Role.OPERATOR, Role.EDITOR):
        assert clients[role].post(url, json={"tip": tip}).status_code == 403, role
        assert clients[role].post(f"/api/v1/approvals/drafts/{DRAFT}/reject").status_code == 403
    assert clients[Role.ADMIN].post(url, json={"tip": "0" * 40}).status_code == 409  # moved

    merged = clients[Role.ADMIN].post(url, json={"tip": tip})
    assert merged.status_code == 200, merged.text
    assert merged.json()["commit"] == tip == head(env)  # a fast-forward
    assert merged.json()["approval"]["draft"] == DRAFT
    assert "description: Big accounts" in (env.root / "audiences/enterprise.yml").read_text()
    assert git(env.root, "branch", "--list", DRAFT).strip() == ""
    assert clients[Role.VIEWER].get("/api/v1/models/enterprise").status_code == 200  # reloaded
    succeeded(clients[Role.OPERATOR])

    audit = clients[Role.ADMIN].get("/api/v1/audit").json()
    actions = [e["action"] for e in audit]
    assert "approve_draft" in actions and "approve_commit" in actions


def test_a_rejected_draft_is_deleted_and_an_admins_save_approves_itself(
    env: BuilderEnv, clients: dict[Role, httpx.Client]
) -> None:
    first = head(env)
    assert clients[Role.ADMIN].post(f"/api/v1/approvals/commits/{first}").status_code == 200
    assert save(clients[Role.EDITOR], "enterprise").status_code == 200
    rejected = clients[Role.ADMIN].post(f"/api/v1/approvals/drafts/{DRAFT}/reject")
    assert rejected.status_code == 204, rejected.text
    assert git(env.root, "branch", "--list", DRAFT).strip() == ""
    assert clients[Role.ADMIN].post(f"/api/v1/approvals/drafts/{DRAFT}/reject").status_code == 400

    # An admin saves on the checked-out branch; the commit under it was approved, so the
    # save approves its own commit and the project runs.
    answer = save(clients[Role.ADMIN], "enterprise")
    assert answer.status_code == 200, answer.text
    assert answer.json()["draft"] is None and answer.json()["commit"] == head(env)
    succeeded(clients[Role.OPERATOR])
    recent = clients[Role.VIEWER].get("/api/v1/approvals").json()["recent"]
    assert recent[0]["via"] == "save" and recent[0]["commit"] == head(env)

    # On an unapproved commit, an admin's save does not approve what it has not seen.
    write(env.root, "syncs/s.yml", (env.root / "syncs/s.yml").read_text() + "batch_size: 7\n")
    git(env.root, "commit", "-qam", "Smaller batches")
    audience = {**ENTERPRISE, "description": "Big accounts"}
    base = answer.json()["base"]
    answer = clients[Role.ADMIN].put(
        "/api/v1/audiences/enterprise",
        json={"name": "enterprise", "schema": "people", "audience": audience, "base": base},
    )
    assert answer.status_code == 200, answer.text
    assert run_now(clients[Role.OPERATOR])["status"] == "failed"


def test_a_draft_merged_onto_unapproved_commits_is_not_approved_by_the_merge(
    env: BuilderEnv, clients: dict[Role, httpx.Client]
) -> None:
    first = head(env)
    assert clients[Role.ADMIN].post(f"/api/v1/approvals/commits/{first}").status_code == 200
    assert save(clients[Role.EDITOR], "enterprise").status_code == 200
    write(env.root, "syncs/s.yml", (env.root / "syncs/s.yml").read_text() + "batch_size: 7\n")
    git(env.root, "commit", "-qam", "Smaller batches, not reviewed")
    unreviewed = head(env)

    merged = clients[Role.ADMIN].post(f"/api/v1/approvals/drafts/{DRAFT}/approve")
    assert merged.status_code == 200, merged.text
    body = merged.json()
    assert body["approval"] is None  # the admin reviewed the draft, not "Smaller batches"
    assert git(env.root, "rev-parse", "HEAD^1").strip() == unreviewed  # a merge commit
    assert git(env.root, "log", "-1", "--format=%an", "HEAD").strip() == "admin_user"
    assert (env.root / "audiences/enterprise.yml").exists()
    refused = run_now(clients[Role.OPERATOR])
    assert refused["status"] == "failed" and body["commit"][:10] in refused["error"], refused

    listed = clients[Role.ADMIN].get("/api/v1/approvals").json()
    assert listed["approved_base"] == first and len(listed["commits"]) == 3
    assert (
        clients[Role.ADMIN].post(f"/api/v1/approvals/commits/{body['commit']}").status_code == 200
    )
    succeeded(clients[Role.OPERATOR])


def test_an_editors_edit_of_a_sync_in_the_editor_is_a_draft_too(
    env: BuilderEnv, clients: dict[Role, httpx.Client]
) -> None:
    first = head(env)
    assert clients[Role.ADMIN].post(f"/api/v1/approvals/commits/{first}").status_code == 200
    editor = clients[Role.EDITOR]
    opened = editor.get("/api/v1/edit/syncs/s")
    assert opened.status_code == 200, opened.text
    answer = editor.put(
        "/api/v1/edit/syncs/s", json={"values": {"mode": "mirror"}, "base": opened.json()["base"]}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    draft = "backhaul/draft-editor-user-syncs-s"
    assert body["draft"] == draft and body["changed"] is True and "/approvals" in body["warning"]
    # What runs is unchanged: the checked-out file and HEAD are the approved ones.
    assert head(env) == first
    assert "mirror" not in (env.root / "syncs/s.yml").read_text(encoding="utf-8")
    assert "mode: mirror" in git(env.root, "show", f"{draft}:syncs/s.yml")
    assert git(env.root, "log", "-1", "--format=%an|%s", draft).strip() == (
        "editor_user|Edit sync s: mode set to mirror"
    )
    succeeded(clients[Role.OPERATOR])
    tip = git(env.root, "rev-parse", draft).strip()
    merged = clients[Role.ADMIN].post(
        f"/api/v1/approvals/drafts/{draft}/approve", json={"tip": tip}
    )
    assert merged.status_code == 200, merged.text
    assert "mode: mirror" in (env.root / "syncs/s.yml").read_text(encoding="utf-8")


def page_state(client: httpx.Client, path: str, script: str) -> tuple[str, dict[str, Any]]:
    """A page and the state it embeds as JSON (``editor-state``, ``builder-state``)."""
    page = client.get(path)
    assert page.status_code == 200, (path, page.status_code, page.text)
    found = re.search(rf'id="{script}">(.*?)</script>', page.text, re.S)
    assert found, page.text
    state: dict[str, Any] = json.loads(found.group(1))
    return page.text, state


def test_an_editor_reopening_a_sync_sees_their_draft_and_saves_on_it_again(
    env: BuilderEnv, clients: dict[Role, httpx.Client]
) -> None:
    first = head(env)
    assert clients[Role.ADMIN].post(f"/api/v1/approvals/commits/{first}").status_code == 200
    editor = clients[Role.EDITOR]
    draft = "backhaul/draft-editor-user-syncs-s"
    approved_text = (env.root / "syncs/s.yml").read_text(encoding="utf-8")
    _, opened = page_state(editor, "/edit/syncs/s", "editor-state")
    assert opened["draft"] is None and opened["draft_note"] is None
    answer = editor.put(
        "/api/v1/edit/syncs/s", json={"values": {"mode": "mirror"}, "base": opened["base"]}
    )
    assert answer.status_code == 200 and answer.json()["draft"] == draft, answer.text

    # The editor reloads the page: it opens their draft, says so, and saves onto it.
    page, state = page_state(editor, "/edit/syncs/s", "editor-state")
    draft_text = git(env.root, "show", f"{draft}:syncs/s.yml")
    assert state["draft"] == draft and state["text"] == draft_text
    assert "mode: mirror" in state["text"] and state["base"] == text_hash(draft_text)
    assert state["base"] == answer.json()["files"][0]["base"]
    assert 'id="draft-notice"' in page and f"your pending draft {draft}" in page
    assert "not approved yet" in state["draft_note"]
    assert "mode: mirror" in page  # the file as saved, in the draft
    assert editor.get("/api/v1/edit/syncs/s").json()["base"] == state["base"]

    # Everyone else opens the approved file; the checked-out file did not change.
    admin_state = clients[Role.ADMIN].get("/api/v1/edit/syncs/s").json()
    assert admin_state["draft"] is None and admin_state["text"] == approved_text
    admin_page = clients[Role.ADMIN].get("/edit/syncs/s").text
    assert 'id="draft-notice"' not in admin_page

    again = editor.put(
        "/api/v1/edit/syncs/s", json={"values": {"batch_size": 7}, "base": state["base"]}
    )
    assert again.status_code == 200, again.text
    body = again.json()
    assert body["draft"] == draft and body["changed"] is True
    assert body["message"] == "Edit sync s: batch_size set to 7"
    tip = git(env.root, "rev-parse", draft).strip()
    assert body["commit"] == tip
    assert git(env.root, "rev-list", "--count", f"{first}..{tip}").strip() == "2"
    both = git(env.root, "show", f"{draft}:syncs/s.yml")
    assert "mode: mirror" in both and "batch_size: 7" in both
    assert head(env) == first and (env.root / "syncs/s.yml").read_text() == approved_text

    merged = clients[Role.ADMIN].post(
        f"/api/v1/approvals/drafts/{draft}/approve", json={"tip": tip}
    )
    assert merged.status_code == 200, merged.text
    assert merged.json()["commit"] == tip == head(env)
    final = (env.root / "syncs/s.yml").read_text(encoding="utf-8")
    assert final == both
    # Approved: no draft is left, and the editor opens the approved file again.
    _, after = page_state(editor, "/edit/syncs/s", "editor-state")
    assert after["draft"] is None and after["text"] == final


def test_an_editor_reopening_an_audience_sees_their_draft_and_saves_on_it_again(
    env: BuilderEnv, clients: dict[Role, httpx.Client]
) -> None:
    first = head(env)
    assert clients[Role.ADMIN].post(f"/api/v1/approvals/commits/{first}").status_code == 200
    editor = clients[Role.EDITOR]
    assert save(editor, "enterprise").status_code == 200

    # The audience is only in the editor's draft: the builder opens it from there.
    page, state = page_state(editor, "/audiences/enterprise", "builder-state")
    draft_text = git(env.root, "show", f"{DRAFT}:audiences/enterprise.yml")
    assert state["draft"] == DRAFT and state["is_new"] is False
    assert state["base"] == text_hash(draft_text)
    assert state["audience"]["description"] == "Enterprise people"
    assert 'id="draft-notice"' in page and f"your pending draft {DRAFT}" in page
    # Other users see the approved files, where it does not exist yet.
    assert clients[Role.ADMIN].get("/audiences/enterprise").status_code == 404
    assert clients[Role.VIEWER].get("/audiences/enterprise").status_code == 404

    again = clients[Role.EDITOR].put(
        "/api/v1/audiences/enterprise",
        json={
            "name": "enterprise",
            "schema": "people",
            "audience": {**state["audience"], "description": "Big accounts"},
            "base": state["base"],
        },
    )
    assert again.status_code == 200, again.text
    assert again.json()["draft"] == DRAFT and again.json()["changed"] is True
    tip = git(env.root, "rev-parse", DRAFT).strip()
    assert again.json()["commit"] == tip
    assert git(env.root, "rev-list", "--count", f"{first}..{tip}").strip() == "2"
    assert git(env.root, "log", "-1", "--format=%s", DRAFT).startswith(
        "Edit audience enterprise: description"
    )
    _, reopened = page_state(editor, "/audiences/enterprise", "builder-state")
    assert reopened["audience"]["description"] == "Big accounts"
    assert reopened["base"] == again.json()["base"]

    merged = clients[Role.ADMIN].post(
        f"/api/v1/approvals/drafts/{DRAFT}/approve", json={"tip": tip}
    )
    assert merged.status_code == 200, merged.text
    final = (env.root / "audiences/enterprise.yml").read_text(encoding="utf-8")
    assert final == git(env.root, "show", f"{tip}:audiences/enterprise.yml")
    assert "description: Big accounts" in final and "enterprise" in final
    _, after = page_state(editor, "/audiences/enterprise", "builder-state")
    assert after["draft"] is None and after["base"] == text_hash(final)


def test_an_editor_reordering_a_priority_list_saves_again_on_their_draft(
    env: BuilderEnv, clients: dict[Role, httpx.Client]
) -> None:
    first = head(env)
    admin, editor = clients[Role.ADMIN], clients[Role.EDITOR]
    assert admin.post(f"/api/v1/approvals/commits/{first}").status_code == 200
    assert save(admin, "enterprise").status_code == 200  # an admin's save: on main
    made = admin.put("/api/v1/priority-lists/offers", json={"audiences": ["loyal", "enterprise"]})
    assert made.status_code == 200 and made.json()["draft"] is None, made.text
    approved_text = (env.root / "priority_lists/offers.yml").read_text(encoding="utf-8")

    moved = editor.put(
        "/api/v1/priority-lists/offers",
        json={"audiences": ["enterprise", "loyal"], "base": made.json()["base"]},
    )
    draft = "backhaul/draft-editor-user-priority-lists-offers"
    assert moved.status_code == 200 and moved.json()["draft"] == draft, moved.text
    draft_base = text_hash(git(env.root, "show", f"{draft}:priority_lists/offers.yml"))

    # Reopened, the editor's list and the builder's priority panel hold the draft's base.
    (listed,) = editor.get("/api/v1/priority-lists").json()["priority_lists"]
    assert listed["base"] == draft_base == moved.json()["base"]
    _, state = page_state(editor, "/audiences/loyal", "builder-state")
    assert [p["base"] for p in state["priority_lists"]] == [draft_base]
    (theirs,) = admin.get("/api/v1/priority-lists").json()["priority_lists"]
    assert theirs["base"] == text_hash(approved_text)

    again = editor.put(
        "/api/v1/priority-lists/offers",
        json={"audiences": ["loyal", "enterprise"], "base": listed["base"]},
    )
    assert again.status_code == 200 and again.json()["draft"] == draft, again.text
    assert again.json()["changed"] is True
    tip = git(env.root, "rev-parse", draft).strip()
    assert git(env.root, "rev-list", "--count", f"{head(env)}..{tip}").strip() == "2"


def edit_row(page: str, kind: str, name: str) -> str | None:
    """The ``/edit`` table row of item ``name`` in the ``kind`` section (None: not listed)."""
    section = re.search(rf'<section class="card" id="edit-{kind}">(.*?)</section>', page, re.S)
    assert section, page
    for row in re.findall(r"<tr\b.*?</tr>", section.group(1), re.S):
        if re.search(rf"<td>(<a href=\"/edit/{kind}/{name}\">)?{name}\b", row):
            return str(row)
    return None


def sqlite_destination(client: httpx.Client, name: str) -> httpx.Response:
    return client.put(
        f"/api/v1/edit/destinations/{name}",
        json={"type": "sqlite", "values": {"path": f"{name}.sqlite", "create_table": True}},
    )


def test_the_edit_page_lists_an_editors_drafts_and_only_theirs(
    env: BuilderEnv, clients: dict[Role, httpx.Client]
) -> None:
    first = head(env)
    admin, editor = clients[Role.ADMIN], clients[Role.EDITOR]
    assert admin.post(f"/api/v1/approvals/commits/{first}").status_code == 200
    spare = sqlite_destination(admin, "spare")  # an admin's save: approved, on main
    assert spare.status_code == 200 and spare.json()["draft"] is None, spare.text
    plain = editor.get("/edit").text
    assert 'id="drafts-notice"' not in plain and "data-draft" not in plain

    # The editor creates a destination, edits the sync and deletes the spare destination:
    # three drafts, none of them in the checked-out files.
    made = sqlite_destination(editor, "archive")
    assert made.status_code == 200, made.text
    archive = "backhaul/draft-editor-user-destinations-archive"
    assert made.json()["draft"] == archive
    assert not (env.root / "destinations/archive.yml").exists()
    opened = editor.get("/api/v1/edit/syncs/s").json()
    edited = editor.put(
        "/api/v1/edit/syncs/s", json={"values": {"mode": "mirror"}, "base": opened["base"]}
    )
    assert edited.status_code == 200 and edited.json()["draft"], edited.text
    gone = editor.delete("/api/v1/edit/destinations/spare")
    assert gone.status_code == 200 and gone.json()["draft"], gone.text
    assert (env.root / "destinations/spare.yml").exists()

    page = editor.get("/edit")
    assert page.status_code == 200 and 'id="drafts-notice"' in page.text
    row = edit_row(page.text, "destinations", "archive")
    assert row is not None, page.text
    assert 'data-draft="added"' in row and ">draft</span>" in row
    assert 'href="/edit/destinations/archive"' in row and "destinations/archive.yml" in row
    assert editor.get("/edit/destinations/archive").status_code == 200  # the link opens
    changed = edit_row(page.text, "syncs", "s")
    assert changed is not None and 'data-draft="changed"' in changed
    assert "changed in your draft" in changed
    deleted = edit_row(page.text, "destinations", "spare")
    assert deleted is not None and 'data-draft="deleted"' in deleted
    assert "deleted in your draft" in deleted and 'href="/edit/destinations/spare' not in deleted
    unchanged = edit_row(page.text, "destinations", "db")
    assert unchanged is not None and "data-draft" not in unchanged

    # Others see the approved project, as before.
    theirs = admin.get("/edit").text
    assert edit_row(theirs, "destinations", "archive") is None
    assert "data-draft" not in theirs and 'id="drafts-notice"' not in theirs
    assert edit_row(theirs, "destinations", "spare") is not None

    # Approved, the destination is a plain item of the project for everyone.
    tip = git(env.root, "rev-parse", archive).strip()
    merged = admin.post(f"/api/v1/approvals/drafts/{archive}/approve", json={"tip": tip})
    assert merged.status_code == 200, merged.text
    for client in (editor, admin):
        listed = edit_row(client.get("/edit").text, "destinations", "archive")
        assert listed is not None and "data-draft" not in listed
        assert 'href="/edit/destinations/archive"' in listed
