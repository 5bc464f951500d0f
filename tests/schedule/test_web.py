"""Schedules in the web app: `backhaul serve`'s scheduler starts due runs, the overview and
sync pages show the real next run, and /api/v1 lists schedules and pauses and resumes them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field

import httpx
import pytest
from tests.conftest import Builder

from backhaul import api
from backhaul.testing.server import LoopbackServer
from backhaul.web.app import close_app
from backhaul.web.app import create_app
from backhaul.web.app import start_scheduler
from backhaul.web.auth import Role

pytestmark = pytest.mark.integration


@dataclass
class Served:
    url: str
    tokens: dict[Role, str]
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, role: Role) -> httpx.Client:
        found = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.tokens[role]}"}, timeout=30
        )
        self.clients.append(found)
        return found


@pytest.fixture
def served(project: Builder) -> Iterator[Served]:
    project.write(
        "backhaul.yml",
        {"name": "t", "scheduler": {"tick_seconds": 0.2, "spread_first_runs_seconds": 0}},
    )
    project.users(4)
    project.destination("db", type="sqlite", path="dest.sqlite", create_table=True)
    project.sync("hourly", object="hourly", schedule={"every": "1h"})
    project.sync(
        "nightly", object="nightly", schedule={"cron": "0 2 * * *", "timezone": "Asia/Tokyo"}
    )
    project.sync("after_hourly", object="after_hourly", schedule={"after": "hourly"})
    project.sync("by_hand", object="by_hand")
    app = create_app(project.root, scheduler=True)
    start_scheduler(app)  # what the app's lifespan does under `backhaul serve`
    tokens = {}
    for role in (Role.VIEWER, Role.OPERATOR):
        app.state.users.add(f"{role.value}-user", "password-123456", role)
        tokens[role], _ = app.state.users.create_token(f"{role.value}-user", "tests")
    server = LoopbackServer(app, name="backhaul-sched-web").start()
    found = Served(server.url, tokens)
    try:
        yield found
    finally:
        for client in found.clients:
            client.close()
        server.stop()
        close_app(app)


def _wait_for_runs(project: Builder, sync: str, n: int) -> None:
    for _ in range(600):  # bounded: the server's scheduler ticks every 0.2 s
        with api.open_store(project.load()) as store:
            done = [r for r in store.runs(sync, limit=10) if r.finished_at is not None]
        if len(done) >= n:
            return
        time.sleep(0.1)
    raise AssertionError(f"{sync} did not run {n} times")


def test_serve_runs_the_scheduler_and_shows_next_runs(project: Builder, served: Served) -> None:
    _wait_for_runs(project, "hourly", 1)  # due at once: started by the server's scheduler
    _wait_for_runs(project, "after_hourly", 1)  # then its sequence
    viewer = served.client(Role.VIEWER)
    schedules = {s["sync"]: s for s in viewer.get("/api/v1/schedules").json()}
    assert schedules["hourly"]["kind"] == "interval"
    assert schedules["hourly"]["next_run"].startswith("in ")
    assert schedules["nightly"]["schedule"] == "cron 0 2 * * * (Asia/Tokyo)"
    assert schedules["nightly"]["next_run_at"] is not None
    assert schedules["after_hourly"]["next_run"] == "after hourly"
    assert schedules["by_hand"] == {
        "sync": "by_hand",
        "schedule": "manual",
        "kind": "manual",
        "paused": False,
        "next_run_at": None,
        "next_run": "manual",
    }
    syncs = {s["name"]: s for s in viewer.get("/api/v1/syncs").json()}
    assert syncs["hourly"]["schedule"] == "every 1h" and syncs["hourly"]["next_run_at"]
    assert syncs["hourly"]["last_run"]["trigger"] == "schedule"
    page = viewer.get("/")
    assert page.status_code == 200
    assert "every 1h" in page.text and "after hourly" in page.text
    assert "the scheduler runs in this server" in page.text
    sync_page = viewer.get("/syncs/nightly")
    assert "cron 0 2 * * * (Asia/Tokyo)" in sync_page.text
    assert 'id="next-run">in ' in sync_page.text


def test_pause_and_resume_through_the_api(project: Builder, served: Served) -> None:
    viewer, operator = served.client(Role.VIEWER), served.client(Role.OPERATOR)
    assert viewer.post("/api/v1/syncs/nightly/pause").status_code == 403
    paused = operator.post("/api/v1/syncs/nightly/pause")
    assert paused.json() == {"sync": "nightly", "paused": True, "changed": True}
    assert operator.post("/api/v1/syncs/nightly/pause").json()["changed"] is False
    assert operator.post("/api/v1/syncs/nope/pause").status_code == 404
    schedules = {s["sync"]: s for s in viewer.get("/api/v1/schedules").json()}
    assert schedules["nightly"]["paused"] is True
    assert schedules["nightly"]["next_run_at"] is None
    assert "paused" in viewer.get("/syncs/nightly").text
    resumed = operator.post("/api/v1/syncs/nightly/resume")
    assert resumed.json() == {"sync": "nightly", "paused": False, "changed": True}
    listed = {s["name"]: s for s in viewer.get("/api/v1/syncs").json()}
    assert listed["nightly"]["paused"] is False and listed["nightly"]["next_run_at"]
    with api.open_store(project.load()) as store:
        from backhaul.web.users import UserStore

        actions = [e.action for e in UserStore(store).audit_entries(limit=10)]
    assert actions[:2] == ["schedule_resume", "schedule_pause"]
