"""Row logs under kill -9: a killed run's log shows only checkpointed rows, and the next
run turns it into Parquet without losing what it held."""

from __future__ import annotations

import psycopg
import pytest
from tests.engine.kill.test_kill import TOTAL
from tests.engine.kill.test_kill import KillProject
from tests.engine.kill.test_kill import kill_project  # noqa: F401  (the fixture)
from tests.engine.kill.test_kill import rerun
from tests.engine.kill.test_kill import rows_in_table
from tests.engine.kill.test_kill import run_and_kill

from backhaul import api
from backhaul.state.rowlog import PARQUET
from backhaul.state.rowlog import STREAM
from backhaul.state.rowlog import RowLogs
from backhaul.state.rowlog import read_stream

pytestmark = pytest.mark.slow


def test_a_killed_runs_row_log_holds_only_checkpointed_rows(
    kill_project: KillProject,  # noqa: F811
) -> None:
    kp = kill_project
    killed = run_and_kill(kp, rows_in_table(TOTAL // 2))
    assert killed.record is not None
    folder = RowLogs(kp.root / ".backhaul" / "row_logs").folder(killed.record.run_id)

    logged: list[str] = []
    if killed.killed and killed.running:
        # As the kill left it: a stream, maybe with a torn last message that is left out.
        assert (folder / STREAM).exists() or not folder.exists()
        for batch in read_stream(folder / STREAM):
            logged += [str(k) for k in batch.column("key").to_pylist()]
    with psycopg.connect(kp.url) as conn:
        delivered = {str(r[0]) for r in conn.execute("SELECT id FROM people")}
    # Nothing in the log that the destination does not have, nor more than was checkpointed.
    assert set(logged) <= delivered
    assert len(logged) == len(set(logged)) <= killed.acked

    last = rerun(kp, killed)

    # The next run (holding the sync's lock) turned the stream into Parquet, losing nothing.
    assert not (folder / STREAM).exists()
    with api.open_store(api.load_project(kp.root)) as store:
        if logged:
            assert (folder / PARQUET).exists()
        ok = store.rows(killed.record.run_id, status="ok", limit=TOTAL)
        assert sorted(r.key for r in ok) == sorted(logged) or not killed.running
        mine = store.rows(last.run_id, status="ok", limit=TOTAL)
        assert len(mine) == last.counts.succeeded
    # Shown with `pytest -s`: where the kill landed.
    print(
        f"\n[row log kill] killed={killed.killed} running={killed.running} "
        f"acked={killed.acked} logged={len(logged)} next_run_ok={len(mine)}"
    )
