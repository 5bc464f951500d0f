from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.conftest import within

from backhaul.config import check_project
from backhaul.config import init_project
from backhaul.config import load_project
from backhaul.config.loader import read_yaml
from backhaul.config.models import ColumnMapping
from backhaul.config.models import TemplateMapping
from backhaul.config.scaffold import default_name
from backhaul.errors import ConfigError

from . import registry

YAML_KINDS = {
    "backhaul.yml": "backhaul",
    "sources/warehouse.yml": "source",
    "models/example_users.yml": "model",
    "destinations/local_csv.yml": "destination",
    "syncs/example_users_to_csv.yml": "sync",
}


def test_init_writes_a_project_that_loads_and_checks_clean(tmp_path: Path) -> None:
    root = tmp_path / "my-project"
    written = init_project(root, registry=registry())

    rel = {p.relative_to(root.resolve()).as_posix() for p in written}
    assert {*YAML_KINDS, "models/example_users.sql", ".gitignore", "README.md"} <= rel
    assert "warehouse.duckdb" in rel
    assert ".backhaul/schema/sync.schema.json" in rel

    project = load_project(root, registry=registry())
    assert project.config.name == "my-project"
    assert set(project.syncs) == {"example_users_to_csv"}
    assert project.destinations["local_csv"].raw == {
        "type": "file",
        "format": "csv",
        "path": "exports/{sync}.csv",
        "layout": "current",
    }
    sync = project.syncs["example_users_to_csv"].config
    assert any(isinstance(m, TemplateMapping) for m in sync.mappings)
    assert [m.column for m in sync.mappings if isinstance(m, ColumnMapping)] == [
        "id",
        "email",
        "plan",
    ]
    assert check_project(project) == []


def test_the_example_model_returns_rows_without_any_data(tmp_path: Path) -> None:
    init_project(tmp_path, "demo", registry=registry())
    project = load_project(tmp_path, registry=registry())
    source_def = project.sources["warehouse"]
    source = project.registry.source("duckdb")(source_def.config, project.root)
    try:
        rows = source.stream(project.models["example_users"].sql).read_all().to_pylist()
    finally:
        source.close()
    assert [r["email"] for r in rows] == [
        "ada@example.com",
        "grace@example.com",
        "alan@example.com",
    ]


def test_every_yaml_file_starts_with_the_schema_modeline(tmp_path: Path) -> None:
    init_project(tmp_path, "demo", registry=registry())
    for rel, kind in YAML_KINDS.items():
        first = (tmp_path / rel).read_text().splitlines()[0]
        prefix = "../" * rel.count("/")
        assert (
            first == f"# yaml-language-server: $schema={prefix}.backhaul/schema/{kind}.schema.json"
        )
        assert (tmp_path / rel).parent.joinpath(first.split("=", 1)[1]).resolve().is_file()


def test_scaffolded_files_validate_against_the_written_schemas(tmp_path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    init_project(tmp_path, "demo", registry=registry())
    for rel, kind in YAML_KINDS.items():
        schema = json.loads((tmp_path / ".backhaul/schema" / f"{kind}.schema.json").read_text())
        data, _ = read_yaml(tmp_path / rel, tmp_path)
        jsonschema.Draft202012Validator(schema).validate(data)


def test_refuses_an_existing_project_unless_forced(tmp_path: Path) -> None:
    init_project(tmp_path, "demo", registry=registry())
    (tmp_path / "models/example_users.sql").write_text("SELECT 1 AS id\n")
    with pytest.raises(ConfigError) as info:
        init_project(tmp_path, "demo", registry=registry())
    assert "already holds a project (backhaul.yml)" in str(info.value)
    assert "--force" in str(info.value)
    assert (tmp_path / "models/example_users.sql").read_text() == "SELECT 1 AS id\n"

    init_project(tmp_path, "other", force=True, registry=registry())
    assert "VALUES" in (tmp_path / "models/example_users.sql").read_text()
    assert load_project(tmp_path, registry=registry()).config.name == "other"


def test_keeps_existing_files_and_extends_gitignore(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("mine\n")
    (tmp_path / ".gitignore").write_text("*.pyc\n")
    written = init_project(tmp_path, "demo", registry=registry())
    assert tmp_path.resolve() / "README.md" not in written
    assert (tmp_path / "README.md").read_text() == "mine\n"
    assert (tmp_path / ".gitignore").read_text().splitlines() == [
        "*.pyc",
        "# Backhaul local state",
        ".backhaul/",
    ]
    init_project(tmp_path, "demo", force=True, registry=registry())
    assert (tmp_path / ".gitignore").read_text().count(".backhaul/") == 1


def test_invalid_project_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        init_project(tmp_path, "9 lives", registry=registry())
    assert str(info.value).startswith("invalid project name `9 lives`")
    assert not (tmp_path / "backhaul.yml").exists()


def test_default_name_from_folder() -> None:
    assert default_name(Path("/x/my project")) == "my_project"
    assert default_name(Path("/x/2024-crm")) == "p_2024-crm"
    assert default_name(Path("/x/crm.sync")) == "crm_sync"


def test_init_project_checks_clean_with_the_installed_connectors(tmp_path: Path) -> None:
    written = init_project(tmp_path, "demo")
    project = load_project(tmp_path)
    assert check_project(project) == []
    readme = tmp_path / ".backhaul/schema/README.md"
    assert readme in [p.resolve() for p in written]
    assert "Left out" not in readme.read_text()


@pytest.mark.parametrize("make", [os.mkfifo, os.mkdir], ids=["pipe", "folder"])
def test_init_names_a_gitignore_that_is_not_a_file(
    tmp_path: Path, make: Callable[[Path], None]
) -> None:
    root = tmp_path / "p"
    root.mkdir()
    make(root / ".gitignore")
    raised = within(30, lambda: init_project(root, registry=registry()))
    assert isinstance(raised, ConfigError)
    assert f"cannot add `.backhaul/` to {root.resolve() / '.gitignore'}: it is a" in str(raised)
