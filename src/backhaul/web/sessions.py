"""Server-side sign-in sessions, kept in the run store and checked on every request.

The browser holds only a random session id (inside the signed session cookie). The
``web_sessions`` row holds whose session it is, when it began and when it was last used,
under the SHA-256 of that id. Deleting the row ends the session at the very next request,
in every server process, because each request reads the row (one primary-key lookup) and
nothing about a session is cached.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, delete, insert, or_, select, update

from backhaul.state.store import RunStore
from backhaul.state.tables import users, web_sessions
from backhaul.web.auth import Role, User

Clock = Callable[[], datetime]

# Longest a session's last use may go unrecorded: a write on every request would turn
# each page view into a database write.
_MAX_TOUCH_INTERVAL = timedelta(minutes=1)


def utc_now() -> datetime:
    """The current time in UTC (the default clock)."""
    return datetime.now(UTC)


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class SessionLifetimes:
    """How long a session lasts.

    Attributes:
        idle_timeout: A session unused this long ends.
        max_age: A session ends this long after sign-in, however busy it is.
    """

    idle_timeout: timedelta
    max_age: timedelta

    @property
    def touch_interval(self) -> timedelta:
        """How stale the recorded last use may get before a request rewrites it."""
        return min(_MAX_TOUCH_INTERVAL, self.idle_timeout / 10)


def end_user_sessions(conn: Connection, user_id: int) -> int:
    """Delete every session of ``user_id`` inside the caller's transaction; returns how many."""
    result = conn.execute(delete(web_sessions).where(web_sessions.c.user_id == user_id))
    return int(result.rowcount or 0)


class SessionStore:
    """Starts, checks and ends sessions. Safe to share between threads.

    Args:
        store: An open (migrated) run store; its database holds the sessions.
        lifetimes: The idle and absolute timeouts.
        clock: Returns the current UTC time; tests pass one they can move.
    """

    def __init__(
        self, store: RunStore, lifetimes: SessionLifetimes, clock: Clock = utc_now
    ) -> None:
        self._engine = store.engine
        self.lifetimes = lifetimes
        self._clock = clock

    def start(self, user_id: int) -> str:
        """A new session for ``user_id``; returns the id to hand to the browser.

        Sessions of any user that have already expired are deleted on the way, so the
        table holds about as many rows as there are live sessions.
        """
        session_id = secrets.token_urlsafe(32)
        now = self._clock()
        with self._engine.begin() as conn:
            conn.execute(
                delete(web_sessions).where(
                    or_(
                        web_sessions.c.last_seen_at < now - self.lifetimes.idle_timeout,
                        web_sessions.c.created_at < now - self.lifetimes.max_age,
                    )
                )
            )
            conn.execute(
                insert(web_sessions).values(
                    id=_digest(session_id), user_id=user_id, created_at=now, last_seen_at=now
                )
            )
        return session_id

    def user_for(self, session_id: str) -> User | None:
        """The session's user when the session is live, else None (and an expired one ends)."""
        digest = _digest(session_id)
        query = (
            select(
                users.c.id,
                users.c.username,
                users.c.role,
                web_sessions.c.created_at,
                web_sessions.c.last_seen_at,
            )
            .join(users, users.c.id == web_sessions.c.user_id)
            .where(web_sessions.c.id == digest)
        )
        with self._engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        now = self._clock()
        idle = now - row.last_seen_at
        if idle > self.lifetimes.idle_timeout or now - row.created_at > self.lifetimes.max_age:
            self._delete(digest)
            return None
        if idle >= self.lifetimes.touch_interval:
            with self._engine.begin() as conn:
                conn.execute(
                    update(web_sessions)
                    .where(web_sessions.c.id == digest, web_sessions.c.last_seen_at < now)
                    .values(last_seen_at=now)
                )
        return User(row.id, row.username, Role(row.role))

    def end(self, session_id: str) -> None:
        """End one session (nothing happens when it has already ended)."""
        self._delete(_digest(session_id))

    def end_all(self, user_id: int) -> int:
        """End every session of ``user_id``; returns how many were live."""
        with self._engine.begin() as conn:
            return end_user_sessions(conn, user_id)

    def _delete(self, digest: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(delete(web_sessions).where(web_sessions.c.id == digest))
