"""The conformance suite: real syncs every destination must get right.

Each check builds its own project (a DuckDB warehouse with a ``people`` table, a model, a
sync) in a subfolder of ``workdir``, runs syncs through the engine, and asserts on the
destination's records (``Target.read``), the run summary and the run store. A destination
that cannot do what a check needs (an operation, fault switches) skips it with a reason.
A list or audience destination (``Target.mode = "membership"``) runs the checks that apply
to a list in that mode: membership is presence, values are compared only where mapped.

Example::

    from backhaul.testing.conformance import CHECKS, Target, run_all

    results = run_all(target, tmp_path)
    assert all(r.passed for r in results), [r for r in results if not r.passed]

See docs/conformance.md for a complete test file.
"""

from __future__ import annotations

import functools
import json
import os
import re
import unittest
import uuid
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any
from typing import Protocol

import duckdb
from ruamel.yaml import YAML

from backhaul import api
from backhaul.destinations.base import Operation
from backhaul.plugins import Registry
from backhaul.summary import RunStatus
from backhaul.summary import RunSummary
from backhaul.testing.emulators.base import Call
from backhaul.testing.emulators.base import Faults
from backhaul.testing.receiver import field_at

ROWS = 20
REJECT_ERROR = "bad record"
RETRY_AFTER = 1.0
RETRY_TOLERANCE = 0.05
MAX_FATAL_CALLS = 3
MEMBERSHIP = "membership"
# Words of an error message that tell the user what to do next.
FIX_WORDS = ("check", "fix", "set ", "use ", "update", "replace", "make sure", "verify", "create")


class FaultSwitches(Protocol):
    """The fault switches the checks use; :class:`~backhaul.testing.emulators.Faults` has them."""

    def fail_next(self, n: int = 1, status: int = 500) -> None: ...
    def rate_limit_next(self, n: int = 1, retry_after: float = 1.0) -> None: ...
    def drop_next(self, n: int = 1) -> None: ...
    def reject(self, errors: dict[str, str]) -> None: ...
    def clear(self) -> None: ...


