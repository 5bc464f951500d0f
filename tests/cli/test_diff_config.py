"""`backhaul diff-config`: a real Git repository, real commits, the DuckDB warehouse, and
the command run as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from tests.conftest import Builder

pytestmark = pytest.mark.integration

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=root,
        env={**os.environ, **GIT_ENV},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def commit(root: Path, message: str) -> str:
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)
    return git(root, "rev-parse", "HEAD")


@pytest.fixture
def repo(project: Builder) -> Builder:
    """A committed project with one sync (`crm`) that has delivered its 20 rows."""
    project.users(20)
    project.sqlite_destination("db")
    project.sync("crm", model="users", destination="db")
    project.write(".gitignore", ".backhaul/\n*.duckdb\n*.duckdb.wal\n*.sqlite\n")
    git(project.root, "init", "-q", "-b", "main")
    commit(project.root, "first project")
    assert project.run("crm").counts.added == 20
    return project


def diff(project: Builder, *args: str) -> subprocess.CompletedProcess[str]:
    return project.cli("diff-config", *args)


def test_mode_change_is_said_in_words(repo: Builder) -> None:
    repo.sync("crm", model="users", destination="db", mode="mirror")

    done = diff(repo)

    assert done.returncode == 0, done.stderr
    assert "sync crm (changed)" in done.stdout
    assert (
        "mode upsert -> mirror: rows that leave the model will now be deleted at the destination"
        in done.stdout
    )
    assert "plan now: 0 to add, 0 to change, 0 to remove" in done.stdout


def test_added_mapping_plans_every_row_again(repo: Builder) -> None:
    maps = [
        {"column": "id", "field": "id"},
        {"column": "email", "field": "email"},
        {"column": "score", "field": "lead_score"},
    ]
    repo.sync("crm", model="users", destination="db", mappings=maps)

    done = diff(repo)

    assert done.returncode == 0, done.stderr
    assert (
        "mapping lead_score added (column score): every row will be sent again (20 rows)"
        in done.stdout
    )
    assert "plan now: 0 to add, 20 to change, 0 to remove" in done.stdout


def test_sync_added_and_removed(repo: Builder) -> None:
    repo.sync("crm_copy", model="users", destination="db")
    (repo.root / "syncs" / "crm.yml").unlink()

    done = diff(repo)

    assert done.returncode == 0, done.stderr
    assert "sync crm (removed)" in done.stdout
    assert "its snapshot stays until `backhaul reset`" in done.stdout
    assert "sync crm_copy (added)" in done.stdout
    assert "plan now: 20 to add, 0 to change, 0 to remove" in done.stdout


def test_changed_model_sql_marks_its_syncs_changed(repo: Builder) -> None:
    repo.write("models/users.sql", "SELECT * FROM users WHERE id <= 15\n")

    done = diff(repo)

    assert done.returncode == 0, done.stderr
    assert "model users: SQL changed" in done.stdout
    assert "sync crm (changed)" in done.stdout
    assert "uses what changed: model users" in done.stdout
    assert "plan now: 0 to add, 0 to change, 5 to remove" in done.stdout


def test_a_changed_default_concerns_syncs_without_their_own(repo: Builder) -> None:
    repo.sync("own_guard", model="users", destination="db", max_remove_pct=50)
    commit(repo.root, "a sync with its own guard")
    repo.write("backhaul.yml", {"name": "t", "defaults": {"max_remove_pct": 5}})

    out = diff(repo, "--no-plan").stdout

    assert "project t: default max_remove_pct 20 -> 5" in out
    assert "sync crm (changed)" in out
    assert "uses what changed: backhaul.yml defaults.max_remove_pct" in out
    assert "own_guard" not in out


def test_schedule_enabled_guards_and_alerts_in_words(repo: Builder) -> None:
    repo.sync(
        "crm",
        model="users",
        destination="db",
        schedule={"every": "1h"},
        alerts={"rules": {"sla": {"minutes": 5}}},
    )
    commit(repo.root, "hourly")
    repo.sync(
        "crm",
        model="users",
        destination="db",
        schedule={"cron": "0 6 * * *"},
        enabled=False,
        max_remove_pct=5,
        on_remove="delete",
        alerts={"rules": {"sla": {"minutes": 10}}},
        description="Contacts for sales",
    )

    out = diff(repo, "--no-plan").stdout

    assert "schedule every 1h -> cron 0 6 * * *" in out
    assert "enabled true -> false: the scheduler will stop running it" in out
    assert "max_remove_pct default -> 5: a run that would remove more than 5%" in out
    assert "on_remove default -> delete: rows that leave the model will now be deleted" in out
    assert "alert rule sla: minutes 5 -> minutes 10" in out
    assert "description: default -> Contacts for sales" in out  # no rule: key: old -> new
    assert "plan now" not in out


def test_destination_change_shows_references_never_values(repo: Builder) -> None:
    repo.destination(
        "hook",
        type="webhook",
        url="http://127.0.0.1:9/in",
        headers={"Authorization": "${env:HOOK_TOKEN}", "X-Api-Key": "hush-plain-1"},
        rate_limit={"requests": 100, "per_seconds": 10},
    )
    commit(repo.root, "hook")
    repo.destination(
        "hook",
        type="webhook",
        url="http://127.0.0.1:9/in",
        headers={"Authorization": "${env:OTHER_TOKEN}", "X-Api-Key": "hush-plain-2"},
        rate_limit={"requests": 150, "per_seconds": 10},
    )

    done = repo.cli(
        "diff-config", env={"HOOK_TOKEN": "hush-old-value", "OTHER_TOKEN": "hush-new-value"}
    )

    assert done.returncode == 0, done.stderr
    assert "destination hook: rate_limit 100/10s -> 150/10s" in done.stdout
    assert "headers.Authorization: ${env:HOOK_TOKEN} -> ${env:OTHER_TOKEN}" in done.stdout
    assert "headers.X-Api-Key: *** -> ***" in done.stdout  # written in plain text: masked
    assert "hush" not in done.stdout + done.stderr


def test_a_destination_that_now_writes_elsewhere_says_only_changes_travel(repo: Builder) -> None:
    repo.destination("db", type="sqlite", path="other.sqlite", table="contacts", create_table=True)

    done = diff(repo)

    assert done.returncode == 0, done.stderr
    line = next(ln for ln in done.stdout.splitlines() if "path dest.sqlite -> other.sqlite" in ln)
    assert "records go elsewhere; only changes travel" in line
    assert "`backhaul run --full-resync` sends every row" in line


def test_old_revision_that_does_not_load(repo: Builder) -> None:
    repo.write("backhaul.yml", "name: [unclosed\n")
    commit(repo.root, "broken project file")
    repo.write("backhaul.yml", {"name": "t"})

    done = diff(repo)

    assert done.returncode == 0, done.stderr
    assert "The project at HEAD does not load" in done.stdout
    assert "sync crm (added)" in done.stdout


def test_old_sync_file_that_did_not_load(repo: Builder) -> None:
    repo.sync("crm", model="users", destination="db", mode="sideways")
    commit(repo.root, "broken sync")
    repo.sync("crm", model="users", destination="db")

    done = diff(repo)

    assert done.returncode == 0, done.stderr
    assert "did not load at HEAD; loads now" in done.stdout


def test_bad_revision_is_one_line_and_exit_2(repo: Builder) -> None:
    done = diff(repo, "no-such-branch")

    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "unknown revision `no-such-branch`" in lines[0]


def test_unknown_format_is_exit_2(repo: Builder) -> None:
    done = diff(repo, "--format", "yaml")

    assert done.returncode == 2
    assert done.stderr.strip() == "error: --format takes `text`, `markdown` or `json`, not `yaml`"


def test_not_a_repository_is_exit_2(project: Builder) -> None:
    project.users(3)
    project.sqlite_destination("db")
    project.sync("crm")

    done = project.cli("diff-config")

    assert done.returncode == 2
    assert "is not in a Git repository" in done.stderr


def test_no_changes(repo: Builder) -> None:
    done = diff(repo)

    assert done.returncode == 0, done.stderr
    assert "No changes." in done.stdout


def test_two_revisions_and_the_working_tree_untouched(repo: Builder) -> None:
    first = git(repo.root, "rev-parse", "HEAD")
    repo.sync("crm", model="users", destination="db", mode="mirror")
    commit(repo.root, "mirror")
    repo.sync("crm", model="users", destination="db", mode="insert")  # left uncommitted

    done = diff(repo, first, "--to", "HEAD")

    assert done.returncode == 0, done.stderr
    assert "mode upsert -> mirror" in done.stdout
    assert "insert" not in done.stdout
    assert "mode: insert" in (repo.root / "syncs" / "crm.yml").read_text()
    assert git(repo.root, "status", "--porcelain") == "M syncs/crm.yml"


def test_markdown_is_a_pull_request_comment(repo: Builder) -> None:
    repo.write("models/users.sql", "SELECT * FROM users WHERE id <= 15\n")
    repo.sync("crm_copy", model="users", destination="db")

    done = diff(repo, "--format", "markdown")

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "## Backhaul configuration review"
    header = lines.index("| sync | status | to add | to change | to remove |")
    assert lines[header + 2 : header + 4] == [
        "| `crm` | changed | 0 | 0 | 5 |",
        "| `crm_copy` | added | 15 | 0 | 0 |",
    ]
    assert "### Sync `crm` (changed)" in lines
    assert "### Sync `crm_copy` (added)" in lines
    assert "### Other definitions" in lines
    assert "- model users: SQL changed: rows whose mapped values change will be sent" in lines


def test_json_has_the_documented_shape(repo: Builder) -> None:
    repo.sync("crm", model="users", destination="db", mode="mirror")
    repo.write("models/users.sql", "SELECT * FROM users WHERE id <= 18\n")

    done = diff(repo, "--format", "json")

    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["version"] == 1
    assert data["from"] == {
        "revision": "HEAD",
        "commit": git(repo.root, "rev-parse", "HEAD"),
        "loads": True,
        "error": None,
    }
    assert data["to"] == {"revision": "working tree", "commit": None}
    [sync] = data["syncs"]
    assert sync["name"] == "crm"
    assert sync["status"] == "changed"
    assert sync["because"] == ["model users"]
    [mode] = sync["changes"]
    assert mode == {
        "scope": "sync",
        "name": "crm",
        "key": "mode",
        "old": "upsert",
        "new": "mirror",
        "text": "mode upsert -> mirror",
        "consequence": "rows that leave the model will now be deleted at the destination",
    }
    assert sync["plan"] == {
        "added": 0,
        "changed": 0,
        "removed": 2,
        "retried": 0,
        "invalid": 0,
        "errors": [],
    }
    assert [(d["scope"], d["name"], d["key"]) for d in data["definitions"]] == [
        ("model", "users", "sql")
    ]


def test_sync_failing_its_checks_shows_errors(repo: Builder) -> None:
    maps = [{"column": "id", "field": "id"}, {"column": "no_such_column", "field": "x"}]
    repo.sync("crm", model="users", destination="db", mappings=maps)

    done = diff(repo)

    assert done.returncode == 0, done.stderr
    assert "cannot plan:" in done.stdout
    assert "no_such_column" in done.stdout


def test_definition_broken_in_the_working_tree(repo: Builder) -> None:
    repo.write("models/users.yml", {"source": "wh", "primary_key": "id", "colour": "blue"})

    done = diff(repo)

    assert done.returncode == 0, done.stderr
    assert "model users: does not load now: models/users.yml" in done.stdout
    assert "sync crm (changed)" in done.stdout
    assert "uses what changed: model users" in done.stdout
    assert "cannot plan:" in done.stdout


def test_a_link_leading_out_of_the_repository_is_left_out(repo: Builder) -> None:
    (repo.root / "notes").mkdir()
    (repo.root / "notes" / "elsewhere").symlink_to("/etc")
    commit(repo.root, "a link out")
    repo.sync("crm", model="users", destination="db", mode="mirror")

    done = diff(repo)

    assert done.returncode == 0, done.stderr
    assert "mode upsert -> mirror" in done.stdout


def test_leaving_mirror_mode_says_removals_stop(repo: Builder) -> None:
    repo.sync("crm", model="users", destination="db", mode="mirror")
    commit(repo.root, "mirror")
    repo.sync("crm", model="users", destination="db", mode="upsert")

    out = diff(repo, "--no-plan").stdout

    assert (
        "mode mirror -> upsert: records will be created or updated; "
        "rows that leave the model are no longer deleted"
    ) in out
