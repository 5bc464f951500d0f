"""What the DB-API sources take from their base: the config model, the kind, driver options."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import Field

from backhaul.sources.common import DbApiSource
from backhaul.sources.common import HostSourceConfig


class ExampleConfig(HostSourceConfig):
    type: Literal["example"]
    port: int = 1234
    schema_: str | None = Field(None, alias="schema")


class ExampleSource(DbApiSource[ExampleConfig]):
    driver = "example_driver"


def test_config_model_and_kind_come_from_the_type_argument() -> None:
    assert ExampleSource.config_model is ExampleConfig
    assert ExampleSource.kind == "example"
    assert ExampleSource.dialect == "example"
    assert ExampleSource.extra == "example"


def test_driver_options_use_the_file_keys() -> None:
    config = ExampleConfig.model_validate(
        {"type": "example", "host": "h", "user": "u", "schema": "s"}
    )
    assert config.driver_options("host", "port", "schema") == {
        "host": "h",
        "port": 1234,
        "schema": "s",
    }
    with pytest.raises(KeyError):
        config.driver_options("hots")