@dataclass
class Target:
    """A destination under test and the means to look inside it.

    Attributes:
        destination: Destination file content (``type`` + config); may use ``${env:NAME}``.
        env: Environment variables ``destination`` refers to (set only during a check).
        match_field: Target field that identifies a record (``email``).
        read: Records at the destination, keyed by ``str(match value)``.
        operations: Operations the destination supports.
        object: The sync's ``object`` (``contacts``), when the destination needs one.
        field_map: Destination field of the logical fields ``name`` and ``score``; ``None``
            leaves one unmapped (not synced, not compared).
        faults: The emulator's fault switches; fault checks are skipped without them.
        calls: The emulator's call log (timestamps, statuses).
        bad_destination: ``destination`` with a wrong credential.
        secrets: Values that must never appear in recorded calls or errors.
        registry: Connector registry for connectors not installed as entry points.
        reject_reason: What a refused record's error must contain (default: the reason
            the emulator was told to give; a vendor that names only a category of failure,
            not the reason, sets that category).
        mode: The sync mode the checks seed and remove with when it is not upsert/mirror:
            ``"membership"`` for a list or audience destination.
        key_of: How a model e-mail appears as a key of ``read()`` and of ``faults.reject``
            when the destination keeps it transformed (the SHA-256 of the normalised
            e-mail); ``None``: as it is.
        value_of: How a mapped ``name``/``score`` value is kept (``(logical, value)`` to what
            ``read()`` shows, e.g. a hash); ``None``: as it is.
        rate_limit_status: The HTTP status of the destination's rate-limit answer.
        rate_limit_wait: Seconds the destination asks to wait after
            ``faults.rate_limit_next(retry_after=1)``; ``None`` when its answer names no wait
            in seconds (then only the retry is checked).
    """

    destination: dict[str, Any]
    env: dict[str, str]
    match_field: str
    read: Callable[[], dict[str, dict[str, Any]]]
    operations: frozenset[Operation]
    object: str | None = None
    field_map: dict[str, str | None] = field(default_factory=dict)
    faults: Faults | FaultSwitches | None = None
    calls: Callable[[], list[Call]] | None = None
    bad_destination: dict[str, Any] | None = None
    secrets: list[str] = field(default_factory=list)
    registry: Registry | None = None
    reject_reason: str = REJECT_ERROR
    mode: str | None = None
    key_of: Callable[[str], str] | None = None
    value_of: Callable[[str, Any], Any] | None = None
    rate_limit_status: int = 429
    rate_limit_wait: float | None = RETRY_AFTER

    @property
    def membership(self) -> bool:
        return self.mode == MEMBERSHIP

    def mapped(self, logical: str) -> str | None:
        """The destination field of a logical field (``name``, ``score``); None: unmapped."""
        return self.field_map.get(logical, logical)


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check; a skip passes with a message starting ``skipped:``."""

    name: str
    passed: bool
    message: str


class CheckSkipped(unittest.SkipTest):
    """The destination cannot take part in a check (pytest reports it as skipped)."""


# -- the project a check runs ---------------------------------------------------------------


class Harness:
    """One check's project folder: warehouse, model, destination file and syncs."""

    def __init__(self, target: Target, workdir: Path, tag: str) -> None:
        token = uuid.uuid4().hex[:6]
        self.target = target
        self.root = Path(workdir) / f"{tag}-{token}"
        # A domain of its own keeps this check's records apart from other checks' at a
        # destination the checks share.
        self.domain = f"{tag}-{token}.example.com"
        self.dest_name = _name(str(target.destination.get("type", "destination")))
        # Every e-mail the model ever held: a record left under an old one must show up.
        self.emails: set[str] = set()
        self.root.mkdir(parents=True)
        self._write("backhaul.yml", {"name": "conformance"})
        self._write("sources/wh.yml", {"type": "duckdb", "path": "warehouse.duckdb"})
        self.model("people", "SELECT * FROM people")
        self.use_destination(target.destination)
        self.sql(
            "CREATE TABLE people (id BIGINT PRIMARY KEY, email VARCHAR, name VARCHAR, "
            "score INTEGER)",
            f"INSERT INTO people SELECT i, 'person' || i || '@{self.domain}', 'Person ' || i, "
            f"(i * 7) % 100 FROM range(1, {ROWS + 1}) t(i)",
        )

    # -- files -------------------------------------------------------------------------
    def _write(self, rel: str, data: Mapping[str, Any]) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        yaml = YAML(typ="safe")
        yaml.default_flow_style = False
        with path.open("w", encoding="utf-8") as out:
            yaml.dump(json.loads(json.dumps(dict(data))), out)

    def model(self, name: str, sql: str) -> None:
        self._write(f"models/{name}.yml", {"source": "wh", "primary_key": "id", "sql": sql})

    def use_destination(self, config: Mapping[str, Any]) -> None:
        self._write(f"destinations/{self.dest_name}.yml", config)

    def sync(
        self,
        name: str,
        *,
        model: str = "people",
        mode: str = "upsert",
        on_remove: str | None = None,
    ) -> str:
        t = self.target
        mappings = [{"column": "email", "field": t.match_field}]
        for logical in ("name", "score"):
            dest_field = t.mapped(logical)
            if dest_field is not None:
                mappings.append({"column": logical, "field": dest_field})
        spec: dict[str, Any] = {
            "model": model,
            "destination": self.dest_name,
            "mode": mode,
            "match": {"fields": [t.match_field]},
            "max_remove_pct": 100,
            "mappings": mappings,
        }
        if t.object is not None:
            spec["object"] = t.object
        if on_remove is not None:
            spec["on_remove"] = on_remove
        self._write(f"syncs/{name}.yml", spec)
        return name

    # -- warehouse ---------------------------------------------------------------------
    def sql(self, *statements: str) -> list[tuple[Any, ...]]:
        con = duckdb.connect(str(self.root / "warehouse.duckdb"))
        try:
            rows: list[tuple[Any, ...]] = []
            for stmt in statements:
                rows = con.execute(stmt).fetchall()
            return rows
        finally:
            con.close()

    def people(self) -> dict[str, tuple[int, str, int]]:
        """The model's rows: match value -> (id, name, score)."""
        rows = self.sql("SELECT id, email, name, score FROM people ORDER BY id")
        return {email: (pk, name, score) for pk, email, name, score in rows}

    def email(self, pk: int) -> str:
        return f"person{pk}@{self.domain}"

    # -- running -----------------------------------------------------------------------
    def project(self) -> api.Project:
        if self.target.registry is None:
            return api.load_project(self.root)
        from backhaul.config.loader import load_project

        return load_project(self.root, registry=self.target.registry)

    def run(self, sync: str, *, full_resync: bool = False) -> RunSummary:
        self.emails.update(self.people())
        return api.run(self.project(), sync, full_resync=full_resync)

    def rows(self, run_id: str) -> dict[str, tuple[str, str | None]]:
        """Per-row outcomes of a run: primary key -> (status, error)."""
        with api.open_store(self.project()) as store:
            found = store.rows(run_id, limit=1_000_000)
        return {r.key: (r.status, r.error) for r in found}

    def store_texts(self) -> Iterator[tuple[str, str]]:
        """Every text the run store holds about this project's runs: (where, text)."""
        with api.open_store(self.project()) as store:
            for record in store.runs(limit=1000):
                yield f"run {record.run_id} error", record.error or ""
                for row in store.rows(record.run_id, limit=1_000_000):
                    yield f"run {record.run_id} row {row.key} error", row.error or ""
                for call in store.calls(record.run_id, limit=1_000_000):
                    where = f"run {record.run_id} call {call.method}"
                    yield f"{where} url", call.url
                    yield f"{where} headers", json.dumps(call.request_headers)
                    yield f"{where} request body", call.request_body or ""
                    yield f"{where} response body", call.response_body or ""
                    yield f"{where} error", call.error or ""

    def calls_in(self, run_id: str) -> int:
        """How many HTTP calls the run store recorded for a run."""
        with api.open_store(self.project()) as store:
            return len(store.calls(run_id, limit=1_000_000))

    def read(self) -> dict[str, dict[str, Any]]:
        """This check's records at the destination (other checks' records left out).

        Keys a destination holds transformed (``Target.key_of``) are turned back into every
        e-mail this check's model ever held, old ones included.
        """
        found = self.target.read()
        key_of = self.target.key_of
        if key_of is None:
            suffix = "@" + self.domain
            return {k: v for k, v in found.items() if k.lower().endswith(suffix)}
        emails = {key_of(e): e for e in self.emails | set(self.people())}
        return {emails[k]: v for k, v in found.items() if k in emails}

    def key(self, email: str) -> str:
        """How ``email`` is known at the destination (and to ``faults.reject``)."""
        return email if self.target.key_of is None else self.target.key_of(email)

    def value(self, record: Mapping[str, Any], logical: str) -> Any:
        path = self.target.mapped(logical)
        return None if path is None else _lookup(record, path)

    def same(self, record: Mapping[str, Any], logical: str, expected: Any) -> bool:
        """A mapped field holds the model's value (an unmapped one is not compared)."""
        if self.target.mapped(logical) is None:
            return True
        if self.target.value_of is not None:
            expected = self.target.value_of(logical, expected)
        return _same(self.value(record, logical), expected)


