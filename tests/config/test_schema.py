from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from backhaul.config import project_schema
from backhaul.config import write_schemas
from backhaul.config.loader import read_yaml
from backhaul.config.schema import SCHEMA_FILES
from backhaul.config.schema import modeline
from backhaul.config.schema import schema_bundle

from . import GOOD
from . import registry
from . import write

KINDS = ["project", "source", "model", "destination", "sync"]


def test_bundle_has_one_definition_per_kind() -> None:
    bundle = project_schema(registry())
    assert bundle["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    defs = bundle["$defs"]
    for kind in KINDS:
        assert kind in defs
    assert defs["project"]["$ref"] == "#/$defs/ProjectConfig"
    assert defs["ProjectConfig"]["additionalProperties"] is False
    assert "name" in defs["ProjectConfig"]["required"]
    # Destinations: a union tagged by `type` over the registered connector models.
    dest = defs["destination"]
    assert dest["discriminator"]["propertyName"] == "type"
    assert set(dest["discriminator"]["mapping"]) == {"file", "test"}
    assert defs["FileStandInConfig"]["properties"]["layout"]["enum"] == ["per_run", "current"]
    assert "$comment" not in bundle


def test_every_ref_resolves_inside_the_bundle() -> None:
    bundle = project_schema(registry())

    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            found = [node["$ref"]] if "$ref" in node else []
            return found + [r for v in node.values() for r in refs(v)]
        if isinstance(node, list):
            return [r for v in node for r in refs(v)]
        return []

    names = {r.removeprefix("#/$defs/") for r in refs(bundle)}
    assert names
    assert names <= set(bundle["$defs"])


def test_connector_that_fails_to_import_becomes_a_warning() -> None:
    reg = registry(broken="backhaul_no_such_module:Thing")
    bundle = project_schema(reg)
    assert "destination type `broken` left out of the schema" in bundle["$comment"]
    assert set(bundle["$defs"]["destination"]["discriminator"]["mapping"]) == {"file", "test"}
    result = schema_bundle(reg)
    assert len(result.warnings) == 1
    assert "backhaul_no_such_module" in result.schemas["destination"]["$comment"]


def test_schemas_are_valid_json_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator
    validator.check_schema(project_schema(registry()))
    for kind, schema in schema_bundle(registry()).schemas.items():
        validator.check_schema(schema)
        assert schema["title"].startswith("Backhaul"), kind


def test_project_files_validate_against_their_schema(tmp_path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schemas = schema_bundle(registry()).schemas
    write(tmp_path, GOOD)
    kind_of = {
        "backhaul.yml": "project",
        "sources/warehouse.yml": "source",
        "models/users.yml": "model",
        "destinations/crm.yml": "destination",
        "syncs/users_to_crm.yml": "sync",
    }
    for rel, kind in kind_of.items():
        data, _ = read_yaml(tmp_path / rel, tmp_path)
        jsonschema.Draft202012Validator(schemas[kind]).validate(data)
    bad = {"model": "users", "destination": "crm", "mappings": [{"colum": "id", "field": "id"}]}
    errors = list(jsonschema.Draft202012Validator(schemas["sync"]).iter_errors(bad))
    assert errors


def test_write_schemas_writes_one_file_per_kind_and_a_readme(tmp_path: Path) -> None:
    out = tmp_path / ".backhaul" / "schema"
    paths = write_schemas(out, registry())
    assert [p.name for p in paths] == [*SCHEMA_FILES.values(), "README.md"]
    for kind, name in SCHEMA_FILES.items():
        schema = json.loads((out / name).read_text())
        assert schema["$schema"].endswith("2020-12/schema")
        assert kind in schema["title"] or name.startswith("backhaul")
    readme = (out / "README.md").read_text()
    assert "# yaml-language-server: $schema=../.backhaul/schema/sync.schema.json" in readme


def test_modeline_is_relative_to_the_yaml_file() -> None:
    assert modeline("project", "backhaul.yml") == (
        "# yaml-language-server: $schema=.backhaul/schema/backhaul.schema.json"
    )
    assert modeline("model", "models/marketing/leads.yml") == (
        "# yaml-language-server: $schema=../../.backhaul/schema/model.schema.json"
    )
