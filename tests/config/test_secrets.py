from __future__ import annotations

from pathlib import Path

import pytest

from backhaul.config import load_project
from backhaul.config import references
from backhaul.config import resolve
from backhaul.config.project import Positions
from backhaul.config.secrets import check_references
from backhaul.errors import ConfigError
from backhaul.errors import ConfigErrors

from . import CrmConfig
from . import good_project
from . import registry

POS = Positions(Path("destinations/crm.yml"), {"url": 2, "password": 3, "headers": 4})
SECRET = "s3cr3t-value-9f2"


def test_resolves_whole_values_and_parts_of_strings() -> None:
    env = {"CRM_PASSWORD": SECRET, "CRM_HOST": "crm.internal"}
    config = CrmConfig(
        type="test",
        url="https://user:${env:CRM_PASSWORD}@${env:CRM_HOST}/api",
        password="${env:CRM_PASSWORD}",
    )
    resolved, secrets = resolve(config, positions=POS, environ=env)

    assert resolved.url == f"https://user:{SECRET}@crm.internal/api"
    assert resolved.password == SECRET
    assert secrets == [SECRET, "crm.internal"]
    # The loaded config keeps its references.
    assert config.password == "${env:CRM_PASSWORD}"
    assert isinstance(resolved, CrmConfig)


def test_resolves_nested_dicts_and_lists() -> None:
    value = {"headers": {"X-Key": "${env:K}"}, "hosts": ["${env:H}", 3], "n": 1}
    resolved, secrets = resolve(value, positions=None, environ={"K": "key-123", "H": "h1"})
    assert resolved == {"headers": {"X-Key": "key-123"}, "hosts": ["h1", 3], "n": 1}
    assert value["headers"] == {"X-Key": "${env:K}"}
    assert secrets == ["key-123", "h1"]


def test_default_is_used_when_unset_and_is_not_a_secret() -> None:
    resolved, secrets = resolve(
        {"port": "${env:PORT:-5432}", "host": "${env:HOST:-}"}, positions=None, environ={}
    )
    assert resolved == {"port": "5432", "host": ""}
    assert secrets == []
    resolved, secrets = resolve(
        {"port": "${env:PORT:-5432}"}, positions=None, environ={"PORT": "6543"}
    )
    assert resolved == {"port": "6543"}
    assert secrets == ["6543"]


def test_dollar_escape_gives_a_literal() -> None:
    resolved, _ = resolve({"t": "cost: $${not a ref}"}, positions=None, environ={})
    assert resolved == {"t": "cost: ${not a ref}"}


def test_missing_variable_names_file_line_and_key() -> None:
    config = CrmConfig(type="test", url="https://x", password="${env:CRM_PASSWORD}")
    with pytest.raises(ConfigError) as info:
        resolve(config, positions=POS, environ={})
    err = info.value
    assert (err.file, err.line, err.key) == ("destinations/crm.yml", 3, "password")
    assert err.reason.startswith(
        "environment variable CRM_PASSWORD is not set (referenced by `password`)"
    )


def test_every_missing_variable_is_reported() -> None:
    value = {"url": "${env:A}", "password": "${env:B}"}
    with pytest.raises(ConfigErrors) as info:
        resolve(value, positions=POS, environ={})
    assert [(e.key, e.line) for e in info.value.errors] == [("url", 2), ("password", 3)]


def test_key_prefix_is_part_of_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        resolve({"X-Key": "${env:K}"}, positions=POS, key_prefix="headers", environ={})
    assert (info.value.key, info.value.line) == ("headers.X-Key", 4)


@pytest.mark.parametrize(
    ("text", "start"),
    [
        ("${CRM_PASSWORD}", "unsupported reference `${CRM_PASSWORD}`"),
        ("${vault:crm}", "unsupported reference `${vault:crm}`"),
        ("${env:9BAD}", "unsupported reference `${env:9BAD}`"),
        ("abc ${env:X", "unclosed reference `${env:X`"),
    ],
)
def test_anything_else_starting_with_dollar_brace_is_an_error(text: str, start: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve({"password": text}, positions=POS, environ={"X": "1"})
    assert info.value.reason.startswith(start)
    assert (info.value.file, info.value.line, info.value.key) == (
        "destinations/crm.yml",
        3,
        "password",
    )


def test_references_lists_names_without_reading_values() -> None:
    value = {"a": "${env:A}/${env:B:-x}", "b": ["${env:A}", "${env:C}"], "bad": "${nope}"}
    assert references(value) == ["A", "B", "C"]


def test_check_references_reports_unset_without_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKHAUL_TEST_SET", SECRET)
    monkeypatch.delenv("BACKHAUL_TEST_UNSET", raising=False)
    value = {
        "url": "${env:BACKHAUL_TEST_SET}",
        "password": "${env:BACKHAUL_TEST_UNSET}",
        "headers": "${env:BACKHAUL_TEST_UNSET:-fine}",
    }
    errors = check_references(value, positions=POS)
    assert [(e.file, e.line, e.key) for e in errors] == [("destinations/crm.yml", 3, "password")]
    assert "BACKHAUL_TEST_UNSET" in errors[0].reason
    assert all(SECRET not in str(e) for e in errors)


def test_loaded_destination_resolves_at_run_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BACKHAUL_TEST_CRM_PASSWORD", SECRET)
    project = load_project(good_project(tmp_path), registry=registry())
    crm = project.destinations["crm"]
    resolved, secrets = resolve(crm.config, positions=crm.positions)
    assert resolved.password == SECRET
    assert secrets == [SECRET]
    assert SECRET not in repr(project.destinations)