def _name(text: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_\-]", "_", text) or "destination"
    return cleaned if re.match(r"[A-Za-z_]", cleaned) else f"d_{cleaned}"


def _lookup(record: Mapping[str, Any], path: str) -> Any:
    """A flat key spelled with dots first (some APIs keep those), else the nested value."""
    return record[path] if path in record else field_at(record, path)


def _same(found: Any, expected: Any) -> bool:
    """Equal once both are text (many APIs keep every property as a string)."""
    if isinstance(found, float) and found.is_integer():
        found = int(found)
    return found is not None and str(found) == str(expected)


def _cleared(value: Any) -> bool:
    return value is None or value == "" or value == []


@contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


def _needs(target: Target, *ops: Operation) -> None:
    missing = [op.value for op in ops if op not in target.operations]
    if missing:
        raise CheckSkipped(f"skipped: the destination does not support {', '.join(missing)}")


def _faults(target: Target) -> Faults | FaultSwitches:
    if target.faults is None:
        raise CheckSkipped("skipped: the target has no fault switches (Target.faults)")
    return target.faults


def _seed_mode(target: Target) -> str:
    """The mode that puts records at the destination (adds members to a list)."""
    if target.mode is not None:
        return target.mode
    if Operation.UPSERT in target.operations:
        return "upsert"
    if Operation.INSERT in target.operations:
        return "insert"
    raise CheckSkipped("skipped: the destination supports neither upsert nor insert")


