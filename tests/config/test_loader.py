from __future__ import annotations

from pathlib import Path

import pytest

from backhaul.config import load_project
from backhaul.config.loader import quote_table
from backhaul.config.loader import read_yaml
from backhaul.config.models import ColumnMapping
from backhaul.config.models import StaticMapping
from backhaul.config.models import TemplateMapping
from backhaul.errors import ConfigError
from backhaul.errors import ConfigErrors
from backhaul.plugins import Registry

from . import good_project
from . import registry
from . import write

SYNC = "syncs/users_to_crm.yml"


def load_errors(
    root: Path, reg: Registry | None = None
) -> list[tuple[str | None, int | None, str | None, str]]:
    with pytest.raises(ConfigErrors) as info:
        load_project(root, registry=reg or registry())
    return [(e.file, e.line, e.key, e.reason) for e in info.value.errors]


def sync_file(*mapping_lines: str, extra: str = "") -> str:
    head = "model: users\ndestination: crm\n" + extra + "mappings:\n"
    return head + "".join(line + "\n" for line in mapping_lines)


def test_good_project_loads(tmp_path: Path) -> None:
    project = load_project(good_project(tmp_path), registry=registry())

    assert project.root == tmp_path.resolve()
    assert project.config.name == "acme"
    assert project.config.defaults.batch_size == 50
    assert set(project.sources) == {"warehouse"}
    model = project.models["users"]
    assert model.config.primary_key == ["id"]
    assert model.sql.strip() == "SELECT id, email, first_name FROM users"
    assert model.sql_file == tmp_path.resolve() / "models/users.sql"
    crm = project.destinations["crm"]
    # The secret reference is kept as written: no value is read at load time.
    assert crm.config.password == "${env:BACKHAUL_TEST_CRM_PASSWORD}"
    assert crm.raw["type"] == "test"
    sync = project.syncs["users_to_crm"]
    kinds = [type(m) for m in sync.config.mappings]
    assert kinds == [ColumnMapping, ColumnMapping, TemplateMapping, StaticMapping]
    assert sync.positions.file == Path(SYNC)
    assert sync.positions.line("mappings.2.template") == 8
    assert sync.positions.line("mappings.3.field") == 11
    assert project.positions is not None and project.positions.line("defaults.batch_size") == 3


def test_missing_project_file_says_how_to_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_project(tmp_path, registry=registry())
    assert str(info.value) == (
        f"no backhaul.yml in {tmp_path.resolve()}: run `backhaul init` to create a project"
    )


def test_subfolders_yaml_extension_and_list_primary_key(tmp_path: Path) -> None:
    good_project(
        tmp_path,
        {
            "models/marketing/leads.yaml": "source: warehouse\nprimary_key: [id, email]\n"
            "table: analytics.leads\n",
            "models/inline.yml": "source: warehouse\nprimary_key: id\nsql: SELECT 1 AS id\n",
        },
    )
    project = load_project(tmp_path, registry=registry())
    leads = project.models["leads"]
    assert leads.config.primary_key == ["id", "email"]
    assert leads.sql == 'SELECT * FROM "analytics"."leads"'
    assert leads.sql_file is None
    assert leads.positions.file == Path("models/marketing/leads.yaml")
    assert project.models["inline"].sql == "SELECT 1 AS id"


def test_quote_table() -> None:
    assert quote_table("users") == '"users"'
    assert quote_table("main.users") == '"main"."users"'
    assert quote_table('"Odd Name"') == '"Odd Name"'


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    text = "model: users\ndestination: crm\n  nested: wrong\nmappings: []\n"
    good_project(tmp_path, {SYNC: text})
    [(file, line, key, reason)] = load_errors(tmp_path)
    assert (file, line, key) == (SYNC, 3, None)
    assert reason.startswith("malformed YAML: ")
    assert "mapping values are not allowed here" in reason


def test_duplicate_yaml_key_is_malformed(tmp_path: Path) -> None:
    good_project(tmp_path, {"backhaul.yml": "name: acme\nname: other\n"})
    [(file, line, key, reason)] = load_errors(tmp_path)
    assert (file, line, key) == ("backhaul.yml", 2, None)
    assert "duplicate key" in reason


