"""The web app follows the project's files: a change made outside this process (a `git
pull`, an editor, a save through another `serve` worker) is picked up without a restart.

At most once every ``reload_seconds``, a request first looks at the project's files (their
names, sizes and modification times: a few hundred ``stat`` calls, no reading). When they
changed, the project is loaded again and becomes the app's project for the pages, the API
and Run now. A project that no longer loads keeps the app on the last good one, and the
problem is logged once per change.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from backhaul.config.project import Project
from backhaul.errors import ConfigError
from backhaul.gitinfo import PROJECT_PATHS

log = logging.getLogger("backhaul.web")

#: What makes a project: everything else in its folder (state, targets, notes) is ignored.
WATCHED = PROJECT_PATHS


def fingerprint(root: Path) -> tuple[tuple[str, int, int], ...]:
    """Each project file's path, size and modification time, in a stable order."""
    found: list[tuple[str, int, int]] = []
    for name in WATCHED:
        top = root / name
        if top.is_file():
            st = top.stat()
            found.append((name, st.st_size, st.st_mtime_ns))
            continue
        for folder, dirs, files in os.walk(top):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for file in sorted(files):
                path = os.path.join(folder, file)
                try:
                    st = os.stat(path)
                except OSError:
                    continue  # gone between the listing and the stat
                found.append((os.path.relpath(path, root), st.st_size, st.st_mtime_ns))
    return tuple(found)


class ProjectWatcher:
    """Tells, at most once per ``interval`` seconds, whether the project's files changed."""

    def __init__(self, root: Path, interval: float) -> None:
        self.root = root
        self.interval = interval
        self._seen = fingerprint(root)
        self._checked = time.monotonic()
        self._lock = threading.Lock()

    def changed(self) -> bool:
        """True once for each change seen (thread-safe; cheap between looks)."""
        now = time.monotonic()
        if now - self._checked < self.interval:
            return False
        with self._lock:
            if now - self._checked < self.interval:
                return False
            self._checked = now
            current = fingerprint(self.root)
            if current == self._seen:
                return False
            self._seen = current
            return True


def adopt(state: Any, project: Project) -> None:
    """Make ``project`` the app's project: pages, API, Run now and their caches."""
    from backhaul.schedule.timetable import Timetable

    state.project = project
    state.runs.project = project
    state.runs.timetable = state.timetable = Timetable(project, state.store)
    state.cache.invalidate()


def reload_if_changed(state: Any) -> None:
    """Load the project again when its files changed since the last look."""
    watcher: ProjectWatcher | None = getattr(state, "watcher", None)
    if watcher is None or not watcher.changed():
        return
    from backhaul.api import load_project

    try:
        project = load_project(watcher.root)
    except ConfigError as exc:
        first = exc.message.splitlines()[0] if exc.message else "invalid project"
        log.warning("project files changed but do not load; keeping the last good one: %s", first)
        return
    adopt(state, project)
    log.info("project files changed: loaded again (%d syncs)", len(project.syncs))


__all__ = ["ProjectWatcher", "adopt", "fingerprint", "reload_if_changed"]
