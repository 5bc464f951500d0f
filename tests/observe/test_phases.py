"""A run announces each of its phases, in order, as a typed :class:`RunPhase`."""

from __future__ import annotations

import pytest

from backhaul.observe.events import PhaseStarted
from backhaul.observe.events import RunEvent
from backhaul.observe.events import RunPhase
from conftest import Builder

pytestmark = pytest.mark.integration


def _phases(project: Builder, sync: str) -> list[RunPhase]:
    seen: list[RunEvent] = []
    summary = project.run(sync, events=seen.append)
    assert summary.status.value == "succeeded", summary
    return [e.phase for e in seen if isinstance(e, PhaseStarted)]


def test_every_phase_is_announced_in_order(project: Builder) -> None:
    project.users(5)
    project.sql("CREATE TABLE audit (n BIGINT)")
    project.sqlite_destination()
    project.sync("s", hooks={"post": ["INSERT INTO audit VALUES ({{ run.succeeded }})"]})

    first = _phases(project, "s")

    assert first == [RunPhase.PLAN, RunPhase.SEND, RunPhase.COMMIT, RunPhase.HOOKS]
    assert all(isinstance(p, RunPhase) for p in first)
    assert project.sql("SELECT n FROM audit") == [(5,)]


def test_a_run_with_nothing_to_send_skips_send_and_hooks_need_post_hooks(
    project: Builder,
) -> None:
    project.users(3)
    project.sqlite_destination()
    project.sync("s")
    assert _phases(project, "s") == [RunPhase.PLAN, RunPhase.SEND, RunPhase.COMMIT]

    assert _phases(project, "s") == [RunPhase.PLAN, RunPhase.COMMIT]