def test_unknown_key_suggests_the_right_one(tmp_path: Path) -> None:
    text = sync_file("  - column: id", "    field: id", "  - colum: email", "    field: email")
    good_project(tmp_path, {SYNC: text})
    assert load_errors(tmp_path) == [
        (SYNC, 6, "mappings.1.colum", "unknown key `colum` (did you mean `column`?)")
    ]


def test_unknown_top_level_key(tmp_path: Path) -> None:
    good_project(tmp_path, {"backhaul.yml": "nmae: acme\n"})
    assert load_errors(tmp_path) == [
        ("backhaul.yml", 1, "nmae", "unknown key `nmae` (did you mean `name`?)")
    ]


def test_unknown_key_without_close_match_lists_allowed(tmp_path: Path) -> None:
    good_project(tmp_path, {"models/users.yml": "source: warehouse\nprimary_key: id\nzzz: 1\n"})
    [(file, line, key, reason)] = load_errors(tmp_path)
    assert (file, line, key) == ("models/users.yml", 3, "zzz")
    assert reason.startswith(
        "unknown key `zzz` (allowed: dbt, description, primary_key, source, sql"
    )


def test_wrong_type(tmp_path: Path) -> None:
    text = sync_file("  - column: id", "    field: id", extra="batch_size: lots\n")
    good_project(tmp_path, {SYNC: text})
    [(file, line, key, reason)] = load_errors(tmp_path)
    assert (file, line, key) == (SYNC, 3, "batch_size")
    assert reason.startswith("must be a valid integer")


def test_wrong_enum_value_lists_choices(tmp_path: Path) -> None:
    text = sync_file("  - column: id", "    field: id", extra="mode: upsrt\n")
    good_project(tmp_path, {SYNC: text})
    assert load_errors(tmp_path) == [
        (SYNC, 3, "mode", "must be 'upsert', 'update', 'insert', 'mirror' or 'membership'")
    ]


def test_missing_required_key(tmp_path: Path) -> None:
    good_project(tmp_path, {SYNC: "destination: crm\nmappings:\n  - column: id\n    field: id\n"})
    assert load_errors(tmp_path) == [(SYNC, None, "model", "missing required key `model`")]


def test_missing_nested_key_points_at_its_parent(tmp_path: Path) -> None:
    good_project(
        tmp_path, {SYNC: sync_file("  - column: id", "    field: id", "  - column: email")}
    )
    assert load_errors(tmp_path) == [(SYNC, 6, "mappings.1.field", "missing required key `field`")]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "must be greater than 0"),
        ("-5", "must be greater than 0"),
        ("200000", "must be less than or equal to 100000"),
    ],
)
def test_invalid_batch_size(tmp_path: Path, value: str, message: str) -> None:
    text = sync_file("  - column: id", "    field: id", extra=f"batch_size: {value}\n")
    good_project(tmp_path, {SYNC: text})
    assert load_errors(tmp_path) == [(SYNC, 3, "batch_size", message)]


def test_mapping_errors_come_from_the_kind_used(tmp_path: Path) -> None:
    text = sync_file(
        "  - value: {a: 1}",
        "    field: x",
        "  - value: 1",
        "    column: y",
        "    field: z",
        "  - field: w",
        "  - template: 'Hi'",
        "    field: t",
        "    cast: integr",
    )
    good_project(tmp_path, {SYNC: text})
    errors = load_errors(tmp_path)
    assert errors[0] == (
        SYNC,
        4,
        "mappings.0.value",
        "must be a valid string or a valid integer or a valid number or a valid boolean",
    )
    assert errors[1] == (SYNC, 6, "mappings.1", "give only one of `column`, `value`")
    assert errors[2][:3] == (SYNC, 9, "mappings.2")
    assert errors[2][3].startswith("needs one of `column`")
    assert errors[3][:3] == (SYNC, 12, "mappings.3.cast")
    assert errors[3][3].startswith("must be 'string', 'int'")
    assert len(errors) == 4


def test_duplicate_mapped_field(tmp_path: Path) -> None:
    text = sync_file("  - column: id", "    field: id", "  - column: email", "    field: id")
    good_project(tmp_path, {SYNC: text})
    assert load_errors(tmp_path) == [
        (
            SYNC,
            7,
            "mappings.1.field",
            "field `id` is mapped twice (also by mappings.0); map each target field once",
        )
    ]


