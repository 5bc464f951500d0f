"""Keys and values that a plain print would hide or split read apart in the terminal:
``plan``'s samples, its invalid rows and ``run-show``'s rejected rows write text that is
empty, has a space at an end or holds a line break as a JSON string."""

from __future__ import annotations

import pytest

from backhaul.testing.receiver import WebhookReceiver
from conftest import Builder

pytestmark = pytest.mark.integration

MODEL = (
    "SELECT * FROM (VALUES ('a', 1), ('a ', 2), (E'x\\ny', 3), ('', 4), ('b', 5), "
    "(' ', 6), (' ', 7)) AS t(id, n)"
)


def hook_sync(project: Builder, receiver: WebhookReceiver) -> None:
    """Sync ``to_hook``: the model's keys and numbers to ``receiver``."""
    project.model("users", MODEL)
    project.webhook_destination(receiver)
    mappings = [{"column": "id", "field": "id"}, {"column": "n", "field": "n"}]
    project.sync("to_hook", destination="hook", mappings=mappings)


def test_plan_writes_keys_a_print_would_hide_as_json_strings(
    project: Builder, receiver: WebhookReceiver
) -> None:
    hook_sync(project, receiver)

    out = project.cli("plan", "to_hook")

    assert out.returncode == 0, out.stderr
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in out.stdout.splitlines()]
    rows = [c for c in cells if len(c) == 3]
    assert ['"a "', '"a "', "2"] in rows
    assert ['"x\\ny"', '"x\\ny"', "3"] in rows
    assert ['""', '""', "4"] in rows
    assert ["a", "a", "1"] in rows  # plain text stays plain
    assert 'invalid row " ": duplicate primary key (2 rows share it)' in out.stdout


def test_run_show_writes_a_rejected_key_with_a_trailing_space_quoted(
    project: Builder, receiver: WebhookReceiver
) -> None:
    hook_sync(project, receiver)
    receiver.faults.reject({"a ": "no such contact"})

    summary = project.run("to_hook")
    out = project.cli("run-show", summary.run_id)

    assert summary.counts.rejected == 1
    assert out.returncode == 0, out.stderr
    [line] = [line for line in out.stdout.splitlines() if "no such contact" in line]
    assert '"a "' in line
