"""Cutting an outbox chunk into destination batches (engine/batches.py)."""

from __future__ import annotations

import math

import pyarrow as pa

from backhaul.config.models import Mode
from backhaul.config.models import OnRemove
from backhaul.config.models import SyncConfig
from backhaul.destinations.base import Operation
from backhaul.engine.batches import Split
from backhaul.engine.batches import split_chunk
from backhaul.engine.mapping import Mapper

SYNC = SyncConfig.model_validate(
    {
        "model": "people",
        "destination": "hook",
        "mode": "mirror",
        "mappings": [{"column": "id", "field": "id"}, {"column": "score", "field": "score"}],
    }
)


def chunk(ops: list[str], scores: list[float] | None = None) -> pa.Table:
    n = len(ops)
    return pa.table(
        {
            "op": ops,
            "k0": list(range(n)),
            "key_text": [str(i) for i in range(n)],
            "fp": list(range(n)),
            "m0": list(range(n)),
            "f0": list(range(n)),
            "f1": pa.array(scores or [1.5] * n, pa.float64()),
        }
    )


def cut(table: pa.Table) -> Split:
    mapper = Mapper(SYNC, ["id", "score"], types={"id": "BIGINT", "score": "DOUBLE"})
    return split_chunk(
        table,
        mapper,
        mode=Mode.MIRROR,
        removal=OnRemove.DELETE,
        match_fields=["id"],
        object=None,
        batch_id=0,
    )


def split(table: pa.Table) -> list[tuple[Operation | None, list[str]]]:
    return [(p.operation, p.rows.column("key_text").to_pylist()) for p in cut(table).prepared]


def test_a_chunk_of_one_operation_goes_whole() -> None:
    assert split(chunk(["add"] * 4)) == [(Operation.UPSERT, ["0", "1", "2", "3"])]
    assert split(chunk(["remove"] * 2)) == [(Operation.DELETE, ["0", "1"])]


def test_a_mixed_chunk_is_grouped_by_operation_in_a_fixed_order() -> None:
    grouped = split(chunk(["remove", "add", "change", "remove", "retry", "add"]))
    # add, change and retry share one operation and one batch; removals come last.
    assert grouped == [
        (Operation.UPSERT, ["1", "5", "2", "4"]),
        (Operation.DELETE, ["0", "3"]),
    ]


def test_a_row_holding_a_non_finite_value_is_held_out_only_when_it_is_sent() -> None:
    result = cut(chunk(["add", "remove", "change"], [math.nan, math.inf, 2.0]))
    assert [(o.key, o.status.value) for o in result.invalid] == [("0", "invalid")]
    assert [p.rows.column("key_text").to_pylist() for p in result.prepared] == [["2"], ["1"]]
