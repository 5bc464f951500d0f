"""The web app's own data in the run store database: users, API tokens, the audit log and
sign-in sessions.

:class:`AccountStore` is the only code that touches those tables. It stores what it is
given (password and token hashes, never secrets) and knows nothing of hashing or roles
beyond their names: :mod:`backhaul.web.users` and :mod:`backhaul.web.sessions` hold those
rules. Removing a user and changing a password or a role end that user's sessions in the
same transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy import Row
from sqlalchemy import delete
from sqlalchemy import insert
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from backhaul.state.store import RunStore
from backhaul.state.tables import api_tokens
from backhaul.state.tables import audit_log
from backhaul.state.tables import sign_in_failures
from backhaul.state.tables import users
from backhaul.state.tables import web_sessions


@dataclass(frozen=True, slots=True)
class Account:
    """A user as stored: id, name and the name of their role."""

    id: int
    username: str
    role: str


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """An API token as listed (never the token itself)."""

    id: int
    username: str
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One line of the audit log."""

    id: int
    at: datetime
    actor: str | None
    action: str
    target: str | None
    details: dict[str, Any]
    ip: str | None


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A sign-in session as stored, with its user."""

    account: Account
    created_at: datetime
    last_seen_at: datetime


class AccountStore:
    """Reads and writes users, tokens, audit entries and sessions. Safe to share between
    threads; each method is one short transaction.

    Args:
        store: An open (migrated) run store; its database holds the tables.
    """

    def __init__(self, store: RunStore) -> None:
        self._engine = store.engine

    # -- users ---------------------------------------------------------------------------

    def add_user(
        self, username: str, password_hash: str, role: str, created_at: datetime
    ) -> int | None:
        """Insert a user and return its id; None when the name is taken."""
        values = {
            "username": username,
            "password_hash": password_hash,
            "role": role,
            "created_at": created_at,
        }
        try:
            with self._engine.begin() as conn:
                new_id = conn.execute(insert(users).values(values)).inserted_primary_key
        except IntegrityError:
            return None
        assert new_id is not None
        return int(new_id[0])

    def user(self, username: str) -> Account | None:
        """The user called ``username``, or None."""
        with self._engine.connect() as conn:
            row = conn.execute(_ACCOUNT.where(users.c.username == username)).first()
        return _account(row) if row else None

    def users(self) -> list[Account]:
        """Every user, by name."""
        with self._engine.connect() as conn:
            return [_account(r) for r in conn.execute(_ACCOUNT.order_by(users.c.username))]

    def credentials(self, username: str) -> tuple[Account, str] | None:
        """The user and their stored password hash, or None."""
        with self._engine.connect() as conn:
            row = conn.execute(select(users).where(users.c.username == username)).first()
        return (_account(row), str(row.password_hash)) if row else None

    def rehash(self, user_id: int, password_hash: str) -> None:
        """Store a stronger hash of the same password (sessions stay)."""
        with self._engine.begin() as conn:
            conn.execute(
                update(users).where(users.c.id == user_id).values(password_hash=password_hash)
            )

    def remove_user(self, username: str) -> bool:
        """Delete a user, their tokens and sessions; False when there was no such user."""
        with self._engine.begin() as conn:
            found = _user_id(conn, username)
            if found is None:
                return False
            _end_sessions(conn, found)
            conn.execute(delete(api_tokens).where(api_tokens.c.user_id == found))
            conn.execute(delete(users).where(users.c.id == found))
        return True

    def set_role(self, username: str, role: str) -> bool:
        """Change a user's role, ending their sessions when it really changes; False when
        there is no such user."""
        with self._engine.begin() as conn:
            found = conn.execute(
                select(users.c.id, users.c.role).where(users.c.username == username)
            ).first()
            if found is None:
                return False
            if found.role != role:
                conn.execute(update(users).where(users.c.id == found.id).values(role=role))
                _end_sessions(conn, found.id)
        return True

    def set_password(self, username: str, password_hash: str) -> bool:
        """Replace a user's password hash and end their sessions; False for an unknown user."""
        with self._engine.begin() as conn:
            found = _user_id(conn, username)
            if found is None:
                return False
            conn.execute(
                update(users).where(users.c.id == found).values(password_hash=password_hash)
            )
            _end_sessions(conn, found)
        return True

    def end_user_sessions(self, username: str) -> int | None:
        """End every session of a user; how many were stored, or None for an unknown user."""
        with self._engine.begin() as conn:
            found = _user_id(conn, username)
            if found is None:
                return None
            return _end_sessions(conn, found)

    # -- tokens --------------------------------------------------------------------------

    def add_token(
        self, user_id: int, name: str, token_hash: str, prefix: str, created_at: datetime
    ) -> int:
        """Insert a token (its hash and first characters) and return its id."""
        with self._engine.begin() as conn:
            new_id = conn.execute(
                insert(api_tokens).values(
                    user_id=user_id,
                    name=name,
                    token_hash=token_hash,
                    prefix=prefix,
                    created_at=created_at,
                )
            ).inserted_primary_key
        assert new_id is not None
        return int(new_id[0])

    def token_owner(self, token_hash: str) -> Account | None:
        """The owner of the unrevoked token with this hash, else None."""
        query = _ACCOUNT.join(api_tokens, api_tokens.c.user_id == users.c.id).where(
            api_tokens.c.token_hash == token_hash, api_tokens.c.revoked_at.is_(None)
        )
        with self._engine.connect() as conn:
            row = conn.execute(query).first()
        return _account(row) if row else None

    def tokens(self, username: str | None = None) -> list[TokenInfo]:
        """Every token (of one user, or of all), oldest first."""
        query = (
            select(api_tokens, users.c.username)
            .join(users, api_tokens.c.user_id == users.c.id)
            .order_by(api_tokens.c.id)
        )
        if username is not None:
            query = query.where(users.c.username == username)
        with self._engine.connect() as conn:
            return [
                TokenInfo(r.id, r.username, r.name, r.prefix, r.created_at, r.revoked_at)
                for r in conn.execute(query)
            ]

    def revoke_token(self, token_id: int, at: datetime) -> bool:
        """Revoke a token by id; False when it does not exist or was already revoked."""
        with self._engine.begin() as conn:
            result = conn.execute(
                update(api_tokens)
                .where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
                .values(revoked_at=at)
            )
        return bool(result.rowcount)

    # -- audit ---------------------------------------------------------------------------

    def audit(
        self,
        at: datetime,
        actor: str | None,
        action: str,
        target: str | None,
        details: dict[str, Any],
        ip: str | None,
    ) -> None:
        """Append one entry to the audit log (the target cut to the column's 255 characters)."""
        with self._engine.begin() as conn:
            conn.execute(
                insert(audit_log).values(
                    at=at,
                    actor=actor,
                    action=action,
                    target=target[:255] if target else target,
                    details=json.dumps(details, sort_keys=True, default=str),
                    ip=ip,
                )
            )

    def audit_entries(self, limit: int = 100, offset: int = 0) -> list[AuditEntry]:
        """Audit entries, newest first."""
        query = (
            select(audit_log)
            .order_by(audit_log.c.at.desc(), audit_log.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        with self._engine.connect() as conn:
            return [
                AuditEntry(
                    r.id, r.at, r.actor, r.action, r.target, json.loads(r.details or "{}"), r.ip
                )
                for r in conn.execute(query)
            ]

    # -- sessions ------------------------------------------------------------------------

    def start_session(
        self,
        digest: str,
        user_id: int,
        now: datetime,
        *,
        idle_since: datetime,
        born_before: datetime,
    ) -> None:
        """Store a new session; on the way, delete every session last seen before
        ``idle_since`` or begun before ``born_before`` (they have expired)."""
        with self._engine.begin() as conn:
            conn.execute(
                delete(web_sessions).where(
                    or_(
                        web_sessions.c.last_seen_at < idle_since,
                        web_sessions.c.created_at < born_before,
                    )
                )
            )
            conn.execute(
                insert(web_sessions).values(
                    id=digest, user_id=user_id, created_at=now, last_seen_at=now
                )
            )

    def session(self, digest: str) -> SessionRecord | None:
        """The session stored under ``digest`` with its user, or None."""
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
        return SessionRecord(_account(row), row.created_at, row.last_seen_at)

    def touch_session(self, digest: str, now: datetime) -> None:
        """Record that the session was used at ``now`` (never moves its last use back)."""
        with self._engine.begin() as conn:
            conn.execute(
                update(web_sessions)
                .where(web_sessions.c.id == digest, web_sessions.c.last_seen_at < now)
                .values(last_seen_at=now)
            )

    def end_session(self, digest: str) -> None:
        """Delete one session (nothing happens when it is already gone)."""
        with self._engine.begin() as conn:
            conn.execute(delete(web_sessions).where(web_sessions.c.id == digest))

    def end_sessions(self, user_id: int) -> int:
        """Delete every session of ``user_id``; returns how many there were."""
        with self._engine.begin() as conn:
            return _end_sessions(conn, user_id)

    # -- failed sign-ins -------------------------------------------------------------------

    def sign_in_failed(self, address: str, name: str, at: datetime) -> None:
        """Count one failed sign-in from ``address`` for the user name ``name``."""
        with self._engine.begin() as conn:
            conn.execute(insert(sign_in_failures).values(address=address, name=name.lower(), at=at))

    def recent_sign_in_failures(
        self, address: str, since: datetime, name: str | None = None
    ) -> list[datetime]:
        """When sign-ins from ``address`` (for ``name``, if given) failed since ``since``,
        oldest first."""
        query = select(sign_in_failures.c.at).where(
            sign_in_failures.c.address == address, sign_in_failures.c.at >= since
        )
        if name is not None:
            query = query.where(sign_in_failures.c.name == name.lower())
        with self._engine.connect() as conn:
            return [row.at for row in conn.execute(query.order_by(sign_in_failures.c.at))]

    def forget_sign_in_failures(self, address: str, name: str) -> None:
        """Forget the failures of ``name`` from ``address`` (after it signed in)."""
        with self._engine.begin() as conn:
            conn.execute(
                delete(sign_in_failures).where(
                    sign_in_failures.c.address == address,
                    sign_in_failures.c.name == name.lower(),
                )
            )

    def prune_sign_in_failures(self, before: datetime) -> int:
        """Delete failures older than ``before`` (no limit looks that far back)."""
        with self._engine.begin() as conn:
            found = conn.execute(delete(sign_in_failures).where(sign_in_failures.c.at < before))
            return int(found.rowcount or 0)


_ACCOUNT = select(users.c.id, users.c.username, users.c.role)


def _account(row: Row[Any]) -> Account:
    return Account(int(row.id), str(row.username), str(row.role))


def _user_id(conn: Connection, username: str) -> int | None:
    found = conn.execute(select(users.c.id).where(users.c.username == username)).first()
    return int(found.id) if found is not None else None


def _end_sessions(conn: Connection, user_id: int) -> int:
    result = conn.execute(delete(web_sessions).where(web_sessions.c.user_id == user_id))
    return int(result.rowcount or 0)


__all__ = ["Account", "AccountStore", "AuditEntry", "SessionRecord", "TokenInfo"]
