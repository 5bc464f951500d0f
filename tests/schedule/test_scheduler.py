"""The scheduler against real runs: intervals, cron in a time zone, sequences with several
parents, pause and resume, and one start per slot however many schedulers share a store.

Ticks are given explicit times (the clock is a parameter); the runs are real runs of a
DuckDB model into a SQLite table, started by the in-process launcher.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC
from datetime import datetime
from datetime import timedelta

import pytest
from tests.conftest import Builder
from tests.conftest import sqlite_rows

from backhaul import api
from backhaul.schedule.local import LocalLauncher
from backhaul.schedule.scheduler import Scheduler
from backhaul.schedule.timetable import Timetable

pytestmark = pytest.mark.integration


def _project(project: Builder, **schedules: object) -> None:
    # A new interval schedule is due at once (the first-run spread has a test of its own).
    project.write("backhaul.yml", {"name": "t", "scheduler": {"spread_first_runs_seconds": 0}})
    project.users(5)
    project.destination("db", type="sqlite", path="dest.sqlite", create_table=True)
    for name, schedule in schedules.items():
        project.sync(name, object=name, schedule=schedule)


@contextmanager
def scheduler(project: Builder) -> Iterator[tuple[Scheduler, LocalLauncher]]:
    loaded = project.load()
    with api.open_store(loaded) as store:
        launcher = LocalLauncher(loaded, store, max_parallel=2)
        try:
            yield Scheduler(loaded, store, launcher), launcher
        finally:
            launcher.close()


def _tick(found: Scheduler, launcher: LocalLauncher, at: datetime) -> list[str]:
    started = [launch.sync for launch in found.tick(at)]
    assert launcher.wait(120)
    return started


def _runs(project: Builder, sync: str) -> list[str]:
    with api.open_store(project.load()) as store:
        return [r.trigger for r in store.runs(sync, limit=100)]


def test_interval_runs_at_once_then_every_interval(project: Builder) -> None:
    _project(project, hourly={"every": "1h"}, by_hand="manual")
    now = datetime.now(UTC)
    with scheduler(project) as (found, launcher):
        assert _tick(found, launcher, now) == ["hourly"]
        assert sqlite_rows(project.root / "dest.sqlite", "hourly")[0][0] == 1
        assert len(sqlite_rows(project.root / "dest.sqlite", "hourly")) == 5
        assert _tick(found, launcher, now + timedelta(minutes=30)) == []
        expected = found.timetable.expected("hourly")
        assert expected is not None and now + timedelta(minutes=59) < expected
        assert _tick(found, launcher, expected - timedelta(seconds=1)) == []
        assert _tick(found, launcher, expected) == ["hourly"]
        again = found.timetable.expected("hourly")
        assert again is not None and again > expected
        assert _tick(found, launcher, again - timedelta(seconds=1)) == []
    assert _runs(project, "hourly") == ["schedule", "schedule"]
    assert _runs(project, "by_hand") == []


def test_cron_in_a_time_zone(project: Builder) -> None:
    _project(project, morning={"cron": "0 6 * * *", "timezone": "America/New_York"})
    now = datetime.now(UTC)
    with scheduler(project) as (found, launcher):
        assert _tick(found, launcher, now) == []
        slot = found.timetable.expected("morning")
        assert slot is not None
        local = slot.astimezone(__import__("zoneinfo").ZoneInfo("America/New_York"))
        assert (local.hour, local.minute) == (6, 0)
        assert _tick(found, launcher, slot - timedelta(seconds=1)) == []
        assert _tick(found, launcher, slot + timedelta(seconds=1)) == ["morning"]
        # Started (wall clock) before the slot it was due at: the slot counts as taken.
        assert _tick(found, launcher, slot + timedelta(seconds=2)) == []


def test_sequence_waits_for_every_parent(project: Builder) -> None:
    _project(project, a="manual", b="manual", child={"after": ["a", "b"]})
    start = datetime.now(UTC) - timedelta(seconds=1)
    with scheduler(project) as (found, launcher):
        assert _tick(found, launcher, start) == []  # the sequence is known from here on
        project.run("a")
        assert _tick(found, launcher, datetime.now(UTC)) == []  # b has not delivered
        project.run("b")
        assert _tick(found, launcher, datetime.now(UTC)) == ["child"]
        assert _tick(found, launcher, datetime.now(UTC)) == []  # once per delivery
        project.run("a")
        assert _tick(found, launcher, datetime.now(UTC)) == []  # a again, b not yet
        project.run("b")
        assert _tick(found, launcher, datetime.now(UTC)) == ["child"]
    assert _runs(project, "child") == ["schedule", "schedule"]


def test_a_failed_parent_does_not_start_the_sequence(project: Builder) -> None:
    _project(project, a="manual", child={"after": "a"})
    start = datetime.now(UTC) - timedelta(seconds=1)
    with scheduler(project) as (found, launcher):
        _tick(found, launcher, start)
        project.model(
            "users", "SELECT * FROM users WHERE CASE WHEN id = 3 THEN error('boom') ELSE true END"
        )
        assert project.run("a").status.value == "failed"
        assert _tick(found, launcher, datetime.now(UTC)) == []


def test_pause_and_resume(project: Builder) -> None:
    _project(project, often={"every": "10m"})
    now = datetime.now(UTC)
    loaded = project.load()
    with api.open_store(loaded) as store:
        assert api.pause(loaded, "often", store=store, by="test")
        assert not api.pause(loaded, "often", store=store, by="test")
    with scheduler(project) as (found, launcher):
        assert _tick(found, launcher, now + timedelta(hours=5)) == []
        assert found.timetable.expected("often") is None
        assert found.timetable.next_runs()["often"].label() == "paused"
    result = project.cli("resume", "often")
    assert result.returncode == 0 and "often: resumed" in result.stdout
    with scheduler(project) as (found, launcher):
        assert _tick(found, launcher, datetime.now(UTC)) == ["often"]
    listing = project.cli("schedules")
    assert "every 10m" in listing.stdout and "in 10 min" in listing.stdout, listing.stdout


def test_two_schedulers_start_a_slot_once(project: Builder) -> None:
    _project(project, s1={"every": "1h"}, s2={"every": "1h"})
    now = datetime.now(UTC)
    with scheduler(project) as (one, l1), scheduler(project) as (two, l2):
        started = [x.sync for x in one.tick(now)] + [x.sync for x in two.tick(now)]
        assert l1.wait(120) and l2.wait(120)
    assert sorted(started) == ["s1", "s2"]
    assert len(_runs(project, "s1")) == 1 and len(_runs(project, "s2")) == 1


def test_scheduler_once_from_the_command_line(project: Builder) -> None:
    _project(project, hourly={"every": "1h"}, seq={"after": "hourly"})
    first = project.cli("scheduler", "--once")
    assert first.returncode == 0, first.stderr
    assert "started hourly (every 1h)" in first.stderr
    assert len(sqlite_rows(project.root / "dest.sqlite", "hourly")) == 5
    second = project.cli("scheduler", "--once")  # the child sees its parent's delivery
    assert "started seq (after hourly)" in second.stderr, second.stderr
    assert "hourly" not in second.stderr.replace("after hourly", "")


def test_scheduler_refuses_a_cycle(project: Builder) -> None:
    _project(project, a={"after": "b"}, b={"after": "a"})
    result = project.cli("scheduler", "--once")
    assert result.returncode == 2
    assert "is a cycle" in result.stderr


def test_timetable_reads_what_the_scheduler_acts_on(project: Builder) -> None:
    _project(project, hourly={"every": "1h"}, seq={"after": "hourly"}, by_hand="manual")
    loaded = project.load()
    with api.open_store(loaded) as store:
        upcoming = Timetable(loaded, store).next_runs()
    assert upcoming["hourly"].at is not None and upcoming["hourly"].label().startswith("due")
    assert upcoming["seq"].label() == "after hourly"
    assert upcoming["by_hand"].label() == "manual"


def test_first_runs_of_new_interval_schedules_spread_over_a_fixed_offset(
    project: Builder,
) -> None:
    project.users(5)
    project.destination("db", type="sqlite", path="dest.sqlite", create_table=True)
    names = [f"s{i:02d}" for i in range(12)]
    for name in names:
        project.sync(name, object=name, schedule={"every": "10m"})
    project.sync("quick", object="quick", schedule={"every": "30s"})
    loaded = project.load()  # the default spread: within 5 minutes, or the interval
    with api.open_store(loaded) as store:
        known = datetime.now(UTC)
        Timetable(loaded, store).states.ensure([*names, "quick"], known)

        def offset(timetable: Timetable, name: str) -> timedelta:
            at = timetable.expected(name)
            assert at is not None
            return at - known

        offsets = {n: offset(Timetable(loaded, store), n) for n in names}
        again = {n: offset(Timetable(loaded, store), n) for n in names}
        quick = offset(Timetable(loaded, store), "quick")
    assert offsets == again  # fixed by the name, not by the process
    assert all(timedelta(0) <= o < timedelta(minutes=5) for o in offsets.values())
    assert len(set(offsets.values())) == len(names)  # not all at once
    assert max(offsets.values()) - min(offsets.values()) > timedelta(minutes=2)
    assert timedelta(0) <= quick < timedelta(seconds=30)  # within a shorter interval
    # The scheduler starts only those whose offset has passed.
    with scheduler(project) as (found, launcher):
        at = known + timedelta(minutes=2)
        started = _tick(found, launcher, at)
    assert sorted(started) == sorted([n for n, o in offsets.items() if known + o <= at] + ["quick"])
