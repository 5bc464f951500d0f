"""Project configuration: load, check, resolve secrets, export JSON Schema, scaffold.

Typical use::

    project = load_project("my-project")  # raises ConfigErrors listing every problem
    problems = check_project(project)  # cross-file checks, SQL compiled in the warehouse
    config, secrets = resolve(project.destinations["crm"].config, positions=...)
"""

from __future__ import annotations

from backhaul.config.checks import check_project
from backhaul.config.loader import load_project
from backhaul.config.scaffold import init_project
from backhaul.config.schema import project_schema
from backhaul.config.schema import write_schemas
from backhaul.config.secrets import references
from backhaul.config.secrets import resolve

__all__ = [
    "check_project",
    "init_project",
    "load_project",
    "project_schema",
    "references",
    "resolve",
    "write_schemas",
]
