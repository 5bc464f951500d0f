"""The Meta Custom Audiences destination in real syncs against the Meta emulator.

Every test runs the engine (a DuckDB model, ``backhaul.api``) in ``mode: membership`` and
compares the emulator's audience with the model: the hashes it holds, not the requests.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterator
from typing import Any

import pytest

from backhaul import api
from backhaul.destinations.pii import sha256_hex
from backhaul.summary import RunStatus
from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.meta import MetaEmulator
from conftest import Builder
from conftest import keys_of

pytestmark = pytest.mark.integration

# Worked examples of the vendor reference (§7): what Meta hashes, byte for byte.
ANN_SHA256 = "0b2d6603047b0e23d4fc76b502153865296189b7d3a170d1a7b2dcda4e2b6d10"
META_PHONE_SHA256 = "6069d14bf122fdfd931dc7beb58e5dfbba395b1faf05bdcd42d12358d63d8599"
FAST_RETRY = {"base_delay": 0.01, "max_delay": 0.05}


@pytest.fixture
def meta(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[MetaEmulator, EmulatorServer]]:
    emulator = MetaEmulator(rate_limit=100_000, rate_window=1.0)
    with EmulatorServer(emulator) as server:
        for name, value in emulator.credentials().items():
            monkeypatch.setenv(name, value)
        yield emulator, server


def setup(
    project: Builder,
    meta: tuple[MetaEmulator, EmulatorServer],
    *,
    fields: tuple[str, ...] = ("email",),
    match: tuple[str, ...] = ("email",),
    sync: dict[str, Any] | None = None,
    **destination: Any,
) -> str:
    """A ``meta`` destination at the emulator and an ``aud`` sync keeping its audience."""
    emulator, server = meta
    config = {**emulator.destination_config(server.url), "retry": FAST_RETRY, **destination}
    project.destination("meta", **config)
    spec: dict[str, Any] = {
        "mode": "membership",
        "object": emulator.audience_id,
        "mappings": [{"column": f, "field": f} for f in fields],
        "match": {"fields": list(match)},
        "max_remove_pct": 100,
        **(sync or {}),
    }
    project.sync("aud", destination="meta", **spec)
    return emulator.audience_id


def model_hashes(project: Builder) -> set[str]:
    return {sha256_hex(str(e).strip().lower()) for (e,) in project.sql("SELECT email FROM users")}


# -- acceptance ------------------------------------------------------------------------------


def test_acceptance_100k_audience_shrunk_by_10_percent_loses_exactly_those(
    project: Builder, meta: tuple[MetaEmulator, EmulatorServer]
) -> None:
    emulator, _ = meta
    project.users(100_000)
    audience = setup(project, meta)

    first = project.run("aud")
    assert (first.status, first.counts.succeeded) == (RunStatus.SUCCEEDED, 100_000)
    assert emulator.values(audience) == model_hashes(project)
    assert emulator.size(audience) == 100_000

    before = emulator.values(audience)
    project.sql("DELETE FROM users WHERE id % 10 = 0")
    shrink = project.run("aud")

    assert shrink.status is RunStatus.SUCCEEDED, shrink.error
    assert (shrink.counts.removed, shrink.counts.succeeded) == (10_000, 10_000)
    after = emulator.values(audience)
    assert after == model_hashes(project)
    gone = {sha256_hex(f"u{i}@example.com") for i in range(10, 100_001, 10)}
    assert before - after == gone
    assert emulator.size(audience) == 90_000
    removes = [c for c in emulator.calls if c.method == "DELETE"]
    assert sum(len(c.json["payload"]["data"]) for c in removes) == 10_000


def test_a_run_with_no_change_sends_nothing_and_a_full_resync_adds_no_duplicate(
    project: Builder, meta: tuple[MetaEmulator, EmulatorServer]
) -> None:
    emulator, _ = meta
    project.users(30)
    audience = setup(project, meta)
    assert project.run("aud").status is RunStatus.SUCCEEDED
    calls = len(emulator.calls)

    again = project.run("aud")
    assert (again.status, again.counts.planned, len(emulator.calls)) == (
        RunStatus.SUCCEEDED,
        0,
        calls,
    )
    resync = project.run("aud", full_resync=True)

    assert (resync.status, resync.counts.succeeded) == (RunStatus.SUCCEEDED, 30)
    assert emulator.values(audience) == model_hashes(project)
    assert emulator.size(audience) == 30


# -- what is sent --------------------------------------------------------------------------


def test_multi_key_rows_are_normalised_and_hashed_as_meta_documents(
    project: Builder, meta: tuple[MetaEmulator, EmulatorServer]
) -> None:
    emulator, _ = meta
    prehashed = sha256_hex("pre@hashed.com").upper()
    project.sql(
        "CREATE TABLE users (id BIGINT, email VARCHAR, phone VARCHAR, first_name VARCHAR, "
        "last_name VARCHAR, country VARCHAR)",
        "INSERT INTO users VALUES (1, '  Ann@X.com ', '+1 (650) 555-1234', 'Ann-Marie', "
        "'O''Neil', 'US'), "
        f"(2, '{prehashed}', NULL, NULL, NULL, NULL)",
    )
    project.model("users", "SELECT * FROM users")
    fields = ("email", "phone", "first_name", "last_name", "country")
    audience = setup(project, meta, fields=fields)

    run = project.run("aud")

    assert run.status is RunStatus.SUCCEEDED, run.error
    members = emulator.state()["audiences"][audience]["members"]
    assert {
        "EMAIL": ANN_SHA256,
        "PHONE": META_PHONE_SHA256,
        "FN": sha256_hex("annmarie"),
        "LN": sha256_hex("oneil"),
        "COUNTRY": sha256_hex("us"),
    } in members
    assert {"EMAIL": prehashed.lower()} in members  # a pre-hashed column is not hashed again
    [call] = [c for c in emulator.calls if c.method == "POST"]
    assert call.json["payload"]["schema"] == ["EMAIL", "PHONE", "FN", "LN", "COUNTRY"]
    assert "Ann" not in json.dumps(call.json)


def test_a_batch_above_the_request_cap_is_one_session_of_numbered_requests(
    project: Builder, meta: tuple[MetaEmulator, EmulatorServer]
) -> None:
    emulator, _ = meta
    emulator.max_rows = 40
    project.users(250)
    audience = setup(project, meta, rows_per_request=40, sync={"batch_size": 100})

    run = project.run("aud")

    assert run.status is RunStatus.SUCCEEDED, run.error
    assert emulator.values(audience) == model_hashes(project)
    sessions = list(emulator.state()["sessions"].values())
    assert sorted(s["num_received"] for s in sessions) == [50, 100, 100]
    for s in sessions:
        assert s["done"] and s["operation"] == "add"
        assert s["batches"] == list(range(1, s["last_batch_seq"] + 1))
        assert s["estimated_num_total"] == s["num_received"]
    assert all(len(c.json["payload"]["data"]) <= 40 for c in emulator.calls if c.json)


def test_a_changed_email_leaves_under_the_old_one_and_joins_under_the_new(
    project: Builder, meta: tuple[MetaEmulator, EmulatorServer]
) -> None:
    emulator, _ = meta
    project.users(20)
    audience = setup(project, meta)
    assert project.run("aud").status is RunStatus.SUCCEEDED

    project.sql("UPDATE users SET email = 'moved' || id || '@example.org' WHERE id IN (3, 4)")
    run = project.run("aud")

    assert run.status is RunStatus.SUCCEEDED, run.error
    assert emulator.values(audience) == model_hashes(project)
    assert emulator.size(audience) == 20


# -- rows Meta cannot take -------------------------------------------------------------------


def test_rows_without_a_usable_identifier_are_rejected_by_key_and_the_rest_go_on(
    project: Builder, meta: tuple[MetaEmulator, EmulatorServer]
) -> None:
    emulator, _ = meta
    project.users(10, "CASE WHEN i = 4 THEN '12' ELSE NULL END AS phone")
    project.sql(
        "UPDATE users SET email = NULL WHERE id = 2", "UPDATE users SET email = 'nope' WHERE id = 3"
    )
    audience = setup(project, meta, fields=("email", "phone"))

    run = project.run("aud")

    assert run.status is RunStatus.PARTIAL
    rejected = {r.key: r.error for r in project.rows(run.run_id, "rejected")}
    assert set(rejected) == {"2", "3", "4"}
    assert "no identifier" in rejected["2"]
    assert rejected["3"].startswith("email: is not an e-mail address")
    assert rejected["4"].startswith("phone: is not a possible phone number")
    assert "nope" not in rejected["3"]  # the reason never repeats the value
    assert emulator.size(audience) == 7


def test_invalid_entry_samples_are_mapped_back_to_their_rows(
    project: Builder, meta: tuple[MetaEmulator, EmulatorServer]
) -> None:
    emulator, _ = meta
    emulator.max_samples = 2  # five refused rows, two named per answer
    bad = {i: sha256_hex(f"u{i}@example.com") for i in (3, 8, 11, 15, 19)}
    emulator.faults.reject({h: "bad record" for h in bad.values()})
    project.users(20)
    audience = setup(project, meta)

    first = project.run("aud")

    assert first.status is RunStatus.PARTIAL
    rejected = project.rows(first.run_id, "rejected")
    assert keys_of(rejected) == {str(i) for i in bad}
    assert all(r.error == "Meta refused the row: bad record" for r in rejected)
    assert emulator.values(audience) == model_hashes(project) - set(bad.values())

    emulator.faults.clear()
    second = project.run("aud")
    assert (second.status, second.counts.retried, second.counts.succeeded) == (
        RunStatus.SUCCEEDED,
        5,
        5,
    )
    assert emulator.values(audience) == model_hashes(project)


def test_invalid_rows_meta_does_not_name_stay_pending(
    project: Builder, meta: tuple[MetaEmulator, EmulatorServer]
) -> None:
    emulator, _ = meta
    emulator.max_samples = 0
    emulator.faults.reject({sha256_hex("u2@example.com"): "bad record"})
    project.users(5)
    setup(project, meta)

    first = project.run("aud")

    assert first.status is RunStatus.FAILED  # every row rejected: nothing was delivered
    rejected = project.rows(first.run_id, "rejected")
    assert keys_of(rejected) == {"1", "2", "3", "4", "5"}
    assert "counted 1 of these 5 rows invalid without naming them" in (rejected[0].error or "")
    emulator.faults.clear()
    assert project.run("aud").counts.succeeded == 5


# -- the sync checks -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["upsert", "mirror"])
def test_modes_other_than_membership_are_refused_before_anything_is_sent(
    project: Builder, meta: tuple[MetaEmulator, EmulatorServer], mode: str
) -> None:
    emulator, _ = meta
    project.users(3)
    setup(project, meta, sync={"mode": mode})

    result = project.cli("run", "aud")

    assert result.returncode == 2
    assert "mode: a meta_audiences audience only has members: set `mode: membership`" in (
        result.stderr
    )
    assert emulator.calls == []


def test_fields_that_are_not_identifiers_and_a_missing_match_are_refused(
    project: Builder, meta: tuple[MetaEmulator, EmulatorServer]
) -> None:
    project.users(3)
    setup(project, meta)
    project.sync(
        "aud",
        destination="meta",
        mode="membership",
        object="1",
        mappings=[{"column": "email", "field": "email"}, {"column": "name", "field": "name"}],
    )

    result = project.cli("validate")

    assert result.returncode != 0
    assert "`name` is not an identifier meta_audiences matches people on" in result.stderr
    assert "set `match: {fields: [...]}` to mapped identifiers" in result.stderr


def test_an_audience_the_token_cannot_reach_fails_the_run_with_what_to_fix(
    project: Builder, meta: tuple[MetaEmulator, EmulatorServer]
) -> None:
    emulator, _ = meta
    project.users(3)
    setup(project, meta, sync={"object": "999"})

    run = project.run("aud")

    assert run.status is RunStatus.FAILED
    assert "audience `999`" in (run.error or "") and "check the sync's `object`" in (
        run.error or ""
    )
    assert not any(c.path.endswith("/users") for c in emulator.calls)


# -- the generic checks that apply: rate limit, transient, fatal, secrets -------------------


def test_throttling_answers_are_waited_out_and_retried(
    project: Builder, meta: tuple[MetaEmulator, EmulatorServer]
) -> None:
    emulator, _ = meta
    project.users(30)
    audience = setup(project, meta, rows_per_request=10)
    emulator.faults.rate_limit_next(2)

    run = project.run("aud")

    assert run.status is RunStatus.SUCCEEDED, run.error
    throttled = [c for c in emulator.calls if c.status == 400]
    assert len(throttled) == 2
    assert emulator.values(audience) == model_hashes(project)


def test_the_client_rate_limit_keeps_under_the_ad_account_window(
    project: Builder, meta: tuple[MetaEmulator, EmulatorServer]
) -> None:
    emulator, _ = meta
    emulator.window.limit, emulator.window.seconds = 4, 1.0  # the limiter passes at most 3.5
    project.users(60)
    audience = setup(
        project, meta, rows_per_request=10, rate_limit={"requests": 1, "per_seconds": 0.4}
    )

    run = project.run("aud")

    assert run.status is RunStatus.SUCCEEDED, run.error
    assert emulator.window.refused == 0
    assert emulator.values(audience) == model_hashes(project)


def test_a_long_throttle_fails_the_run_as_transient_without_hammering(
    project: Builder, meta: tuple[MetaEmulator, EmulatorServer]
) -> None:
    emulator, _ = meta
    emulator.window.limit, emulator.window.seconds = 2, 600.0
    project.users(30)
    setup(project, meta, rows_per_request=10, retry={**FAST_RETRY, "max_retry_after": 5})

    run = project.run("aud")

    assert run.status is RunStatus.FAILED
    assert "throttling this ad account" in (run.error or "")
    assert emulator.window.refused <= 6  # each batch gives up at once, the engine a few times


def test_5xx_and_dropped_connections_are_retried(
    project: Builder, meta: tuple[MetaEmulator, EmulatorServer]
) -> None:
    emulator, _ = meta
    project.users(20)
    audience = setup(project, meta)
    emulator.faults.fail_next(2, 503)
    emulator.faults.drop_next(1)

    run = project.run("aud")

    assert run.status is RunStatus.SUCCEEDED, run.error
    assert emulator.values(audience) == model_hashes(project)


def test_a_wrong_token_fails_fast_and_no_secret_is_recorded(
    project: Builder, meta: tuple[MetaEmulator, EmulatorServer]
) -> None:
    emulator, _ = meta
    project.users(5)
    audience = setup(project, meta)
    assert project.run("aud").status is RunStatus.SUCCEEDED
    project.sql("DELETE FROM users WHERE id = 1")
    setup(project, meta, access_token="EAAB-not-the-token")
    calls = len(emulator.calls)

    run = project.run("aud")

    assert run.status is RunStatus.FAILED and run.exit_code == 1
    assert "meta_audiences" in (run.error or "") and "check `access_token`" in (run.error or "")
    assert len(emulator.calls) - calls <= 3
    assert emulator.size(audience) == 5
    proof = hmac.new(emulator.app_secret.encode(), emulator.access_token.encode(), "sha256")
    secrets = [emulator.access_token, emulator.app_secret, proof.hexdigest(), "EAAB-not-the-token"]
    with api.open_store(project.load()) as store:
        texts = [r.error or "" for r in store.runs(limit=10)]
        for record in store.runs(limit=10):
            for call in store.calls(record.run_id, limit=1000):
                texts += [call.url, json.dumps(call.request_headers), call.request_body or ""]
                texts += [call.response_body or "", call.error or ""]
    assert any("/users" in t for t in texts)
    for secret in secrets:
        assert not any(secret in t for t in texts), secret
