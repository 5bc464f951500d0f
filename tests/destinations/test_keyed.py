"""write_keyed: the operation x exists/missing table, ids, turns and wordings, on a fake vendor."""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pytest

from backhaul.destinations.base import Batch
from backhaul.destinations.base import Operation
from backhaul.destinations.base import RecordResult
from backhaul.destinations.base import RecordStatus
from backhaul.destinations.keyed import Answers
from backhaul.destinations.keyed import Exists
from backhaul.destinations.keyed import Found
from backhaul.destinations.keyed import Gone
from backhaul.destinations.keyed import Identity
from backhaul.destinations.keyed import Rows
from backhaul.destinations.keyed import write_keyed

IDENTITY = Identity("acme", "people", "email", ignore_case=True)


class Fake:
    """A vendor holding records by id; ``taken`` makes a create answer Exists."""

    def __init__(self, **records: str) -> None:
        self.records = {rid: {"email": email} for rid, email in records.items()}
        self.taken: dict[str, str | None] = {}
        self.calls: list[tuple[str, list[int]]] = []

    async def find(self, rows: Rows, idx: Sequence[int]) -> Found:
        self.calls.append(("find", list(idx)))
        by_email = {r["email"].lower(): rid for rid, r in self.records.items()}
        return {i: by_email[rows.keys[i].lower()] for i in idx if rows.keys[i].lower() in by_email}

    async def create(self, rows: Rows, idx: Sequence[int]) -> Answers:
        self.calls.append(("create", list(idx)))
        out: dict[int, Any] = {}
        for i in idx:
            if rows.keys[i] in self.taken:
                out[i] = Exists("409 taken", "c1", self.taken[rows.keys[i]])
            else:
                rid = f"r{len(self.records) + 1}"
                self.records[rid] = dict(rows.records[i])
                out[i] = RecordResult.ok(i, "c1", rid)
        return out

    async def update(self, rows: Rows, ids: Mapping[int, str]) -> Answers:
        self.calls.append(("update", list(ids)))
        out: dict[int, Any] = {}
        for i, rid in ids.items():
            if rid not in self.records:
                out[i] = Gone("404", "c2")
            else:
                self.records[rid].update(rows.records[i])
                out[i] = RecordResult.ok(i, "c2", rid)
        return out

    async def delete(self, rows: Rows, ids: Mapping[int, str]) -> Answers:
        self.calls.append(("delete", list(ids)))
        for rid in ids.values():
            self.records.pop(rid, None)
        return {i: RecordResult.ok(i, "c3") for i in ids}


async def write(
    api: Fake, op: Operation, emails: list[str | None], ids: list[str | None] | None = None
) -> list[RecordResult]:
    records = [{"email": e, "name": f"n{n}"} for n, e in enumerate(emails)]
    table = pa.Table.from_pylist(records)
    batch = Batch(op, table, [str(n) for n in range(len(records))], ["email"], record_ids=ids)
    return await write_keyed(api, batch, records, IDENTITY)


def status(results: list[RecordResult]) -> list[str]:
    return [r.status.value if r.error is None else f"rejected: {r.error}" for r in results]


async def test_the_table_of_operations() -> None:
    assert status(await write(Fake(r1="a@x"), Operation.UPDATE, ["a@x", "b@x"])) == [
        "ok",
        "rejected: acme people has no record with email = b@x: update mode creates none",
    ]
    insert = Fake(r1="a@x")
    assert status(await write(insert, Operation.INSERT, ["A@x", "b@x"])) == ["ok", "ok"]
    assert ("create", [1]) in insert.calls and not [c for c in insert.calls if c[0] == "update"]
    delete = Fake(r1="a@x")
    assert status(await write(delete, Operation.DELETE, ["a@x", "b@x"])) == ["ok", "ok"]
    assert delete.records == {} and ("delete", [0]) in delete.calls
    clear = Fake(r1="a@x")
    assert status(await write(clear, Operation.CLEAR, ["a@x", "b@x"])) == ["ok", "ok"]
    assert clear.calls == [("find", [0, 1]), ("update", [0])]


async def test_no_key_and_turns_for_shared_values() -> None:
    api = Fake()
    results = await write(api, Operation.UPSERT, [None, "a@x", "A@X", "b@x"])
    assert status(results)[0] == "rejected: no email value: acme needs it to find the record"
    assert [c for c in api.calls if c[0] == "find"] == [("find", [1, 3]), ("find", [2])]
    assert len(api.records) == 2 and api.records["r1"]["name"] == "n2"  # the last one wins


async def test_a_moved_record_is_updated_by_its_id_or_matched_when_gone() -> None:
    api = Fake(r1="old@x")
    results = await write(api, Operation.UPSERT, ["new@x", "other@x"], ["r1", "r9"])
    assert [r.record_id for r in results] == ["r1", "r2"]
    assert api.records["r1"]["email"] == "new@x" and api.calls[0] == ("update", [0, 1])


async def test_exists_after_all_is_updated_or_ok_and_a_silent_vendor_rejects() -> None:
    api = Fake(r1="a@x")
    api.taken = {"b@x": "r1"}
    assert status(await write(api, Operation.UPSERT, ["b@x"])) == ["ok"]
    assert api.records["r1"]["name"] == "n0"
    assert status(await write(api, Operation.INSERT, ["b@x"])) == ["ok"]

    async def silent(rows: Rows, idx: Sequence[int]) -> Answers:
        return {}

    batch = Batch(Operation.UPSERT, pa.table({"email": ["a@x"]}), ["1"], ["email"])
    [result] = await write_keyed(Fake(), batch, [{"email": "a@x"}], IDENTITY, upsert=silent)
    assert result.status is RecordStatus.REJECTED
    assert result.error == "acme answered without a result for this record"


@pytest.mark.parametrize("op", [Operation.UPDATE, Operation.CLEAR])
async def test_a_record_removed_while_written_is_rejected_to_go_again(op: Operation) -> None:
    api = Fake(r1="a@x")
    real_find = api.find

    async def find_then_remove(rows: Rows, idx: Sequence[int]) -> Found:
        found = await real_find(rows, idx)
        api.records.clear()
        return found

    api.find = find_then_remove  # type: ignore[method-assign]
    [result] = await write(api, op, ["a@x"])
    assert result.error == (
        "acme people record with email = a@x was removed while it was written: "
        "it is sent again next run"
    )
