"""The demo's project files: a warehouse source, the lead-score model, three destinations
(a SQLite table standing in for a CRM, a webhook, a CSV export) and a sync to each.

The files are written as a person would write them, with comments, so the demo doubles
as an example project. The warehouse itself is built by
:func:`backhaul.demo.warehouse.build_warehouse` into ``warehouse.duckdb`` next to them.
"""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

PROJECT_NAME = "northwind_demo"
WAREHOUSE_FILE = "warehouse.duckdb"
SIGNING_SECRET_ENV = "BACKHAUL_DEMO_SIGNING_SECRET"

_BACKHAUL_YML = f"""\
# Backhaul demo project: product-qualified leads from Northwind Analytics' warehouse.
name: {PROJECT_NAME}
version: 1
state:
  path: .backhaul
defaults:
  # stop a run that would remove more than this share of a destination's records
  max_remove_pct: 20
"""

_SOURCE_YML = f"""\
# The embedded warehouse (rebuild it with `backhaul demo`).
type: duckdb
path: {WAREHOUSE_FILE}
description: Product usage and billing data of Northwind Analytics (fictional).
"""

_PQL_MODEL_YML = """\
source: warehouse
primary_key: user_id
description: >-
  One row per user with a 0-100 lead score from the last 14 days of product activity,
  a product-qualified-lead flag and a lifecycle stage.
tags: [growth]
"""

_HEALTH_MODEL_YML = """\
source: warehouse
primary_key: account_id
description: One row per account with recent activity and a health score.
tags: [success]
"""

_CRM_YML = """\
# A SQLite table standing in for a CRM's contact list.
type: sqlite
path: crm.sqlite
table: contacts
create_table: true
"""

_EXPORTS_YML = """\
# A CSV file that always holds the current state of the synced records.
type: file
format: csv
path: exports/pql_users.csv
layout: current
"""

_PQL_TO_CRM_YML = """\
# Keep the CRM's contacts identical to the model: new users are created, changed ones
# updated, and users who left the model are deleted.
model: pql_users
destination: crm
object: contacts
mode: mirror
match:
  fields: [user_id]
mappings:
  - {column: user_id, field: user_id}
  - {column: email, field: email}
  - {column: first_name, field: first_name}
  - {column: last_name, field: last_name}
  - {template: "{{ first_name }} {{ last_name }}", field: full_name}
  - {column: lead_score, field: lead_score, cast: int}
  - {column: lifecycle_stage, field: lifecycle_stage}
  - {column: plan, field: plan}
  # a SQL table is flat, so the company goes in plain columns
  - {column: account_name, field: company_name}
  - {column: account_domain, field: company_domain}
  - {value: warehouse, field: lead_source}
tags: [growth]
"""

_PQLS_TO_WEBHOOK_YML = """\
# Tell the sales tool about every score change; the payload nests the account.
model: pql_users
destination: events_hook
mode: upsert
match:
  fields: [user_id]
mappings:
  - {column: user_id, field: user_id}
  - {column: email, field: email}
  - {column: lead_score, field: lead_score, cast: int}
  - {column: pql, field: pql, cast: bool}
  - {column: lifecycle_stage, field: lifecycle_stage}
  - {column: account_name, field: account.name}
  - {column: account_domain, field: account.domain}
  - {column: plan, field: account.plan}
tags: [growth]
"""

_PQL_EXPORT_YML = """\
# A spreadsheet-friendly copy of the model for people without a CRM login.
model: pql_users
destination: exports
mode: mirror
mappings:
  - {column: user_id, field: user_id}
  - {column: email, field: email}
  - {template: "{{ first_name }} {{ last_name }}", field: name}
  - {column: account_name, field: company}
  - {column: plan, field: plan}
  - {column: lead_score, field: lead_score, cast: int}
  - {column: pql, field: pql, cast: bool}
  - {column: lifecycle_stage, field: lifecycle_stage}
  - {column: last_seen_at, field: last_seen_at, cast: timestamp}
"""

_GITIGNORE = """\
.backhaul/
"""


def _webhook_yml(webhook_url: str) -> str:
    # JSON string syntax is valid YAML and quotes any URL safely.
    return (
        "# Posts changed records as JSON, 50 per request, signed with an HMAC of the body.\n"
        "type: webhook\n"
        f"url: {json.dumps(webhook_url)}\n"
        "mode: batch\n"
        "batch_size: 50\n"
        f'signing_secret: "${{env:{SIGNING_SECRET_ENV}:-demo-signing-secret}}"\n'
    )


def _model_sql(name: str) -> str:
    return files("backhaul.demo").joinpath(f"{name}.sql").read_text(encoding="utf-8")