def _removal_modes(target: Target) -> list[tuple[str, str | None]]:
    """(mode, on_remove) pairs that take records of removed rows out of the destination."""
    if target.membership:
        if Operation.DELETE not in target.operations:
            raise CheckSkipped("skipped: the list cannot take members out (no delete)")
        return [(MEMBERSHIP, None)]
    removal = [op for op in (Operation.DELETE, Operation.CLEAR) if op in target.operations]
    if not removal:
        raise CheckSkipped("skipped: the destination supports neither delete nor clear")
    return [("mirror", op.value) for op in removal]


def _not_for_lists(target: Target, what: str) -> None:
    if target.membership:
        raise CheckSkipped(f"skipped: a list has no {what}: mode membership adds and removes")


def _change(h: Harness, statement: str) -> None:
    """Change the model with ``statement`` so that the next run has something to send."""
    if h.target.membership:
        # Membership is presence: only new members are news to a list.
        h.sql(
            f"INSERT INTO people SELECT i, 'person' || i || '@{h.domain}', 'Person ' || i, i "
            f"FROM range({ROWS + 1}, {ROWS + 4}) t(i)"
        )
    else:
        h.sql(statement)


def _expect_status(summary: RunSummary, status: RunStatus, step: str) -> None:
    assert summary.status is status, (
        f"{step}: run ended {summary.status.value}, expected {status.value} "
        f"(error: {summary.error}; counts: {summary.counts.as_dict()})"
    )


def _assert_matches_model(h: Harness, step: str) -> None:
    """The destination holds exactly the model's rows with the model's values."""
    want = h.people()
    have = h.read()
    missing = sorted(set(want) - set(have))
    extra = sorted(set(have) - set(want))
    assert not missing and not extra, (
        f"{step}: destination records differ from the model: missing {missing[:5]}, "
        f"unexpected {extra[:5]}"
    )
    for key, (_, name, score) in want.items():
        record = have[key]
        assert h.same(record, "name", name) and h.same(record, "score", score), (
            f"{step}: record {key} holds name={h.value(record, 'name')!r} "
            f"score={h.value(record, 'score')!r}, expected {name!r} and {score!r}"
        )


def _calls_now(target: Target) -> int | None:
    return None if target.calls is None else len(target.calls())


def _assert_nothing_sent(h: Harness, summary: RunSummary, before: int | None, step: str) -> None:
    assert summary.counts.planned == 0, (
        f"{step}: expected nothing to send, the run planned {summary.counts.as_dict()}"
    )
    calls = h.calls_in(summary.run_id)
    assert calls == 0, f"{step}: nothing changed, yet the run made {calls} HTTP calls"
    after = _calls_now(h.target)
    if before is not None and after is not None:
        assert after == before, f"{step}: the destination received {after - before} calls"


# -- the checks -------------------------------------------------------------------------------


