"""Users, API tokens and the audit log, kept in the run store database.

Passwords are hashed with argon2id; API tokens are random 32-byte strings of which only a
SHA-256 hash is stored, so neither can be read back from the database. Removing a user and
changing a password or a role end that user's sign-in sessions in the same transaction;
API tokens are left alone (revoke them separately).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from backhaul.errors import BackhaulError
from backhaul.state.store import RunStore
from backhaul.state.tables import api_tokens, audit_log, users
from backhaul.web.auth import Role, User
from backhaul.web.sessions import end_user_sessions

TOKEN_PREFIX = "bh_"
USERNAME = re.compile(r"^[A-Za-z0-9_.@\-]{1,64}$")
MIN_PASSWORD = 8
# A hash to verify against when the user does not exist, so a login for an unknown name
# costs as much time as one with a wrong password.
_HASHER = PasswordHasher()
_DUMMY_HASH = _HASHER.hash("backhaul-not-a-user")


class UserError(BackhaulError):
    """A user or token operation was refused (unknown name, duplicate, weak password)."""


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


def engine_of(store: RunStore) -> Engine:
    """The SQLAlchemy engine behind a run store (shared, so one pool serves both)."""
    return store.engine


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class UserStore:
    """Reads and writes users, tokens and audit entries. Safe to share between threads.

    Args:
        store: An open (migrated) run store; its database holds the tables.
    """

    def __init__(self, store: RunStore) -> None:
        self._engine = engine_of(store)

    # -- users ---------------------------------------------------------------------------

    def add(self, username: str, password: str, role: Role) -> User:
        """Create a user. Raises UserError for a bad name, a short password or a duplicate."""
        if not USERNAME.match(username):
            raise UserError(f"invalid username {username!r}: use 1-64 letters, digits, and _ . @ -")
        _check_password(password)
        values = {
            "username": username,
            "password_hash": _HASHER.hash(password),
            "role": Role(role).value,
            "created_at": _now(),
        }
        try:
            with self._engine.begin() as conn:
                result = conn.execute(insert(users).values(values))
                new_id = result.inserted_primary_key
        except IntegrityError:
            raise UserError(f"user {username!r} already exists") from None
        assert new_id is not None
        return User(int(new_id[0]), username, Role(role))

    def by_name(self, username: str) -> User | None:
        with self._engine.connect() as conn:
            row = conn.execute(
                select(users.c.id, users.c.username, users.c.role).where(
                    users.c.username == username
                )
            ).first()
        return User(row.id, row.username, Role(row.role)) if row else None

    def all(self) -> list[User]:
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(users.c.id, users.c.username, users.c.role).order_by(users.c.username)
            )
            return [User(r.id, r.username, Role(r.role)) for r in rows]

    def remove(self, username: str) -> bool:
        """Delete a user, their tokens and sessions; False when there was no such user."""
        with self._engine.begin() as conn:
            found = conn.execute(select(users.c.id).where(users.c.username == username)).first()
            if found is None:
                return False
            end_user_sessions(conn, found.id)
            conn.execute(delete(api_tokens).where(api_tokens.c.user_id == found.id))
            conn.execute(delete(users).where(users.c.id == found.id))
        return True

    def set_role(self, username: str, role: Role) -> bool:
        """Change a user's role; False when there is no such user.

        A real change ends the user's sessions, so they sign in again under the new role;
        setting the role they already have changes nothing.
        """
        with self._engine.begin() as conn:
            found = conn.execute(
                select(users.c.id, users.c.role).where(users.c.username == username)
            ).first()
            if found is None:
                return False
            if found.role != Role(role).value:
                conn.execute(
                    update(users).where(users.c.id == found.id).values(role=Role(role).value)
                )
                end_user_sessions(conn, found.id)
        return True

    def set_password(self, username: str, password: str) -> bool:
        """Replace a user's password and end their sessions; False when there is no such user.

        Raises:
            UserError: The password is too short.
        """
        _check_password(password)
        hashed = _HASHER.hash(password)
        with self._engine.begin() as conn:
            found = conn.execute(select(users.c.id).where(users.c.username == username)).first()
            if found is None:
                return False
            conn.execute(update(users).where(users.c.id == found.id).values(password_hash=hashed))
            end_user_sessions(conn, found.id)
        return True

    def end_sessions(self, username: str) -> int | None:
        """End every session of a user; how many were stored, or None for an unknown user."""
        with self._engine.begin() as conn:
            found = conn.execute(select(users.c.id).where(users.c.username == username)).first()
            if found is None:
                return None
            return end_user_sessions(conn, found.id)

    def authenticate(self, username: str, password: str) -> User | None:
        """The user when the password matches, else None (in constant-ish time)."""
        with self._engine.connect() as conn:
            row = conn.execute(select(users).where(users.c.username == username)).first()
        stored = row.password_hash if row else _DUMMY_HASH
        try:
            _HASHER.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return None
        if row is None:
            return None
        if _HASHER.check_needs_rehash(stored):
            with self._engine.begin() as conn:
                conn.execute(
                    update(users)
                    .where(users.c.id == row.id)
                    .values(password_hash=_HASHER.hash(password))
                )
        return User(row.id, row.username, Role(row.role))

    # -- tokens --------------------------------------------------------------------------

    def create_token(self, username: str, name: str) -> tuple[str, TokenInfo]:
        """A new API token for ``username``: returns the token (shown once) and its record."""
        user = self.by_name(username)
        if user is None:
            raise UserError(f"no user {username!r}; create one with `backhaul users add`")
        if not name.strip() or len(name) > 128:
            raise UserError("a token needs a name of 1-128 characters")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        created = _now()
        with self._engine.begin() as conn:
            result = conn.execute(
                insert(api_tokens).values(
                    user_id=user.id,
                    name=name,
                    token_hash=hash_token(token),
                    prefix=token[:10],
                    created_at=created,
                )
            )
            new_id = result.inserted_primary_key
        assert new_id is not None
        return token, TokenInfo(int(new_id[0]), username, name, token[:10], created, None)

    def user_for_token(self, token: str) -> User | None:
        """The owner of a valid, unrevoked token, else None."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        query = (
            select(users.c.id, users.c.username, users.c.role)
            .join(api_tokens, api_tokens.c.user_id == users.c.id)
            .where(api_tokens.c.token_hash == hash_token(token), api_tokens.c.revoked_at.is_(None))
        )
        with self._engine.connect() as conn:
            row = conn.execute(query).first()
        return User(row.id, row.username, Role(row.role)) if row else None

    def tokens(self, username: str | None = None) -> list[TokenInfo]:
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

    def revoke_token(self, token_id: int) -> bool:
        """Revoke a token by id; False when it does not exist or was already revoked."""
        with self._engine.begin() as conn:
            result = conn.execute(
                update(api_tokens)
                .where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
                .values(revoked_at=_now())
            )
        return bool(result.rowcount)

    # -- audit ---------------------------------------------------------------------------

    def audit(
        self,
        actor: str | None,
        action: str,
        target: str | None = None,
        details: dict[str, Any] | None = None,
        ip: str | None = None,
    ) -> None:
        """Append one entry to the audit log."""
        with self._engine.begin() as conn:
            conn.execute(
                insert(audit_log).values(
                    at=_now(),
                    actor=actor,
                    action=action,
                    target=target[:255] if target else target,
                    details=json.dumps(details or {}, sort_keys=True, default=str),
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


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"the password must have at least {MIN_PASSWORD} characters")


def _now() -> datetime:
    return datetime.now(UTC)
