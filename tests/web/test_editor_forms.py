"""The editors' forms: drawn from the config models; a secret is an environment variable's
name written as ``${env:NAME}``, and a literal secret value is refused wherever it is."""

from __future__ import annotations

from backhaul.config.models import SyncConfig
from backhaul.destinations.hubspot import HubSpotConfig
from backhaul.web.editor_forms import coerce
from backhaul.web.editor_forms import model_fields


def test_a_connector_form_comes_from_its_config_model() -> None:
    fields = {f.key: f for f in model_fields(HubSpotConfig)}
    assert fields["token"].widget == "secret" and fields["token"].required
    assert fields["base_url"].widget == "text"
    assert "type" not in fields
    sync = {f.key: f for f in model_fields(SyncConfig, ("mode", "enabled", "batch_size"))}
    assert sync["mode"].widget == "choice" and "mirror" in sync["mode"].choices
    assert (sync["enabled"].widget, sync["batch_size"].widget) == ("bool", "number")


def test_a_secret_is_written_as_a_reference_and_a_literal_is_refused() -> None:
    fields = model_fields(HubSpotConfig)
    values, problems = coerce(fields, {"token": "HUBSPOT_TOKEN", "timeout_seconds": "12"})
    assert values == {"token": "${env:HUBSPOT_TOKEN}", "timeout_seconds": 12}
    assert problems == []
    values, problems = coerce(fields, {"token": "pat-na1-1234-secret"})
    assert values == {} and problems[0].key == "token"
    # An empty secret keeps what the file holds.
    assert coerce(fields, {"token": ""}) == ({}, [])


def test_a_literal_secret_inside_yaml_settings_is_refused() -> None:
    fields = model_fields(HubSpotConfig)
    yaml_key = next(f.key for f in fields if f.widget == "yaml")
    _, problems = coerce(fields, {yaml_key: "api_key: abc123\n"})
    assert [p.key for p in problems] == [f"{yaml_key}.api_key"]
    _, problems = coerce(fields, {yaml_key: "api_key: ${env:KEY}\n"})
    assert [p.key for p in problems if "environment variable" in p.message] == []
