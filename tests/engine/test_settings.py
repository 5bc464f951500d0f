"""A sync's settings come from one place, before anything is opened: what ``plan``,
``validate`` and ``run`` work with is the same, including what a destination file implies."""

from __future__ import annotations

from typing import Any

import pytest

from backhaul.destinations.http.ratelimit import UNLIMITED_CONCURRENCY
from backhaul.engine.runner import settings_for
from backhaul.engine.settings import SyncSettings
from backhaul.errors import ConfigError
from conftest import Builder

HUBSPOT = {"type": "hubspot", "token": "t"}
MAPPINGS = [{"column": "email", "field": "email"}]


def settings(project: Builder, destination: dict[str, Any], **sync: Any) -> SyncSettings:
    project.users(3)
    project.destination("dest", **destination)
    project.sync("people", destination="dest", mappings=MAPPINGS, **sync)
    loaded = project.load()
    return settings_for(loaded, loaded.sync("people"))


def test_rest_batches_in_flight_follow_the_files_rate_limit(project: Builder) -> None:
    # HubSpot's 100 calls per 10 s: 10 calls, and 10 batches, in flight.
    assert settings(project, HUBSPOT).concurrency == 10
    raised = {**HUBSPOT, "rate_limit": {"requests": 190, "per_seconds": 10}}
    assert settings(project, raised).concurrency == 19
    assert settings(project, {**HUBSPOT, "connections": 3}).concurrency == 3


def test_a_sync_or_the_defaults_still_win(project: Builder) -> None:
    assert settings(project, HUBSPOT, concurrency=2).concurrency == 2
    project.write("backhaul.yml", {"name": "t", "defaults": {"concurrency": 5}})
    assert settings(project, HUBSPOT).concurrency == 5
    assert settings(project, HUBSPOT, concurrency=2).concurrency == 2


def test_webhook_batches_in_flight_follow_its_rate_limit(project: Builder) -> None:
    hook = {"type": "webhook", "url": "http://127.0.0.1:9/hook", "mode": "batch"}
    assert settings(project, hook).concurrency == UNLIMITED_CONCURRENCY
    limited = {**hook, "rate_limit": {"requests": 20, "per_seconds": 1}}
    assert settings(project, limited).concurrency == 20
    assert settings(project, {**limited, "concurrency": 3}).concurrency == 3


def test_fixed_connectors_keep_their_capabilities_number(project: Builder) -> None:
    sheets = {"type": "google_sheets", "spreadsheet_id": "s1", "access_token": "t"}
    assert settings(project, sheets).concurrency == 1


def test_a_run_digest_takes_the_whole_run_as_one_batch(project: Builder) -> None:
    slack = {"type": "slack", "webhook_url": "https://hooks.slack.com/services/T0/B0/x"}
    assert settings(project, slack).batch_size == 100_000
    assert settings(project, {**slack, "run_digest_max_rows": 5000}).batch_size == 5000
    # Whatever the sync asks: the digest is one message per run.
    assert settings(project, slack, batch_size=10).batch_size == 100_000
    assert settings(project, {**slack, "mode": "digest"}).batch_size == 50
    # A batch_size the destination could never take is still a mistake in the file.
    with pytest.raises(ConfigError) as caught:
        settings(project, slack, batch_size=5000)
    assert caught.value.key == "batch_size"


def test_a_batch_size_above_the_limit_is_refused_with_its_key(project: Builder) -> None:
    with pytest.raises(ConfigError) as caught:
        settings(project, HUBSPOT, batch_size=10_000)
    assert caught.value.key == "batch_size"
    assert "limit" in str(caught.value)


def test_whether_the_files_set_a_batch_size_is_kept(project: Builder) -> None:
    duck = {"type": "duckdb", "path": "crm.duckdb", "table": "t"}
    unset = settings(project, duck)
    assert (unset.batch_size, unset.batch_size_set) == (100_000, False)
    assert settings(project, duck, batch_size=500).batch_size_set is True
    project.write("backhaul.yml", {"name": "t", "defaults": {"batch_size": 700}})
    from_defaults = settings(project, duck)
    assert (from_defaults.batch_size, from_defaults.batch_size_set) == (700, True)
