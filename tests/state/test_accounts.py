"""AccountStore on SQLite and on Postgres: the web app's users, tokens, audit log and
sessions, and the sessions a change to a user ends in the same transaction."""

from __future__ import annotations

from datetime import UTC
from datetime import datetime
from datetime import timedelta

from backhaul.state.accounts import Account
from backhaul.state.accounts import AccountStore
from backhaul.state.store import RunStore

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
LONG_AGO = T0 - timedelta(days=365)


def _start(accounts: AccountStore, digest: str, user_id: int) -> None:
    accounts.start_session(digest, user_id, T0, idle_since=LONG_AGO, born_before=LONG_AGO)


def test_users_tokens_and_the_audit_log(store: RunStore) -> None:
    accounts = AccountStore(store)
    ada = accounts.add_user("ada", "hash-1", "admin", T0)
    assert ada is not None
    assert accounts.add_user("ada", "hash-2", "viewer", T0) is None  # the name is taken
    bob = accounts.add_user("bob", "hash-3", "viewer", T0)
    assert bob is not None

    assert accounts.users() == [Account(ada, "ada", "admin"), Account(bob, "bob", "viewer")]
    assert accounts.credentials("ada") == (Account(ada, "ada", "admin"), "hash-1")
    assert accounts.credentials("nobody") is None

    token = accounts.add_token(bob, "ci", "sha-of-token", "bh_abc", T0)
    assert accounts.token_owner("sha-of-token") == Account(bob, "bob", "viewer")
    assert [t.name for t in accounts.tokens("bob")] == ["ci"]
    assert accounts.revoke_token(token, T0) is True
    assert accounts.revoke_token(token, T0) is False
    assert accounts.token_owner("sha-of-token") is None

    accounts.audit(T0, "ada", "user_add", "x" * 300, {"role": "viewer"}, "10.0.0.1")
    accounts.audit(T0 + timedelta(seconds=1), None, "login_failed", None, {}, None)
    entries = accounts.audit_entries()
    assert [e.action for e in entries] == ["login_failed", "user_add"]
    assert entries[1].target == "x" * 255
    assert entries[1].details == {"role": "viewer"}

    assert accounts.remove_user("bob") is True
    assert accounts.tokens() == []
    assert accounts.remove_user("bob") is False


def test_changes_to_a_user_end_their_sessions(store: RunStore) -> None:
    accounts = AccountStore(store)
    ada = accounts.add_user("ada", "hash-1", "operator", T0)
    assert ada is not None
    _start(accounts, "s1", ada)
    _start(accounts, "s2", ada)

    assert accounts.set_role("ada", "operator") is True  # no change: sessions stay
    found = accounts.session("s1")
    assert found is not None
    assert (found.account, found.created_at) == (Account(ada, "ada", "operator"), T0)

    assert accounts.set_role("ada", "viewer") is True
    assert accounts.session("s1") is None
    assert accounts.session("s2") is None

    _start(accounts, "s3", ada)
    assert accounts.set_password("ada", "hash-2") is True
    assert accounts.session("s3") is None
    assert accounts.credentials("ada") == (Account(ada, "ada", "viewer"), "hash-2")

    _start(accounts, "s4", ada)
    accounts.touch_session("s4", T0 + timedelta(minutes=5))
    accounts.touch_session("s4", T0 + timedelta(minutes=1))  # never moves back
    touched = accounts.session("s4")
    assert touched is not None
    assert touched.last_seen_at == T0 + timedelta(minutes=5)
    assert accounts.end_user_sessions("ada") == 1
    assert accounts.end_user_sessions("nobody") is None
    assert accounts.set_role("nobody", "viewer") is False
