"""The Mailchimp destination through real syncs against the Mailchimp emulator."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from backhaul.destinations.mailchimp import MailchimpConfig
from backhaul.destinations.mailchimp import MailchimpDestination
from backhaul.destinations.mailchimp import parse_object
from backhaul.destinations.mailchimp import subscriber_hash
from backhaul.plugins import Registry
from backhaul.summary import RunStatus
from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.mailchimp import MailchimpEmulator
from backhaul.testing.sandbox import Sandbox
from backhaul.testing.sandbox import describe
from conftest import Builder
from conftest import keys_of

pytestmark = pytest.mark.integration

LIST = "a1b2c3d4e5"
KEY = "0123456789abcdef0123456789abcdef-us6"
FAST_RETRY = {"max_attempts": 4, "base_delay": 0.01, "max_delay": 0.05}
MAPPINGS = [
    {"column": "email", "field": "email_address"},
    {"column": "name", "field": "merge_fields.FNAME"},
    {"column": "score", "field": "merge_fields.SCORE"},
]


@pytest.fixture
def chimp() -> MailchimpEmulator:
    return MailchimpEmulator(api_key=KEY, lists={LIST: "Customers"})


@pytest.fixture
def server(chimp: MailchimpEmulator) -> Iterator[EmulatorServer]:
    with EmulatorServer(chimp) as running:
        yield running


@pytest.fixture
def proj(project: Builder, server: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> Builder:
    monkeypatch.setenv("MAILCHIMP_API_KEY", KEY)
    project.destination(
        "mc",
        type="mailchimp",
        api_key="${env:MAILCHIMP_API_KEY}",
        base_url=server.url,
        retry=FAST_RETRY,
    )
    return project


def members_sync(project: Builder, n: int, **extra: Any) -> None:
    project.users(n)
    options: dict[str, Any] = {"object": LIST, "match": {"fields": ["email_address"]}, **extra}
    project.sync("s", destination="mc", mappings=MAPPINGS, **options)


def members(chimp: MailchimpEmulator) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = chimp.state()["lists"][LIST]["members"]
    return found


def put_member(server: EmulatorServer, email: str, **body: Any) -> None:
    answer = httpx.put(
        f"{server.url}/3.0/lists/{LIST}/members/{subscriber_hash(email)}",
        json={"email_address": email, **body},
        auth=("any", KEY),
    )
    assert answer.status_code == 200, answer.text


def test_registered_and_hashes_the_lowercased_address() -> None:
    assert Registry.discover().destination("mailchimp") is MailchimpDestination
    assert MailchimpDestination.capabilities.max_batch_size == 500
    assert MailchimpDestination.capabilities.membership
    # The reference vector: MD5 of the lower-cased address, surrounding spaces ignored.
    assert subscriber_hash("urist.mcvankab@freddiesjokes.com") == "62eeb292278cc15f5817cb78f7790b08"
    assert subscriber_hash(" Urist.McVankab@FreddiesJokes.com ") == (
        "62eeb292278cc15f5817cb78f7790b08"
    )
    assert parse_object("abc/tags/vip list") == ("abc", "vip list")
    assert parse_object("abc") == ("abc", None)


def test_data_centre_comes_from_the_key() -> None:
    config = MailchimpConfig.model_validate({"type": "mailchimp", "api_key": "k-us21"})
    assert config.root == "https://us21.api.mailchimp.com/3.0"
    oauth = {"type": "mailchimp", "oauth_token": "t", "data_center": "us3"}
    assert MailchimpConfig.model_validate(oauth).root == "https://us3.api.mailchimp.com/3.0"


def test_every_call_keeps_the_500_member_cap(proj: Builder, chimp: MailchimpEmulator) -> None:
    members_sync(proj, 1234, batch_size=500)

    run = proj.run("s")

    assert run.status is RunStatus.SUCCEEDED, run.error
    assert len(members(chimp)) == 1234
    batches = [c for c in chimp.calls if c.method == "POST" and c.path == f"/3.0/lists/{LIST}"]
    assert [len(c.json["members"]) for c in batches] == [500, 500, 234]
    assert all(c.json["update_existing"] is True for c in batches)
    assert members(chimp)["u7@example.com"]["merge_fields"] == {"FNAME": "name 7", "SCORE": 7}


def test_refused_members_are_mapped_by_email_and_only_accepted_rows_advance(
    proj: Builder, chimp: MailchimpEmulator
) -> None:
    members_sync(proj, 10)
    proj.sql("UPDATE users SET email = 'not-an-address' WHERE id = 4")
    chimp.faults.reject({"u7@example.com": "u7@example.com has signed up to a lot of lists"})

    first = proj.run("s")

    assert first.status is RunStatus.PARTIAL
    rejected = {o.key: o.error for o in proj.rows(first.run_id, status="rejected")}
    assert set(rejected) == {"4", "7"}
    assert "looks fake or invalid" in (rejected["4"] or "")
    assert "signed up to a lot of lists" in (rejected["7"] or "")
    assert len(members(chimp)) == 8 and "u7@example.com" not in members(chimp)

    chimp.faults.clear()
    second = proj.run("s")

    # Only the two refused rows are planned again: the others were acknowledged.
    assert second.counts.planned == 2
    assert keys_of(proj.rows(second.run_id, status="ok")) == {"7"}
    assert keys_of(proj.rows(second.run_id, status="rejected")) == {"4"}
    assert "u7@example.com" in members(chimp)


def test_rows_sharing_an_address_go_in_turns_and_the_last_wins(
    proj: Builder, chimp: MailchimpEmulator
) -> None:
    members_sync(proj, 4)
    proj.sql("UPDATE users SET email = 'Same@Example.com' WHERE id IN (2, 3)")

    run = proj.run("s")

    assert run.status is RunStatus.SUCCEEDED, run.error
    batches = [c for c in chimp.calls if c.method == "POST" and c.path == f"/3.0/lists/{LIST}"]
    assert [len(c.json["members"]) for c in batches] == [3, 1]
    assert members(chimp)["Same@Example.com"]["merge_fields"]["FNAME"] == "name 3"


def test_an_unsubscribed_member_is_never_resubscribed_unless_configured(
    proj: Builder, chimp: MailchimpEmulator, server: EmulatorServer
) -> None:
    put_member(server, "u1@example.com", status="unsubscribed")
    proj.users(3)
    mappings = [*MAPPINGS, {"value": "subscribed", "field": "status"}]
    sync = {"object": LIST, "match": {"fields": ["email_address"]}}
    proj.sync("s", destination="mc", mappings=mappings, **sync)

    assert proj.run("s").status is RunStatus.SUCCEEDED
    assert members(chimp)["u1@example.com"]["status"] == "unsubscribed"
    assert members(chimp)["u2@example.com"]["status"] == "subscribed"

    proj.destination(
        "mc",
        type="mailchimp",
        api_key=KEY,
        base_url=server.url,
        retry=FAST_RETRY,
        resubscribe=True,
    )
    assert proj.run("s", full_resync=True).status is RunStatus.SUCCEEDED
    assert members(chimp)["u1@example.com"]["status"] == "subscribed"


def test_new_members_take_status_if_new(
    proj: Builder, chimp: MailchimpEmulator, server: EmulatorServer
) -> None:
    put_member(server, "u1@example.com", status="subscribed")
    proj.destination(
        "mc", type="mailchimp", api_key=KEY, base_url=server.url, status_if_new="pending"
    )
    members_sync(proj, 3)

    assert proj.run("s").status is RunStatus.SUCCEEDED

    assert {e: m["status"] for e, m in members(chimp).items()} == {
        "u1@example.com": "subscribed",
        "u2@example.com": "pending",
        "u3@example.com": "pending",
    }


def test_mirror_archives_removed_members(proj: Builder, chimp: MailchimpEmulator) -> None:
    members_sync(proj, 5, mode="mirror", max_remove_pct=100)
    assert proj.run("s").status is RunStatus.SUCCEEDED
    proj.sql("DELETE FROM users WHERE id IN (2, 5)")

    run = proj.run("s")

    assert run.status is RunStatus.SUCCEEDED and run.counts.removed == 2
    assert set(members(chimp)) == {"u1@example.com", "u3@example.com", "u4@example.com"}
    archived = chimp.member(LIST, "u2@example.com")
    assert archived is not None and archived["status"] == "archived"


def test_permanent_delete_when_configured(
    proj: Builder, chimp: MailchimpEmulator, server: EmulatorServer
) -> None:
    proj.destination(
        "mc", type="mailchimp", api_key=KEY, base_url=server.url, on_delete="delete_permanent"
    )
    members_sync(proj, 3, mode="mirror", max_remove_pct=100)
    assert proj.run("s").status is RunStatus.SUCCEEDED
    proj.sql("DELETE FROM users WHERE id = 3")

    assert proj.run("s").status is RunStatus.SUCCEEDED

    assert chimp.member(LIST, "u3@example.com") is None
    paths = [c.path for c in chimp.calls if c.method == "POST"]
    assert (
        f"/3.0/lists/{LIST}/members/{subscriber_hash('u3@example.com')}/actions/delete-permanent"
        in paths
    )


def test_membership_tags_members_and_untags_exactly_those_that_leave(
    proj: Builder, chimp: MailchimpEmulator, server: EmulatorServer
) -> None:
    # Already a member (with a tag of its own), and a tagged member the model never had.
    put_member(server, "u2@example.com", status="subscribed", tags=["old"])
    put_member(server, "outsider@example.com", status="subscribed", tags=["vip"])
    members_sync(proj, 6, mode="membership", object=f"{LIST}/tags/vip", max_remove_pct=100)
    env = {"MAILCHIMP_API_KEY": KEY}

    first = proj.cli("run", "s", env=env)

    assert first.returncode == 0, first.stdout + first.stderr
    tagged = {e for e, m in members(chimp).items() if "vip" in [t["name"] for t in m["tags"]]}
    assert tagged == {f"u{i}@example.com" for i in range(1, 7)} | {"outsider@example.com"}

    proj.sql("DELETE FROM users WHERE id IN (2, 5)")
    second = proj.cli("run", "s", env=env)

    assert second.returncode == 0, second.stdout + second.stderr
    now = members(chimp)
    tagged = {e for e, m in now.items() if "vip" in [t["name"] for t in m["tags"]]}
    assert tagged == {f"u{i}@example.com" for i in (1, 3, 4, 6)} | {"outsider@example.com"}
    # Members that left keep their membership, status and other tags.
    assert now["u2@example.com"]["status"] == "subscribed"
    assert [t["name"] for t in now["u2@example.com"]["tags"]] == ["old"]
    assert now["u5@example.com"]["status"] == "subscribed"
    assert not [c for c in chimp.calls if c.method == "DELETE"]
    untag = [
        c
        for c in chimp.calls
        if c.path.endswith("/tags") and c.json["tags"][0]["status"] == "inactive"
    ]
    assert sorted(c.path.split("/")[-2] for c in untag) == sorted(
        subscriber_hash(f"u{i}@example.com") for i in (2, 5)
    )


def test_validate_refuses_bad_files_with_file_line_and_key(proj: Builder) -> None:
    proj.users(2)
    good = (proj.root / "destinations/mc.yml").read_text()
    proj.write("destinations/mc.yml", "type: mailchimp\napi_key: abcdef\n")
    sync = {"destination": "mc", "mappings": MAPPINGS, "match": {"fields": ["email_address"]}}
    proj.sync("untagged", mode="membership", object=LIST, **sync)

    refused = proj.cli("validate", "--offline")

    assert refused.returncode == 2
    assert re.search(
        r"^error: destinations/mc\.yml:2: api_key: `api_key` has no data-centre suffix .*"
        r"set `data_center`",
        refused.stderr,
        re.M,
    ), refused.stderr

    proj.write("destinations/mc.yml", good)
    proj.sync("tagged", object=f"{LIST}/tags/vip", **sync)
    proj.sync("noobject", **sync)
    wrong = [MAPPINGS[0], {"column": "name", "field": "fname"}]
    proj.sync("fields", destination="mc", mappings=wrong, object=LIST, match=sync["match"])

    result = proj.cli("validate", "--offline")

    assert result.returncode == 2
    expected = [
        r"syncs/untagged\.yml:\d+: object: mailchimp membership is kept by a tag: .*"
        r"`object: LIST_ID/tags/TAG`",
        r"syncs/tagged\.yml:\d+: object: `/tags/TAG` in object is for `mode: membership`",
        # No line to name: the key is missing.
        r"syncs/noobject\.yml: object: mailchimp needs the audience \(list\) id",
        r"syncs/fields\.yml:\d+: mappings: mailchimp members have no field `fname`",
    ]
    for pattern in expected:
        assert re.search("^error: " + pattern, result.stderr, re.M), (pattern, result.stderr)


def test_the_sandbox_destination_file_runs_a_membership_sync(project: Builder) -> None:
    """`backhaul sandbox mailchimp` prints a destination file that works as pasted."""
    project.users(3)
    with Sandbox(["mailchimp"]) as sandbox:
        [entry] = sandbox.entries
        text = describe(entry)
        pasted = text.split("destinations/mailchimp.yml:\n")[1].split("\n\n")[0]
        project.write("destinations/mailchimp.yml", "\n".join(ln[2:] for ln in pasted.splitlines()))
        sync = {"match": {"fields": ["email_address"]}, "mode": "membership"}
        project.sync(
            "s", destination="mailchimp", mappings=MAPPINGS, object=f"{LIST}/tags/vip", **sync
        )
        result = project.cli("run", "s", env=entry.credentials)
        assert result.returncode == 0, result.stdout + result.stderr
        emulator = entry.emulator
        assert isinstance(emulator, MailchimpEmulator)
        listed = emulator.state()["lists"][LIST]["members"]
    assert {e for e, m in listed.items() if m["tags"][0]["name"] == "vip"} == {
        f"u{i}@example.com" for i in range(1, 4)
    }
