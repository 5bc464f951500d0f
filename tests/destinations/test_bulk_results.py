"""Columnar batch results, key rounds and the engine's checkpoint of a bulk batch."""

from __future__ import annotations

import pyarrow as pa
import pytest

from backhaul.destinations.base import Batch
from backhaul.destinations.base import BatchResults
from backhaul.destinations.base import Operation
from backhaul.destinations.base import RecordResult
from backhaul.destinations.base import RecordStatus
from backhaul.destinations.sql_common import key_rounds
from backhaul.engine.batches import Prepared
from backhaul.engine.batches import partition_results


def test_batch_results_read_like_a_list_of_record_results() -> None:
    res = BatchResults(4, {2: "too long"})
    assert len(res) == 4
    assert list(res) == [
        RecordResult.ok(0),
        RecordResult.ok(1),
        RecordResult.rejected(2, "too long"),
        RecordResult.ok(3),
    ]
    assert res[-2].status is RecordStatus.REJECTED
    assert res[1:3] == [RecordResult.ok(1), RecordResult.rejected(2, "too long")]
    with pytest.raises(IndexError):
        res[4]
    with pytest.raises(ValueError, match="outside a batch of 4"):
        BatchResults(4, {4: "x"})


def test_key_rounds_keep_a_batch_without_repeats_whole() -> None:
    table = pa.table({"id": list(range(5)), "v": list("abcde")})
    assert key_rounds(table, ["id"]) == [[0, 1, 2, 3, 4]]


def test_key_rounds_put_each_repeat_of_a_key_in_a_later_round() -> None:
    table = pa.table({"a": [1, 1, 2, 1, 2], "b": ["x", "x", "x", "x", "y"]})
    assert key_rounds(table, ["a", "b"]) == [[0, 2, 4], [1], [3]]
    assert key_rounds(table, ["a"]) == [[0, 2], [1, 4], [3]]


def test_key_rounds_with_null_keys_treat_nulls_as_one_key() -> None:
    table = pa.table({"id": pa.array([None, 1, None], pa.int64())})
    assert key_rounds(table, ["id"]) == [[0, 1], [2]]
    emails = pa.table({"email": pa.array(["a@x", None, "b@x", None, "a@x"], pa.string())})
    assert key_rounds(emails, ["email"]) == [[0, 1, 2], [3, 4]]


def test_key_rounds_of_values_arrow_cannot_hash_still_split_repeats() -> None:
    table = pa.table({"tags": pa.array([["a"], ["b"], ["a"]], pa.list_(pa.string()))})
    assert key_rounds(table, ["tags"]) == [[0, 1], [2]]


def _prepared(n: int) -> Prepared:
    rows = pa.table(
        {
            "op": ["add"] * n,
            "k0": list(range(n)),
            "key_text": [str(i) for i in range(n)],
            "fp": list(range(100, 100 + n)),
            "m0": list(range(n)),
        }
    )
    batch = Batch(
        Operation.UPSERT, pa.table({"id": list(range(n))}), [str(i) for i in range(n)], ["id"]
    )
    return Prepared(batch, rows, Operation.UPSERT)


def test_columnar_results_checkpoint_like_per_row_results() -> None:
    prepared = _prepared(5)
    columnar = partition_results(prepared, BatchResults(5, {1: "bad", 4: "worse"}), ["k0"], ["m0"])
    per_row = partition_results(
        prepared,
        [
            RecordResult.ok(0),
            RecordResult.rejected(1, "bad"),
            RecordResult.ok(2),
            RecordResult.ok(3),
            RecordResult.rejected(4, "worse"),
        ],
        ["k0"],
        ["m0"],
    )
    assert columnar.acked is not None and per_row.acked is not None
    assert columnar.acked.equals(per_row.acked)
    assert columnar.rejected is not None and per_row.rejected is not None
    assert columnar.rejected.equals(per_row.rejected)
    assert columnar.outcomes.equals(per_row.outcomes)
    assert columnar.acked.column("k0").to_pylist() == [0, 2, 3]
    assert columnar.rejected.column("error").to_pylist() == ["bad", "worse"]


def test_an_all_accepted_batch_lands_like_its_per_row_results() -> None:
    prepared = _prepared(5)
    columnar = partition_results(prepared, BatchResults(5), ["k0"], ["m0"])
    per_row = partition_results(prepared, [RecordResult.ok(i) for i in range(5)], ["k0"], ["m0"])
    assert columnar.rejected is None and per_row.rejected is None
    assert columnar.acked is not None and per_row.acked is not None
    assert columnar.acked.equals(per_row.acked)
    assert columnar.outcomes.to_pylist() == per_row.outcomes.to_pylist()
    assert columnar.outcomes.schema == per_row.outcomes.schema
    assert columnar.outcomes.column("status").to_pylist() == ["ok"] * 5
    assert columnar.outcomes.column("operation").to_pylist() == ["upsert"] * 5


def test_a_batch_sent_in_one_call_names_that_call_on_every_row() -> None:
    prepared = _prepared(4)
    for rejected in ({}, {2: "refused", 3: ""}):
        results = BatchResults(4, rejected, call_id="c-1")
        columnar = partition_results(prepared, results, ["k0"], ["m0"])
        per_row = partition_results(prepared, list(results), ["k0"], ["m0"])
        assert columnar.outcomes.to_pylist() == per_row.outcomes.to_pylist()
        assert columnar.outcomes.column("call_id").to_pylist() == ["c-1"] * 4
    assert columnar.outcomes.column("error").to_pylist() == [
        None,
        None,
        "refused",
        "rejected by the destination (no reason given)",
    ]
    assert list(BatchResults(2, {1: "x"}, call_id="c-2")) == [
        RecordResult.ok(0, "c-2"),
        RecordResult.rejected(1, "x", "c-2"),
    ]


def test_a_missing_result_refuses_its_row() -> None:
    prepared = _prepared(3)
    landed = partition_results(prepared, [RecordResult.ok(0), RecordResult.ok(2)], ["k0"], [])
    assert landed.acked is not None
    assert landed.acked.column("k0").to_pylist() == [0, 2]
    assert landed.rejected is not None
    assert landed.rejected.to_pylist() == [
        {
            "k0": 1,
            "key_text": "1",
            "op": "add",
            "error": "the destination returned no result for this record",
        }
    ]


def test_rows_not_sent_are_skipped_and_still_checkpointed() -> None:
    rows = _prepared(2).rows.set_column(0, "op", pa.array(["skip", "remove"]))
    landed = partition_results(Prepared(None, rows, None), None, ["k0"], ["m0"])
    assert landed.rejected is None
    assert landed.acked is not None
    assert landed.acked.column("k0").to_pylist() == [0, 1]
    assert landed.outcomes.column("status").to_pylist() == ["skipped", "skipped"]
    assert landed.outcomes.column("op").to_pylist() == ["change", "remove"]
    assert landed.outcomes.column("operation").null_count == 2
    assert None not in landed.outcomes.column("error").to_pylist()