def upsert_idempotent(target: Target, workdir: Path) -> None:
    """Upsert (add) 20 rows; a second run sends nothing; a full resync creates no duplicates."""
    _needs(target, Operation.UPSERT)
    h = Harness(target, workdir, "upsert")
    sync = h.sync("people_upsert", mode=_seed_mode(target))
    first = h.run(sync)
    _expect_status(first, RunStatus.SUCCEEDED, "first run")
    assert first.counts.succeeded == ROWS, f"first run acknowledged {first.counts.succeeded}"
    outcomes = h.rows(first.run_id)
    assert {k for k, (s, _) in outcomes.items() if s == "ok"} == {
        str(i) for i in range(1, ROWS + 1)
    }, f"first run: the run store does not hold {ROWS} ok rows: {outcomes}"
    _assert_matches_model(h, "after the first run")
    before = _calls_now(target)
    _assert_nothing_sent(h, h.run(sync), before, "second run with no change")
    resync = h.run(sync, full_resync=True)
    _expect_status(resync, RunStatus.SUCCEEDED, "full resync")
    assert resync.counts.succeeded == ROWS, f"full resync acknowledged {resync.counts.succeeded}"
    _assert_matches_model(h, "after a full resync")


def update_semantics(target: Target, workdir: Path) -> None:
    """Mode update changes existing records and rejects (never creates) missing ones."""
    _not_for_lists(target, "update")
    _needs(target, Operation.UPDATE)
    seed_mode = _seed_mode(target)
    h = Harness(target, workdir, "update")
    h.model("seed", "SELECT * FROM people WHERE id <= 10")
    seed = h.run(h.sync("seed", model="seed", mode=seed_mode))
    _expect_status(seed, RunStatus.SUCCEEDED, "seeding ids 1-10")
    h.sql("UPDATE people SET name = 'Updated ' || id, score = score + 1")
    run = h.run(h.sync("people_update", mode="update"))
    _expect_status(run, RunStatus.PARTIAL, "update run over 10 existing and 10 missing records")
    have = h.read()
    people = h.people()
    for pk in range(1, 11):
        record = have.get(h.email(pk))
        assert record is not None, f"update run: existing record {h.email(pk)} disappeared"
        _, name, score = people[h.email(pk)]
        assert h.same(record, "name", name) and h.same(record, "score", score), (
            f"update run: {h.email(pk)} was not updated (holds {record})"
        )
    created = sorted(k for k in have if people[k][0] > 10)
    assert not created, f"update run created records that did not exist: {created[:5]}"
    outcomes = h.rows(run.run_id)
    for pk in range(1, ROWS + 1):
        status, error = outcomes.get(str(pk), ("missing", None))
        if pk <= 10:
            assert status == "ok", f"update run: existing row {pk} ended {status}: {error}"
        else:
            assert status == "rejected" and error, (
                f"update run: missing row {pk} should be rejected with an error, got {status}"
            )


def insert_semantics(target: Target, workdir: Path) -> None:
    """Mode insert creates new records, leaves existing ones alone and skips changes."""
    _not_for_lists(target, "insert")
    _needs(target, Operation.INSERT)
    h = Harness(target, workdir, "insert")
    h.model("seed", "SELECT * FROM people WHERE id <= 10")
    seed = h.run(h.sync("seed", model="seed", mode="insert"))
    _expect_status(seed, RunStatus.SUCCEEDED, "seeding ids 1-10")
    original = h.people()
    h.sql("UPDATE people SET name = 'Changed ' || id WHERE id <= 5")
    sync = h.sync("people_insert", mode="insert")
    run = h.run(sync)
    _expect_status(run, RunStatus.SUCCEEDED, "insert run over 10 existing and 10 new records")
    have = h.read()
    assert set(have) == set(original), (
        f"insert run: destination keys differ: missing {sorted(set(original) - set(have))[:5]}"
    )
    for key, (_, name, score) in original.items():
        assert h.same(have[key], "name", name), (
            f"insert run: {key} holds name {h.value(have[key], 'name')!r}, expected {name!r} "
            "(an existing record must be left alone)"
        )
        assert h.same(have[key], "score", score), f"insert run: {key} score differs"
    h.sql("UPDATE people SET name = 'Changed again' WHERE id = 15")
    later = h.run(sync)
    assert later.status in (RunStatus.SUCCEEDED, RunStatus.PARTIAL), later.error
    assert h.calls_in(later.run_id) == 0, "insert run: a changed row was sent"
    status, _ = h.rows(later.run_id).get("15", ("missing", None))
    assert status == "skipped", f"insert run: a changed row ended {status}, expected skipped"
    found = h.value(h.read()[h.email(15)], "name")
    assert _same(found, "Person 15"), (
        f"insert run: a changed row reached the destination ({found!r})"
    )


