"""Server-side sign-in sessions, kept in the run store and checked on every request.

The browser holds only a random session id (inside the signed session cookie). The
``web_sessions`` row holds whose session it is, when it began and when it was last used,
under the SHA-256 of that id. Deleting the row ends the session at the very next request,
in every server process, because each request reads the row (one primary-key lookup) and
nothing about a session is cached. The rows are read and written by
:class:`backhaul.state.accounts.AccountStore`; the lifetimes are judged here.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from backhaul.clock import Clock
from backhaul.clock import utc_now
from backhaul.state.accounts import AccountStore
from backhaul.state.store import RunStore
from backhaul.web.auth import Role
from backhaul.web.auth import User

# Longest a session's last use may go unrecorded: a write on every request would turn
# each page view into a database write.
_MAX_TOUCH_INTERVAL = timedelta(minutes=1)


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
        self._accounts = AccountStore(store)
        self.lifetimes = lifetimes
        self._clock = clock

    def start(self, user_id: int) -> str:
        """A new session for ``user_id``; returns the id to hand to the browser.

        Sessions of any user that have already expired are deleted on the way, so the
        table holds about as many rows as there are live sessions.
        """
        session_id = secrets.token_urlsafe(32)
        now = self._clock()
        self._accounts.start_session(
            _digest(session_id),
            user_id,
            now,
            idle_since=now - self.lifetimes.idle_timeout,
            born_before=now - self.lifetimes.max_age,
        )
        return session_id

    def user_for(self, session_id: str) -> User | None:
        """The session's user when the session is live, else None (and an expired one ends)."""
        digest = _digest(session_id)
        found = self._accounts.session(digest)
        if found is None:
            return None
        now = self._clock()
        idle = now - found.last_seen_at
        if idle > self.lifetimes.idle_timeout or now - found.created_at > self.lifetimes.max_age:
            self._accounts.end_session(digest)
            return None
        if idle >= self.lifetimes.touch_interval:
            self._accounts.touch_session(digest, now)
        account = found.account
        return User(account.id, account.username, Role(account.role))

    def end(self, session_id: str) -> None:
        """End one session (nothing happens when it has already ended)."""
        self._accounts.end_session(_digest(session_id))

    def end_all(self, user_id: int) -> int:
        """End every session of ``user_id``; returns how many were live."""
        return self._accounts.end_sessions(user_id)
