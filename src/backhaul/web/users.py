"""Users, API tokens and the audit log, kept in the run store database.

Passwords are hashed with argon2id; API tokens are random 32-byte strings of which only a
SHA-256 hash is stored, so neither can be read back from the database. Removing a user and
changing a password or a role end that user's sign-in sessions in the same transaction;
API tokens are left alone (revoke them separately). The tables themselves are read and
written by :class:`backhaul.state.accounts.AccountStore`.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError
from argon2.exceptions import VerificationError

from backhaul.clock import utc_now
from backhaul.errors import UserError
from backhaul.state.accounts import Account
from backhaul.state.accounts import AccountStore
from backhaul.state.accounts import AuditEntry
from backhaul.state.accounts import TokenInfo
from backhaul.state.store import RunStore
from backhaul.web.auth import Role
from backhaul.web.auth import User

TOKEN_PREFIX = "bh_"
USERNAME = re.compile(r"^[A-Za-z0-9_.@\-]{1,64}$")
MIN_PASSWORD = 8
# A hash to verify against when the user does not exist, so a login for an unknown name
# costs as much time as one with a wrong password.
_HASHER = PasswordHasher()
_DUMMY_HASH = _HASHER.hash("backhaul-not-a-user")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class UserStore:
    """Users, tokens and audit entries, with the web app's rules (names, password length,
    hashing, roles). Safe to share between threads.

    Args:
        store: An open (migrated) run store; its database holds the tables.
    """

    def __init__(self, store: RunStore) -> None:
        self._accounts = AccountStore(store)

    # -- users ---------------------------------------------------------------------------

    def add(self, username: str, password: str, role: Role) -> User:
        """Create a user. Raises UserError for a bad name, a short password or a duplicate."""
        if not USERNAME.match(username):
            raise UserError(f"invalid username {username!r}: use 1-64 letters, digits, and _ . @ -")
        _check_password(password)
        new_id = self._accounts.add_user(
            username, _HASHER.hash(password), Role(role).value, utc_now()
        )
        if new_id is None:
            raise UserError(f"user {username!r} already exists")
        return User(new_id, username, Role(role))

    def by_name(self, username: str) -> User | None:
        found = self._accounts.user(username)
        return _user(found) if found else None

    def all(self) -> list[User]:
        return [_user(a) for a in self._accounts.users()]

    def remove(self, username: str) -> bool:
        """Delete a user, their tokens and sessions; False when there was no such user."""
        return self._accounts.remove_user(username)

    def set_role(self, username: str, role: Role) -> bool:
        """Change a user's role; False when there is no such user.

        A real change ends the user's sessions, so they sign in again under the new role;
        setting the role they already have changes nothing.
        """
        return self._accounts.set_role(username, Role(role).value)

    def set_password(self, username: str, password: str) -> bool:
        """Replace a user's password and end their sessions; False when there is no such user.

        Raises:
            UserError: The password is too short.
        """
        _check_password(password)
        return self._accounts.set_password(username, _HASHER.hash(password))

    def end_sessions(self, username: str) -> int | None:
        """End every session of a user; how many were stored, or None for an unknown user."""
        return self._accounts.end_user_sessions(username)

    def authenticate(self, username: str, password: str) -> User | None:
        """The user when the password matches, else None (in constant-ish time)."""
        found = self._accounts.credentials(username)
        stored = found[1] if found else _DUMMY_HASH
        try:
            _HASHER.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return None
        if found is None:
            return None
        account = found[0]
        if _HASHER.check_needs_rehash(stored):
            self._accounts.rehash(account.id, _HASHER.hash(password))
        return _user(account)

    # -- tokens --------------------------------------------------------------------------

    def create_token(self, username: str, name: str) -> tuple[str, TokenInfo]:
        """A new API token for ``username``: returns the token (shown once) and its record."""
        user = self.by_name(username)
        if user is None:
            raise UserError(f"no user {username!r}; create one with `backhaul users add`")
        if not name.strip() or len(name) > 128:
            raise UserError("a token needs a name of 1-128 characters")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        created = utc_now()
        new_id = self._accounts.add_token(user.id, name, hash_token(token), token[:10], created)
        return token, TokenInfo(new_id, username, name, token[:10], created, None)

    def user_for_token(self, token: str) -> User | None:
        """The owner of a valid, unrevoked token, else None."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        found = self._accounts.token_owner(hash_token(token))
        return _user(found) if found else None

    def tokens(self, username: str | None = None) -> list[TokenInfo]:
        return self._accounts.tokens(username)

    def revoke_token(self, token_id: int) -> bool:
        """Revoke a token by id; False when it does not exist or was already revoked."""
        return self._accounts.revoke_token(token_id, utc_now())

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
        self._accounts.audit(utc_now(), actor, action, target, details or {}, ip)

    def audit_entries(self, limit: int = 100, offset: int = 0) -> list[AuditEntry]:
        """Audit entries, newest first."""
        return self._accounts.audit_entries(limit=limit, offset=offset)


def _user(account: Account) -> User:
    return User(account.id, account.username, Role(account.role))


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"the password must have at least {MIN_PASSWORD} characters")


__all__ = [
    "TOKEN_PREFIX",
    "AuditEntry",
    "TokenInfo",
    "UserStore",
    "hash_token",
]