def removed_rows(target: Target, workdir: Path) -> None:
    """Mirror mode deletes (on_remove delete) or clears (on_remove clear) removed rows;
    membership mode takes them out of the list."""
    _needs(target, Operation.UPSERT)
    gone = {f"person{pk}" for pk in range(17, ROWS + 1)}
    for mode, on_remove in _removal_modes(target):
        what = on_remove or mode
        h = Harness(target, workdir, f"removed-{what}")
        sync = h.sync(f"people_{mode}_{what}", mode=mode, on_remove=on_remove)
        _expect_status(h.run(sync), RunStatus.SUCCEEDED, f"{mode} ({what}) first run")
        before = h.people()
        h.sql(f"DELETE FROM people WHERE id > {ROWS - len(gone)}")
        run = h.run(sync)
        _expect_status(run, RunStatus.SUCCEEDED, f"{mode} ({what}) run after removing rows")
        assert run.counts.removed == len(gone), f"{what}: removed {run.counts.removed}"
        have = h.read()
        removed = {k for k in before if k.split("@")[0] in gone}
        if on_remove != Operation.CLEAR.value:
            _assert_matches_model(h, f"after {mode} removed rows ({what})")
            continue
        for key in sorted(removed):
            record = have.get(key)
            assert record is not None, f"on_remove clear: {key} was deleted instead of cleared"
            for logical in ("name", "score"):
                assert _cleared(h.value(record, logical)), (
                    f"on_remove clear: {key} still holds {logical}={h.value(record, logical)!r}"
                )
        for key in set(before) - removed:
            assert h.same(have[key], "name", before[key][1]), f"{key} changed"


def match_value_changes(target: Target, workdir: Path) -> None:
    """Mirror mode: rows whose match value changes leave no record under the old value;
    membership mode: they leave the list under the old value and join under the new."""
    _needs(target, Operation.UPSERT)
    if Operation.DELETE not in target.operations:
        raise CheckSkipped("skipped: the destination cannot delete")
    mode, on_remove = (MEMBERSHIP, None) if target.membership else ("mirror", "delete")
    h = Harness(target, workdir, "rekey")
    sync = h.sync("people_rekey", mode=mode, on_remove=on_remove)
    _expect_status(h.run(sync), RunStatus.SUCCEEDED, f"{mode} first run")
    h.sql("UPDATE people SET email = 'moved-' || email WHERE id IN (4, 9)")
    run = h.run(sync)
    _expect_status(run, RunStatus.SUCCEEDED, f"{mode} run after two match values changed")
    assert run.counts.changed == 2, f"expected 2 changed rows, planned {run.counts.changed}"
    _assert_matches_model(h, "after two match values changed")
    again = h.run(sync)
    assert again.counts.planned == 0, f"the run after it planned {again.counts.planned} rows"


