"""``backhaul init``: write a small example project that validates and runs as it is.

The example model is an inline ``VALUES`` query, so the first ``backhaul run`` works
without any data; the warehouse file is created empty for the user's own tables.
"""

from __future__ import annotations

import re
from pathlib import Path

from backhaul.config.models import NAME_PATTERN
from backhaul.config.schema import modeline
from backhaul.config.schema import write_schemas
from backhaul.errors import ConfigError
from backhaul.files import NotReadable
from backhaul.files import read_text_if_any
from backhaul.plugins import Registry

SCHEMA_DIR = ".backhaul/schema"

_FILES: dict[str, tuple[str | None, str]] = {
    # path: (schema kind for the modeline, text); {name} is the project name.
    "backhaul.yml": (
        "project",
        """\
name: {name}
version: 1
state:
  path: .backhaul          # snapshots and run history (git-ignored)
defaults:
  max_remove_pct: 20       # stop a run that would remove more than 20% of the rows
""",
    ),
    "sources/warehouse.yml": (
        "source",
        """\
type: duckdb
path: warehouse.duckdb     # relative to the project folder
""",
    ),
    "models/example_users.yml": (
        "model",
        """\
source: warehouse
primary_key: id
description: Example users; the query is in example_users.sql next to this file.
""",
    ),
    "models/example_users.sql": (
        None,
        """\
-- Example model: a fixed list of users, so the first run needs no data.
-- Replace it with a query on your own tables, e.g. SELECT ... FROM users.
SELECT *
FROM (
    VALUES
        (1, 'ada@example.com', 'Ada', 'Lovelace', 'pro'),
        (2, 'grace@example.com', 'Grace', 'Hopper', 'free'),
        (3, 'alan@example.com', 'Alan', 'Turing', 'pro')
) AS users (id, email, first_name, last_name, plan)
""",
    ),
    "destinations/local_csv.yml": (
        "destination",
        """\
type: file
format: csv                # csv, jsonl or parquet
path: exports/{{sync}}.csv  # {{sync}} is replaced by the sync's name
layout: current            # current: one file holding the current rows; per_run: one per run
""",
    ),
    "syncs/example_users_to_csv.yml": (
        "sync",
        """\
model: example_users
destination: local_csv
mode: upsert
mappings:
  - column: id
    field: id
  - column: email
    field: email
  - template: "{{{{ first_name }}}} {{{{ last_name }}}}"
    field: full_name
  - column: plan
    field: plan
  - value: backhaul
    field: signup_source
""",
    ),
    "README.md": (
        None,
        """\
# {name}

A Backhaul project: SQL models in a warehouse, kept in step with other tools.

| path | what it holds |
|---|---|
| `backhaul.yml` | project name, where state is kept, defaults for every sync |
| `sources/warehouse.yml` | the warehouse: an embedded DuckDB file, `warehouse.duckdb` |
| `models/example_users.sql` | the model's query (here a fixed list, so it runs without data) |
| `models/example_users.yml` | which source runs it and its primary key |
| `destinations/local_csv.yml` | where records go: a CSV file under `exports/` |
| `syncs/example_users_to_csv.yml` | the model sent to the destination, and the field mappings |
| `.backhaul/` | local state: snapshots, run history, editor schemas (git-ignored) |

Names come from file names: `models/example_users.yml` defines the model `example_users`.

## Try it

```sh
backhaul validate          # check every file, the SQL and the mappings
backhaul run --all         # send the rows; a second run sends only what changed
```

Then edit `models/example_users.sql` (change an email, drop a row) and run again: only the
change travels.

## Secrets

Never write a password in a file: use `${{env:NAME}}` (for example
`password: ${{env:CRM_PASSWORD}}`) and set the variable before running.

## Editor completion

Each YAML file starts with a `yaml-language-server` line pointing at a JSON Schema in
`.backhaul/schema/`. Run `backhaul schema` to regenerate them after installing a connector.
""",
    ),
}


def default_name(folder: Path) -> str:
    """A valid project name from a folder name (``my project`` → ``my_project``)."""
    name = re.sub(r"[^A-Za-z0-9_\-]+", "_", folder.name).strip("_-") or "backhaul_project"
    return name if re.match(r"[A-Za-z_]", name) else f"p_{name}"


def init_project(
    dir: Path,
    name: str | None = None,
    *,
    force: bool = False,
    registry: Registry | None = None,
) -> list[Path]:
    """Create an example project in ``dir``.

    Existing files other than the project's own are left alone unless ``force`` is set;
    ``.gitignore`` gets a ``.backhaul/`` line added when it lacks one.

    Args:
        dir: The project folder (created if needed).
        name: Project name; default: derived from the folder name.
        force: Overwrite an existing project.
        registry: Connectors for the editor schemas; default: installed connectors.

    Returns:
        The files written.

    Raises:
        ConfigError: ``dir`` already holds a project (and ``force`` is not set), or the
            name is invalid.
    """
    dir = Path(dir).resolve()
    name = name if name is not None else default_name(dir)
    if not re.match(NAME_PATTERN, name):
        raise ConfigError(
            f"invalid project name `{name}`: use letters, digits, `_` and `-`, "
            "starting with a letter or `_`"
        )
    existing = [p for p in ("backhaul.yml", "backhaul.yaml") if (dir / p).exists()]
    if existing and not force:
        raise ConfigError(
            f"{dir} already holds a project ({existing[0]}): pick an empty folder, "
            "or pass --force to overwrite the example files"
        )
    dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for rel, (kind, template) in _FILES.items():
        path = dir / rel
        if path.exists() and not force:
            continue
        text = template.format(name=name)
        if kind is not None:
            text = modeline(kind, rel, SCHEMA_DIR) + "\n" + text
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    written += _gitignore(dir)
    warehouse = dir / "warehouse.duckdb"
    if not warehouse.exists():
        import duckdb  # kept out of CLI start-up

        duckdb.connect(str(warehouse)).close()  # an empty database for the user's tables
        written.append(warehouse)
    written += write_schemas(dir / SCHEMA_DIR, registry, schema_dir=SCHEMA_DIR)
    return written


def _gitignore(dir: Path) -> list[Path]:
    path = dir / ".gitignore"
    try:
        lines = (read_text_if_any(path) or "").splitlines()
    except NotReadable as exc:
        raise ConfigError(f"cannot add `.backhaul/` to {path}: it {exc.reason}") from None
    if any(line.strip() in (".backhaul", ".backhaul/", "/.backhaul/") for line in lines):
        return []
    text = "\n".join([*lines, "# Backhaul local state", ".backhaul/"]) + "\n"
    path.write_text(text, encoding="utf-8")
    return [path]


__all__ = ["default_name", "init_project"]