def test_unknown_destination_type_lists_known_types(tmp_path: Path) -> None:
    good_project(tmp_path, {"destinations/crm.yml": "type: tset\nurl: x\n"})
    assert load_errors(tmp_path) == [
        (
            "destinations/crm.yml",
            1,
            "type",
            "unknown destination type `tset` (did you mean `test`? known: file, test)",
        )
    ]


def test_missing_type(tmp_path: Path) -> None:
    good_project(tmp_path, {"sources/warehouse.yml": "path: warehouse.duckdb\n"})
    [(file, line, key, message)] = load_errors(tmp_path)
    assert (file, line, key) == ("sources/warehouse.yml", None, "type")
    assert message.startswith("missing required key `type` (known: ")
    assert "duckdb" in message and "postgres" in message


def test_destination_keys_are_checked_by_the_connector_model(tmp_path: Path) -> None:
    good_project(tmp_path, {"destinations/crm.yml": "type: test\nurl: x\npasword: y\n"})
    assert load_errors(tmp_path) == [
        ("destinations/crm.yml", 3, "pasword", "unknown key `pasword` (did you mean `password`?)")
    ]


def test_connector_that_fails_to_import_is_a_config_error(tmp_path: Path) -> None:
    reg = registry(broken="backhaul_no_such_module:Thing")
    good_project(tmp_path, {"destinations/crm.yml": "type: broken\n"})
    [(file, line, key, reason)] = load_errors(tmp_path, reg)
    assert (file, line, key) == ("destinations/crm.yml", 1, "type")
    assert reason.startswith("cannot load the `broken` destination connector")
    assert "No module named 'backhaul_no_such_module'" in reason


def test_malformed_env_reference(tmp_path: Path) -> None:
    text = "type: test\nurl: https://x\npassword: ${CRM_PASSWORD}\n"
    good_project(tmp_path, {"destinations/crm.yml": text})
    [(file, line, key, reason)] = load_errors(tmp_path)
    assert (file, line, key) == ("destinations/crm.yml", 3, "password")
    assert reason.startswith("unsupported reference `${CRM_PASSWORD}`")


def test_duplicate_names_across_subfolders(tmp_path: Path) -> None:
    good_project(tmp_path, {"destinations/eu/crm.yml": "type: test\nurl: https://eu\n"})
    assert load_errors(tmp_path) == [
        (
            "destinations/eu/crm.yml",
            None,
            None,
            "duplicate destination name `crm`: also defined in destinations/crm.yml; "
            "names are file names and must be unique, so rename one",
        )
    ]


def test_invalid_file_name(tmp_path: Path) -> None:
    good_project(tmp_path, {"syncs/9 lives.yml": sync_file("  - column: id", "    field: id")})
    [(file, line, key, reason)] = load_errors(tmp_path)
    assert (file, line, key) == ("syncs/9 lives.yml", None, None)
    assert reason.startswith("invalid sync name `9 lives`")


def test_missing_sql_file(tmp_path: Path) -> None:
    good_project(tmp_path, {"models/users.sql": ""})  # empty text: the file is not written
    assert load_errors(tmp_path) == [
        (
            "models/users.yml",
            None,
            None,
            "missing SQL file models/users.sql: create it, or set `sql` or `table` in "
            "models/users.yml",
        )
    ]


def test_sql_file_without_model_definition(tmp_path: Path) -> None:
    good_project(tmp_path, {"models/orphan.sql": "SELECT 1\n"})
    [(file, line, key, reason)] = load_errors(tmp_path)
    assert (file, line, key) == ("models/orphan.sql", None, None)
    assert "create models/orphan.yml" in reason


def test_sql_and_table_together(tmp_path: Path) -> None:
    text = "source: warehouse\nprimary_key: id\nsql: SELECT 1\ntable: users\n"
    good_project(tmp_path, {"models/users.yml": text})
    assert load_errors(tmp_path) == [
        ("models/users.yml", 3, "sql", "give either `sql` or `table`, not both")
    ]