def rejection_mapped_to_key(target: Target, workdir: Path) -> None:
    """A refused record is reported under its own key, retried, and accepted once fixed."""
    faults = _faults(target)
    mode = _seed_mode(target)
    h = Harness(target, workdir, "rejection")
    bad = {3: h.email(3), 7: h.email(7)}
    faults.clear()
    faults.reject({h.key(email): REJECT_ERROR for email in bad.values()})
    sync = h.sync("people_reject", mode=mode)
    try:
        first = h.run(sync)
        _expect_status(first, RunStatus.PARTIAL, "run with 2 refused records")
        _assert_rejected(h, first.run_id, set(map(str, bad)), "first run")
        have = h.read()
        assert set(have) == set(h.people()) - set(bad.values()), (
            f"first run: expected the 18 accepted records, found {len(have)}"
        )
        second = h.run(sync)
        assert second.counts.planned == len(bad), (
            f"second run should retry the {len(bad)} refused rows, planned "
            f"{second.counts.as_dict()}"
        )
        _assert_rejected(h, second.run_id, set(map(str, bad)), "second run")
    finally:
        faults.clear()
    third = h.run(sync)
    _expect_status(third, RunStatus.SUCCEEDED, "run after the rejection was lifted")
    assert third.counts.succeeded == len(bad), f"third run acknowledged {third.counts.succeeded}"
    _assert_matches_model(h, "after the rejection was lifted")
    before = _calls_now(target)
    _assert_nothing_sent(h, h.run(sync), before, "run after every record was accepted")


def _assert_rejected(h: Harness, run_id: str, keys: set[str], step: str) -> None:
    outcomes = h.rows(run_id)
    rejected = {k: e for k, (s, e) in outcomes.items() if s == "rejected"}
    assert set(rejected) == keys, f"{step}: rejected keys {sorted(rejected)}, expected {keys}"
    reason = h.target.reject_reason
    for key, error in rejected.items():
        assert error and reason in error, (
            f"{step}: row {key} was rejected with {error!r}, which lacks {reason!r}"
        )


def rate_limit_respected(target: Target, workdir: Path) -> None:
    """After a rate-limit answer the next request waits as long as the destination asked."""
    faults = _faults(target)
    if target.calls is None:
        raise CheckSkipped("skipped: the target has no call log (Target.calls)")
    _needs(target, Operation.UPSERT)
    h = Harness(target, workdir, "ratelimit")
    faults.clear()
    start = len(target.calls())
    faults.rate_limit_next(1, retry_after=RETRY_AFTER)
    try:
        run = h.run(h.sync("people_rate", mode=_seed_mode(target)))
    finally:
        faults.clear()
    _expect_status(run, RunStatus.SUCCEEDED, "run that met a rate limit")
    calls = target.calls()[start:]
    status = target.rate_limit_status
    limited = next((i for i, c in enumerate(calls) if c.status == status), None)
    assert limited is not None, "the destination never received the rate-limited answer"
    assert limited + 1 < len(calls), "no request followed the rate-limited one"
    wait = target.rate_limit_wait
    waited = calls[limited + 1].at - calls[limited].at
    assert wait is None or waited >= wait - RETRY_TOLERANCE, (
        f"the request after a {status} with Retry-After {wait:g}s came {waited:.3f}s later"
    )
    _assert_matches_model(h, "after the rate-limited run")


def transient_retried(target: Target, workdir: Path) -> None:
    """5xx answers and a dropped connection are retried; the run still delivers everything."""
    faults = _faults(target)
    _needs(target, Operation.UPSERT)
    h = Harness(target, workdir, "transient")
    faults.clear()
    faults.fail_next(2, 503)
    faults.drop_next(1)
    try:
        run = h.run(h.sync("people_transient", mode=_seed_mode(target)))
    finally:
        faults.clear()
    _expect_status(run, RunStatus.SUCCEEDED, "run that met two 503s and a dropped connection")
    _assert_matches_model(h, "after transient failures")