def demo_project_files(*, webhook_url: str) -> dict[str, str]:
    """The demo project's files as ``{relative path: text}``.

    Args:
        webhook_url: where the ``events_hook`` destination posts.
    """
    return {
        "backhaul.yml": _BACKHAUL_YML,
        ".gitignore": _GITIGNORE,
        "sources/warehouse.yml": _SOURCE_YML,
        "models/pql_users.yml": _PQL_MODEL_YML,
        "models/pql_users.sql": _model_sql("pql_users"),
        "models/accounts_health.yml": _HEALTH_MODEL_YML,
        "models/accounts_health.sql": _model_sql("accounts_health"),
        "destinations/crm.yml": _CRM_YML,
        "destinations/events_hook.yml": _webhook_yml(webhook_url),
        "destinations/exports.yml": _EXPORTS_YML,
        "syncs/pql_to_crm.yml": _PQL_TO_CRM_YML,
        "syncs/pqls_to_webhook.yml": _PQLS_TO_WEBHOOK_YML,
        "syncs/pql_export.yml": _PQL_EXPORT_YML,
    }


def write_demo_project(dir: Path, *, webhook_url: str) -> list[Path]:
    """Write the demo project's YAML and SQL files into ``dir``, replacing same-named files.

    The warehouse is not built here; call
    :func:`backhaul.demo.warehouse.build_warehouse` with ``dir / WAREHOUSE_FILE``.

    Args:
        dir: project folder; created if missing.
        webhook_url: where the ``events_hook`` destination posts.

    Returns:
        The paths written, in a stable order.
    """
    root = Path(dir)
    written: list[Path] = []
    for relative, text in demo_project_files(webhook_url=webhook_url).items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


__all__ = [
    "PROJECT_NAME",
    "SIGNING_SECRET_ENV",
    "WAREHOUSE_FILE",
    "demo_project_files",
    "write_demo_project",
]


_HUBSPOT_YML = """\
# The HubSpot sandbox emulator that `backhaul demo` starts (a real HubSpot account takes
# the default base_url and a private-app token in HUBSPOT_TOKEN).
type: hubspot
token: ${{env:HUBSPOT_TOKEN}}
base_url: {base_url}
"""

_SLACK_YML = """\
# The Slack sandbox emulator that `backhaul demo` starts: one digest message per run.
type: slack
token: ${{env:SLACK_BOT_TOKEN}}
channel: "#alerts"
base_url: {base_url}
mode: run_digest
max_records_in_digest: 5
title: "{{{{ count }}}} new product-qualified leads"
text: "• {{{{ first_name }}}} {{{{ last_name }}}} at {{{{ account_name }}}} (score {{{{ lead_score }}}})"
"""

_PQL_TO_HUBSPOT_YML = """\
# CRM contacts in HubSpot, matched by email: created, updated, archived when users leave.
model: pql_users
destination: hubspot
object: contacts
mode: mirror
match:
  fields: [email]
mappings:
  - {column: email, field: email}
  - {column: first_name, field: firstname}
  - {column: last_name, field: lastname}
  - {column: account_name, field: company}
  - {column: lead_score, field: lead_score, cast: int}
  - {column: lifecycle_stage, field: backhaul_stage}
tags: [crm]
"""

_NEW_PQLS_YML = """\
source: warehouse
primary_key: user_id
description: Users who are product-qualified leads right now.
"""

_PQL_ALERTS_YML = """\
# Tell sales in Slack about each new PQL once (insert mode: changes are not re-announced).
model: new_pqls
destination: slack
mode: insert
mappings:
  - {column: user_id, field: user_id}
  - {column: email, field: email}
  - {column: first_name, field: first_name}
  - {column: last_name, field: last_name}
  - {column: account_name, field: account_name}
  - {column: lead_score, field: lead_score, cast: int}
tags: [sales]
"""


def saas_project_files(*, hubspot_url: str, slack_url: str) -> dict[str, str]:
    """Files of the demo's syncs to the HubSpot and Slack sandbox emulators."""
    pqls = _model_sql("pql_users").strip().rstrip(";")
    new_pqls = (
        "-- The PQLs of pql_users.sql\n"
        "SELECT user_id, email, first_name, last_name, account_name, lead_score\n"
        f"FROM (\n{pqls}\n) AS pql_users\nWHERE pql\n"
    )
    return {
        "destinations/hubspot.yml": _HUBSPOT_YML.format(base_url=json.dumps(hubspot_url)),
        "destinations/slack.yml": _SLACK_YML.format(base_url=json.dumps(slack_url)),
        "models/new_pqls.yml": _NEW_PQLS_YML,
        "models/new_pqls.sql": new_pqls,
        "syncs/pql_to_hubspot.yml": _PQL_TO_HUBSPOT_YML,
        "syncs/pql_alerts.yml": _PQL_ALERTS_YML,
    }