def test_file_that_is_not_a_mapping(tmp_path: Path) -> None:
    good_project(tmp_path, {"models/users.yml": "- source\n- warehouse\n"})
    assert load_errors(tmp_path) == [
        ("models/users.yml", 1, None, "must be a mapping of `key: value` lines")
    ]


def test_every_error_in_every_file_is_reported(tmp_path: Path) -> None:
    good_project(
        tmp_path,
        {
            "backhaul.yml": "name: acme\nversion: 2\n",
            "models/users.yml": "primary_key: id\n",
            "destinations/crm.yml": "type: test\n",
            SYNC: "model: users\ndestination: crm\nmappings: []\n",
        },
    )
    errors = load_errors(tmp_path)
    assert [(f, line, k) for f, line, k, _ in errors] == [
        ("backhaul.yml", 2, "version"),
        ("models/users.yml", None, "source"),
        ("destinations/crm.yml", None, "url"),
        (SYNC, 3, "mappings"),
    ]
    assert errors[0][3] == "must be 1"
    assert errors[3][3].startswith("must have at least 1 item")


def test_config_errors_message_lists_every_problem(tmp_path: Path) -> None:
    good_project(tmp_path, {"backhaul.yml": "name: acme\nversion: 2\nextra: 1\n"})
    with pytest.raises(ConfigErrors) as info:
        load_project(tmp_path, registry=registry())
    assert str(info.value).splitlines() == [
        "backhaul.yml:2: version: must be 1",
        "backhaul.yml:3: extra: unknown key `extra` (allowed: alerts, approval, dbt_cloud, dbt_project, default_target, defaults, name, owner, scheduler, state, targets, version, web)",
    ]


def test_read_yaml_records_nested_positions(tmp_path: Path) -> None:
    write(tmp_path, {"a.yml": "a:\n  b:\n    - x: 1\n      y: |\n        text\n    - 2\n"})
    data, positions = read_yaml(tmp_path / "a.yml", tmp_path)
    assert data == {"a": {"b": [{"x": 1, "y": "text\n"}, 2]}}
    assert type(data["a"]["b"][0]["y"]) is str
    assert positions.lines == {
        "a": 1,
        "a.b": 2,
        "a.b.0": 3,
        "a.b.0.x": 3,
        "a.b.0.y": 4,
        "a.b.1": 6,
    }


def test_builtin_connectors_load_with_env_references(tmp_path: Path) -> None:
    good_project(
        tmp_path,
        {
            "destinations/pg.yml": "type: postgres\nurl: ${env:PG_URL}\nschema: crm\n",
            "destinations/my.yml": "type: mysql\nurl: mysql://root@${env:MY_HOST:-127.0.0.1}/crm\n",
            "destinations/lite.yml": "type: sqlite\npath: crm.sqlite\n",
            "destinations/duck.yml": "type: duckdb\npath: out.duckdb\n",
            "destinations/files.yml": "type: file\nformat: jsonl\npath: out/{sync}.jsonl\n",
            "destinations/hook.yml": "type: webhook\nurl: https://hooks.example.com/x\n"
            "headers:\n  Authorization: Bearer ${env:HOOK_TOKEN}\n",
            "destinations/crm.yml": "type: webhook\nurl: https://crm.example.com\n",
        },
    )
    project = load_project(tmp_path)  # the installed connectors, found by entry point
    types = {name: d.raw["type"] for name, d in project.destinations.items()}
    assert types == {
        "crm": "webhook",
        "duck": "duckdb",
        "files": "file",
        "hook": "webhook",
        "lite": "sqlite",
        "my": "mysql",
        "pg": "postgres",
    }
    assert project.destinations["pg"].config.url == "${env:PG_URL}"
    assert project.destinations["hook"].config.headers == {
        "Authorization": "Bearer ${env:HOOK_TOKEN}"
    }


def test_builtin_connector_keys_are_checked(tmp_path: Path) -> None:
    good_project(tmp_path, {"destinations/crm.yml": "type: postgres\nurl: x\nschemas: crm\n"})
    with pytest.raises(ConfigErrors) as info:
        load_project(tmp_path)
    [err] = info.value.errors
    assert (err.file, err.line, err.key) == ("destinations/crm.yml", 3, "schemas")
    assert err.reason == "unknown key `schemas` (did you mean `schema`?)"