def fatal_fails_fast(target: Target, workdir: Path) -> None:
    """A wrong credential fails the run at once with a message that says what to fix."""
    if target.bad_destination is None:
        raise CheckSkipped("skipped: the target has no bad_destination (wrong credential)")
    mode = _seed_mode(target)
    h = Harness(target, workdir, "fatal")
    sync = h.sync("people_fatal", mode=mode)
    _expect_status(h.run(sync), RunStatus.SUCCEEDED, "seeding run")
    before = h.read()
    _change(h, "UPDATE people SET name = 'Never sent ' || id")
    h.use_destination(target.bad_destination)
    start = _calls_now(target)
    run = h.run(sync)
    _expect_status(run, RunStatus.FAILED, "run with a wrong credential")
    assert run.exit_code == 1, f"a failed run must exit 1, got {run.exit_code}"
    error = run.error or ""
    names = {h.dest_name.lower(), str(target.destination.get("type", "")).lower()} - {""}
    assert any(n in error.lower() for n in names), (
        f"the error does not name the destination ({' or '.join(sorted(names))}): {error!r}"
    )
    assert any(w in error.lower() for w in FIX_WORDS), f"the error says nothing to do: {error!r}"
    made = h.calls_in(run.run_id)
    assert made <= MAX_FATAL_CALLS, f"a wrong credential led to {made} recorded calls"
    end = _calls_now(target)
    if start is not None and end is not None:
        assert end - start <= MAX_FATAL_CALLS, f"the destination received {end - start} calls"
    assert h.read() == before, "the failed run changed records at the destination"


def no_secret_in_calls(target: Target, workdir: Path) -> None:
    """No secret value appears in recorded calls (URL, headers, bodies) or in any error."""
    secrets = [s for s in target.secrets if s]
    if not secrets:
        raise CheckSkipped("skipped: the target lists no secrets (Target.secrets)")
    mode = _seed_mode(target)
    h = Harness(target, workdir, "secrets")
    sync = h.sync("people_secrets", mode=mode)
    h.run(sync)
    if target.bad_destination is not None:
        _change(h, "UPDATE people SET score = score + 1")
        h.use_destination(target.bad_destination)
        h.run(sync)
    texts = list(h.store_texts())
    assert any(where.endswith(" url") for where, _ in texts), (
        "the run store recorded no HTTP call: send every call through HttpClient"
    )
    for where, text in texts:
        for secret in secrets:
            assert secret not in text, f"a secret value appears in {where}"


def _with_env(check: Callable[[Target, Path], None]) -> Callable[[Target, Path], None]:
    """``check`` with ``target.env`` set while it runs (and restored afterwards)."""

    @functools.wraps(check)
    def run(target: Target, workdir: Path) -> None:
        with _environment(target.env):
            check(target, workdir)

    return run


CHECKS: dict[str, Callable[[Target, Path], None]] = {
    check.__name__: _with_env(check)
    for check in (
        upsert_idempotent,
        update_semantics,
        insert_semantics,
        removed_rows,
        match_value_changes,
        rejection_mapped_to_key,
        rate_limit_respected,
        transient_retried,
        fatal_fails_fast,
        no_secret_in_calls,
    )
}
"""Every check by name, in the order :func:`run_all` runs them."""


def run_check(name: str, target: Target, workdir: Path) -> CheckResult:
    """Run one check and report its outcome (a failure or a crash is a result, not raised)."""
    try:
        CHECKS[name](target, Path(workdir))
    except CheckSkipped as exc:
        text = str(exc)
        return CheckResult(name, True, text if text.startswith("skipped:") else f"skipped: {text}")
    except AssertionError as exc:
        return CheckResult(name, False, str(exc) or "assertion failed")
    except Exception as exc:  # any crash is a failed check, reported by name
        return CheckResult(name, False, f"{type(exc).__name__}: {exc}")
    return CheckResult(name, True, "passed")


def run_all(target: Target, workdir: Path) -> list[CheckResult]:
    """Run every check against ``target``; each builds its project in a subfolder of
    ``workdir``."""
    return [run_check(name, target, workdir) for name in CHECKS]


__all__ = ["CHECKS", "CheckResult", "CheckSkipped", "Target", "run_all", "run_check"]
