"""The web app's run manager: a run asked for while the last one closes up."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from typer.testing import CliRunner

from backhaul.api import load_project
from backhaul.cli.app import app as cli_app
from backhaul.observe.events import RunEvent
from backhaul.observe.events import RunFinished
from backhaul.state.store import RunStore
from backhaul.web.auth import Role
from backhaul.web.auth import User
from backhaul.web.cache import AnswerCache
from backhaul.web.runs import RunManager
from backhaul.web.users import UserStore

SYNC = "example_users_to_csv"
WAIT_S = 60.0  # a bound for a slow machine, never asserted on


def test_a_run_asked_for_as_the_last_one_closes_up_starts_instead_of_conflicting(
    tmp_path: Path,
) -> None:
    root = tmp_path / "project"
    created = CliRunner().invoke(cli_app, ["init", str(root)])
    assert created.exit_code == 0, created.output
    project = load_project(root)
    closing, release = threading.Event(), threading.Event()

    def slow_to_close(event: RunEvent) -> None:
        # After its progress says it finished, the first run's thread is held here, as a
        # slow alert channel or state file would hold it.
        if isinstance(event, RunFinished) and not closing.is_set():
            closing.set()
            release.wait(WAIT_S)

    user = User(id=1, username="ops", role=Role.OPERATOR)
    with RunStore.open(f"sqlite:///{root / '.backhaul' / 'backhaul.db'}") as store:
        runs = RunManager(project, store, UserStore(store), AnswerCache(), events=slow_to_close)
        try:
            first = runs.trigger(SYNC, full_resync=False, user=user)
            assert closing.wait(WAIT_S)
            finished = runs.progress(first)
            assert finished is not None and finished["status"] == "succeeded", finished
            assert [a["run_id"] for a in runs.active()] == [first]  # still closing up

            threading.Timer(0.3, release.set).start()
            second = runs.trigger(SYNC, full_resync=True, user=user)
            assert second != first
            end = time.monotonic() + WAIT_S
            while runs.running_syncs() and time.monotonic() < end:
                time.sleep(0.05)
        finally:
            release.set()
            runs.shutdown(WAIT_S)
        done = runs.progress(second)
        assert done is not None and done["status"] == "succeeded", done
        assert store.run(second) is not None
