"""Schedules in sync files: each kind parses, bad ones say file:line: key: message, and
`backhaul validate` rejects sequences that name unknown syncs or form a cycle."""

from __future__ import annotations

from datetime import UTC
from datetime import datetime
from datetime import timedelta

import pytest
from tests.conftest import Builder

from backhaul.config.checks import schedule_errors
from backhaul.config.schedule import ScheduleConfig
from backhaul.config.schedule import parse_duration
from backhaul.errors import ConfigError
from backhaul.schedule.state import ScheduleState
from backhaul.schedule.timetable import expected_slot
from backhaul.schedule.timetable import next_slot

pytestmark = pytest.mark.integration


def _project(project: Builder) -> None:
    project.users(3)
    project.sqlite_destination()


def _errors(project: Builder) -> list[str]:
    with pytest.raises(ConfigError) as found:
        project.load()
    return found.value.message.splitlines()


def test_each_kind_of_schedule_loads(project: Builder) -> None:
    _project(project)
    project.sync("a", schedule={"every": "15m"})
    project.sync("b", schedule={"cron": "0  6 * * 1-5", "timezone": "Europe/Berlin"})
    project.sync("c", schedule={"after": ["a", "b"]})
    project.sync("d", schedule={"after": "c"})
    project.write("backhaul.yml", {"name": "t", "dbt_project": "dbt"})
    project.sync("e", schedule={"after_dbt": True})
    project.sync("f", schedule="manual")
    project.sync("g")
    syncs = project.load().syncs
    described = {n: s.config.schedule.describe() for n, s in syncs.items()}
    assert described == {
        "a": "every 15m",
        "b": "cron 0 6 * * 1-5 (Europe/Berlin)",
        "c": "after a, b",
        "d": "after c",
        "e": "after dbt",
        "f": "manual",
        "g": "manual",
    }
    assert schedule_errors(project.load()) == []


@pytest.mark.parametrize(
    ("schedule", "key", "words"),
    [
        ({"every": "15 minutes"}, "schedule.every", "is not a duration"),
        ({"every": "0s"}, "schedule.every", "at least 1s"),
        ({"cron": "61 * * * *"}, "schedule.cron", "is not a cron expression"),
        ({"cron": "0 6 * *"}, "schedule.cron", "five fields"),
        (
            {"cron": "0 6 * * *", "timezone": "Mars/Olympus"},
            "schedule.timezone",
            "unknown time zone",
        ),
        ({"every": "1h", "cron": "0 6 * * *"}, "schedule", "not every and cron"),
        ({"every": "1h", "timezone": "UTC"}, "schedule", "applies to `cron` only"),
        ({"evry": "1h"}, "schedule.evry", "did you mean `every`"),
        ({"after": []}, "schedule", "at least one sync"),
        # Text where a mapping belongs: the form it was probably meant as.
        ("every 5 minutes", "schedule", "`schedule: {every: 5m}`, not `every 5 minutes`"),
        ("*/5 * * * *", "schedule", 'under `cron:`: `schedule: {cron: "*/5 * * * *"}`'),
        ("daily", "schedule", "`after_dbt: true` or `manual`, not the text `daily`"),
    ],
)
def test_bad_schedules_name_file_line_and_key(
    project: Builder, schedule: dict[str, object] | str, key: str, words: str
) -> None:
    _project(project)
    project.sync("a", schedule=schedule)
    errors = _errors(project)
    assert any(e.startswith("syncs/a.yml:") and f": {key}: " in e and words in e for e in errors), (
        errors
    )


def test_validate_rejects_unknown_parents_and_cycles(project: Builder) -> None:
    _project(project)
    project.sync("a", schedule={"after": ["c"]})
    project.sync("b", schedule={"after": "a"})
    project.sync("c", schedule={"after": ["b", "nope"]})
    project.sync("d", schedule={"after": "d"})
    result = project.cli("validate", "--offline")
    assert result.returncode == 2, result.stdout + result.stderr
    err = " ".join(result.stderr.split())
    assert "syncs/c.yml:11: schedule.after.1: unknown sync `nope`" in err
    assert "syncs/d.yml:9: schedule.after: a sync cannot run after itself" in err
    # In run order: b runs after a, c after b, a after c.
    assert "syncs/a.yml:9: schedule.after: the sequence a → b → c → a is a cycle" in err
    assert err.count("is a cycle") == 1


def test_after_dbt_needs_the_dbt_project(project: Builder) -> None:
    _project(project)
    project.sync("a", schedule={"after_dbt": True})
    messages = [e.message for e in schedule_errors(project.load())]
    assert messages == [
        "syncs/a.yml:9: schedule.after_dbt: `after_dbt` needs the dbt project: set "
        "`dbt_project` in backhaul.yml"
    ]


def test_durations() -> None:
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("2d") == timedelta(days=2)
    assert parse_duration("45s") == timedelta(seconds=45)
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")


def _state(since: datetime, paused: bool = False) -> ScheduleState:
    return ScheduleState("s", since, paused, None, None, None, None)


def test_expected_slots() -> None:
    since = datetime(2030, 3, 1, 0, 0, tzinfo=UTC)
    every = ScheduleConfig(every="1h")
    assert expected_slot(every, _state(since), None) == since  # first run at once
    ran = since + timedelta(minutes=5)
    assert expected_slot(every, _state(since), ran) == ran + timedelta(hours=1)
    assert expected_slot(every, _state(since, paused=True), ran) is None
    # Cron in a time zone: 06:00 in Berlin is 05:00 UTC in winter, 04:00 UTC in summer.
    cron = ScheduleConfig(cron="0 6 * * *", timezone="Europe/Berlin")
    assert expected_slot(cron, _state(since), None) == datetime(2030, 3, 1, 5, 0, tzinfo=UTC)
    summer = datetime(2030, 7, 1, 12, 0, tzinfo=UTC)
    assert next_slot(cron, summer) == datetime(2030, 7, 2, 4, 0, tzinfo=UTC)
    # The spring change (Berlin, 2030-03-31): the slot after 06:00 on the 30th is 04:00 UTC.
    assert next_slot(cron, datetime(2030, 3, 30, 5, 0, tzinfo=UTC)) == datetime(
        2030, 3, 31, 4, 0, tzinfo=UTC
    )
    assert expected_slot(ScheduleConfig(after=["x"]), _state(since), None) is None
    assert expected_slot(ScheduleConfig(), _state(since), None) is None
