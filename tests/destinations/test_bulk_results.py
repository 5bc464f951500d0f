"""Columnar batch results, key rounds and the engine's checkpoint of a bulk batch."""

from __future__ import annotations

import pyarrow as pa
import pytest

from backhaul.destinations.base import (
    Batch,
    BatchResults,
    Operation,
    RecordResult,
    RecordStatus,
)
from backhaul.destinations.sql_common import key_rounds
from backhaul.engine.batches import Prepared, sort_results


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
    columnar = sort_results(prepared, BatchResults(5, {1: "bad", 4: "worse"}), ["k0"], ["m0"])
    per_row = sort_results(
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
    assert columnar[0].equals(per_row[0])
    assert columnar[1] is not None and per_row[1] is not None
    assert columnar[1].equals(per_row[1])
    assert columnar[2].equals(per_row[2])
    assert columnar[0].column("k0").to_pylist() == [0, 2, 3]
    assert columnar[1].column("error").to_pylist() == ["bad", "worse"]
    ok = sort_results(prepared, BatchResults(5), ["k0"], ["m0"])
    assert ok[1] is None
    assert ok[2].column("status").to_pylist() == ["ok"] * 5
