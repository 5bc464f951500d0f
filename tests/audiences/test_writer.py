"""Saving an audience: canonical files round-trip byte for byte, hand-edited files keep their
comments and order, and only what changed is rewritten."""

from __future__ import annotations

import difflib
import os
from datetime import date
from datetime import datetime
from pathlib import Path

from tests.audiences.projects import audience_file
from tests.audiences.projects import duckdb_project
from tests.conftest import within

from backhaul import api
from backhaul.audiences.audience import AudienceConfig
from backhaul.audiences.writer import dump_audience
from backhaul.audiences.writer import save_audience
from backhaul.config.loader import read_yaml
from backhaul.errors import ConfigError

CANONICAL = """\
schema: people
description: Enterprise people in France or Germany who came back this month
tags: [growth, eu]
columns: [name, country]
match: all
conditions:
  - {column: country, op: in, value: [FR, DE]}
  - {column: name, op: not_equals, value: it's a "test" -- /* */}
  - {column: born, op: between, value: [1980-01-01, 1999-12-31]}
  - {column: seen, op: after, value: 2024-06-01 10:30:00}
  - any:
      - {related: accounts, where: [{column: plan, op: equals, value: enterprise}]}
      - {related: orders, where: [{column: amount, op: gte, value: 99.5}], at_least: 2}
      - none:
          - {column: vip, op: equals, value: false}
  - {event: visits, where: [{column: page, op: starts_with, value: /pricing}], at_least: 3, within_last_days: 30}
  - {event: visits, last: {op: not_within_last, days: 90}}
  - {not_in_audience: churned}
  - {sql: age * 2 > 40}
splits:
  seed: spring-2024
  holdout: 10
  groups:
    - {name: email, percent: 45}
    - {name: sms, percent: 45}
tests:
  - name: a French enterprise person is in
    now: 2024-06-15 12:00:00
    rows:
      people:
        - {id: 1, country: FR, account_id: 7}
      accounts:
        - {id: 7, plan: enterprise}
    expect_in: [1]
    expect_out: [2]
"""

HAND_EDITED = """\
# Written by hand: comments, odd spacing and quoting stay as they are.
schema: people   # the schema
conditions:
  # people in France
  - column: country
    op: equals
    value: 'FR'
  - {column: age, op: gte, value: 18}      # adults
match: any
"""


def _load(text: str, tmp_path: Path) -> AudienceConfig:
    path = tmp_path / "a.yml"
    path.write_text(text, encoding="utf-8")
    data, _ = read_yaml(path, tmp_path)
    return AudienceConfig.model_validate(data)


def test_a_canonical_file_loads_and_saves_back_byte_for_byte(tmp_path: Path) -> None:
    config = _load(CANONICAL, tmp_path)
    assert dump_audience(config, CANONICAL) == CANONICAL  # saved over the file
    assert dump_audience(config) == CANONICAL  # written anew


def test_a_new_audience_is_written_in_the_canonical_style_and_reloads_equal(
    tmp_path: Path,
) -> None:
    config = AudienceConfig.model_validate(
        {
            "schema": "people",
            "conditions": [
                {"column": "seen", "op": "within_last", "days": 7},
                {
                    "all": [
                        {"column": "name", "op": "contains", "value": "O'Neil\\"},
                        {
                            "event": "visits",
                            "did_not": True,
                            "between": [date(2024, 1, 1), datetime(2024, 2, 1, 8)],
                        },
                    ]
                },
                {"column": "country", "op": "in", "value": ["yes", "null", "1", "2024-01-01"]},
            ],
            "splits": {"holdout": 5.5},
        }
    )
    text = dump_audience(config)
    assert "\n  - {column: seen, op: within_last, days: 7}\n" in text
    assert "\n  - all:\n      - {column: name" in text
    again = _load(text, tmp_path)
    assert again == config
    assert again.conditions[2].value == ["yes", "null", "1", "2024-01-01"]  # still text
    assert dump_audience(again, text) == text


def test_a_hand_edited_file_keeps_its_comments_and_order(tmp_path: Path) -> None:
    config = _load(HAND_EDITED, tmp_path)
    assert dump_audience(config, HAND_EDITED) == HAND_EDITED
    first = config.conditions[0]
    changed = config.model_copy(
        update={"conditions": [first.model_copy(update={"value": "DE"}), config.conditions[1]]}
    )
    text = dump_audience(changed, HAND_EDITED)
    diff = [
        line
        for line in difflib.unified_diff(HAND_EDITED.splitlines(), text.splitlines(), lineterm="")
        if line.startswith(("+", "-")) and not line.startswith(("+++", "---"))
    ]
    assert diff == ["-    value: 'FR'", "+    value: 'DE'"]  # the quoting style is kept too
    assert _load(text, tmp_path) == changed


def test_adding_and_removing_conditions_touches_only_them(tmp_path: Path) -> None:
    config = _load(HAND_EDITED, tmp_path)
    added = config.model_copy(
        update={
            "conditions": [
                *config.conditions,
                _load("schema: people\nconditions:\n  - {in_audience: vip}\n", tmp_path).conditions[
                    0
                ],
            ]
        }
    )
    text = dump_audience(added, HAND_EDITED)
    assert text.startswith(HAND_EDITED.split("match: any")[0])  # comments kept
    assert "  - {in_audience: vip}\n" in text
    removed = added.model_copy(update={"conditions": added.conditions[1:]})
    shorter = dump_audience(removed, text)
    assert "country" not in shorter and "# adults" in shorter
    assert _load(shorter, tmp_path) == removed


def test_save_writes_the_file_the_project_then_loads(tmp_path: Path) -> None:
    root = duckdb_project(tmp_path / "p", {})
    path = audience_file(root, "eu", CANONICAL.replace("  - {not_in_audience: churned}\n", ""))
    project = api.load_project(root)
    config = project.audiences["eu"].config
    edited = config.model_copy(update={"description": "Edited in the builder"})
    text = save_audience(path, edited)
    assert path.read_text(encoding="utf-8") == text
    assert "description: Edited in the builder\n" in text
    assert api.load_project(root).audiences["eu"].config == edited
    assert not list(path.parent.glob(".*.tmp"))  # the temporary file is gone


def test_saving_over_a_pipe_or_a_folder_names_it_and_writes_nothing(tmp_path: Path) -> None:
    config = _load(CANONICAL, tmp_path)
    for name, make in (("piped", os.mkfifo), ("folder", os.mkdir)):
        path = tmp_path / f"{name}.yml"
        make(path)
        raised = within(30, lambda path=path: save_audience(path, config))
        assert isinstance(raised, ConfigError), raised
        assert f"cannot save the audience over {path}: it is a" in str(raised)
        assert not list(path.parent.glob(".*.tmp"))
