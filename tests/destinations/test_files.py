"""File destination: formats, layouts, atomic publish and recovery after a crash."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from backhaul.calls import MemoryRecorder
from backhaul.destinations.base import DestinationContext
from backhaul.destinations.base import Operation
from backhaul.destinations.base import RecordStatus
from backhaul.destinations.files import FileConfig
from backhaul.destinations.files import FileDestination
from backhaul.errors import DestinationError
from backhaul.errors import FailureType
from conftest import Builder

from .conftest import make_batch

pytestmark = pytest.mark.integration

FIELDS = {"id": pa.int64(), "email": pa.string(), "address.city": pa.string()}
SCHEMA = pa.schema(list(FIELDS.items()))


def ctx(project: Path, run_id: str) -> DestinationContext:
    return DestinationContext(
        project_dir=project, recorder=MemoryRecorder(), sync_name="users", run_id=run_id
    )


def dest(project: Path, run_id: str, **kw: Any) -> FileDestination:
    cfg = FileConfig.model_validate({"type": "file", **kw})
    return FileDestination(cfg, ctx(project, run_id))


def person(i: int, **kw: Any) -> dict[str, Any]:
    return {"id": i, "email": f"u{i}@x.io", "address.city": "Oslo", **kw}


def read(path: Path, fmt: str) -> list[dict[str, Any]]:
    if fmt == "csv":
        with path.open(newline="") as fh:
            return list(csv.DictReader(fh))
    if fmt == "jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    out: list[dict[str, Any]] = pq.read_table(path).to_pylist()
    return out


async def test_per_run_csv(tmp_path: Path) -> None:
    d = dest(tmp_path, "r1", format="csv", path="out/{sync}-{run_id}.csv")
    await d.check()
    await d.prepare(FIELDS, ["id"], None)
    res = await d.write(make_batch(Operation.UPSERT, [person(1), person(2)], schema=SCHEMA))
    assert [r.status for r in res] == [RecordStatus.OK] * 2
    await d.write(make_batch(Operation.DELETE, [{"id": 3}]))
    out = tmp_path / "out/users-r1.csv"
    assert not out.exists()  # published only on close
    await d.close()
    assert out.read_text().splitlines() == [
        "_operation,id,email,address.city",
        "upsert,1,u1@x.io,Oslo",
        "upsert,2,u2@x.io,Oslo",
        "delete,3,,",
    ]
    assert sorted(p.name for p in out.parent.iterdir()) == ["users-r1.csv"]


async def test_per_run_jsonl_nests_dotted_fields(tmp_path: Path) -> None:
    d = dest(tmp_path, "r1", format="jsonl", path="users-{run_id}.jsonl")
    await d.prepare(FIELDS, ["id"], None)
    await d.write(make_batch(Operation.UPSERT, [person(1)], schema=SCHEMA))
    await d.write(make_batch(Operation.CLEAR, [person(2, email=None)], schema=SCHEMA))
    await d.close()
    assert read(tmp_path / "users-r1.jsonl", "jsonl") == [
        {"_operation": "upsert", "id": 1, "email": "u1@x.io", "address": {"city": "Oslo"}},
        {"_operation": "clear", "id": 2, "email": None, "address": {"city": "Oslo"}},
    ]


async def test_per_run_parquet_keeps_types(tmp_path: Path) -> None:
    d = dest(tmp_path, "r1", format="parquet", path="users-{run_id}.parquet")
    await d.prepare(FIELDS, ["id"], None)
    await d.write(make_batch(Operation.UPSERT, [person(1), person(2)], schema=SCHEMA))
    await d.close()
    table = pq.read_table(tmp_path / "users-r1.parquet")
    assert table.schema.field("id").type == pa.int64()
    assert table.column("address.city").to_pylist() == ["Oslo", "Oslo"]
    assert table.column("_operation").to_pylist() == ["upsert", "upsert"]


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
async def test_current_layout_applies_every_operation(tmp_path: Path, fmt: str) -> None:
    path = f"state/users.{fmt}"
    d = dest(tmp_path, "r1", format=fmt, path=path, layout="current")
    await d.prepare(FIELDS, ["id"], None)
    await d.write(make_batch(Operation.UPSERT, [person(1), person(2), person(3)], schema=SCHEMA))
    await d.close()
    out = tmp_path / path
    assert len(read(out, fmt)) == 3

    d = dest(tmp_path, "r2", format=fmt, path=path, layout="current")
    await d.prepare(FIELDS, ["id"], None)
    res = await d.write(make_batch(Operation.UPDATE, [person(2, email="new"), person(9)]))
    assert res[1].status is RecordStatus.REJECTED
    assert res[1].error == "no row with key 9 in table current_state"
    await d.write(make_batch(Operation.INSERT, [person(1, email="ignored"), person(4)]))
    await d.write(make_batch(Operation.DELETE, [{"id": 3}]))
    clear = make_batch(
        Operation.CLEAR,
        [{"id": 4, "address.city": None}],
        schema=pa.schema([("id", pa.int64()), ("address.city", pa.string())]),
    )
    await d.write(clear)
    assert len(read(out, fmt)) == 3  # the published file changes only on close
    await d.close()
    got = read(out, fmt)
    if fmt == "jsonl":
        got = [
            {"id": r["id"], "email": r["email"], "address.city": r["address"]["city"]} for r in got
        ]
    if fmt == "csv":
        got = [{k: (int(v) if k == "id" else v or None) for k, v in r.items()} for r in got]
    assert got == [
        person(1),
        person(2, email="new"),
        {"id": 4, "email": "u4@x.io", "address.city": None},
    ]
    leftovers = sorted(p.name for p in out.parent.iterdir())
    assert leftovers == [f"users.{fmt}", f"users.{fmt}.backhaul.duckdb"]


async def test_current_layout_refuses_other_match_fields(tmp_path: Path) -> None:
    d = dest(tmp_path, "r1", format="csv", path="users.csv", layout="current")
    await d.prepare(FIELDS, ["id"], None)
    await d.close()
    d = dest(tmp_path, "r2", format="csv", path="users.csv", layout="current")
    with pytest.raises(DestinationError) as err:
        await d.prepare(FIELDS, ["email"], None)
    await d.close()
    assert err.value.failure is FailureType.CONFIG
    assert "keyed by (id) but the sync matches on (email)" in str(err.value)


async def test_publish_replaces_the_file_atomically(tmp_path: Path) -> None:
    out = tmp_path / "users.csv"
    out.write_text("old content\n")
    before = out.stat().st_ino
    d = dest(tmp_path, "r1", format="csv", path="users.csv", layout="current")
    await d.prepare(FIELDS, ["id"], None)
    await d.write(make_batch(Operation.UPSERT, [person(1)], schema=SCHEMA))
    assert out.read_text() == "old content\n"
    await d.close()
    # A new file was renamed over the old one, never rewritten in place.
    assert out.stat().st_ino != before
    assert out.read_text().splitlines() == ["id,email,address.city", "1,u1@x.io,Oslo"]
    assert not list(tmp_path.glob(".*.tmp"))


CRASH = """
import asyncio, os, sys
from pathlib import Path
import pyarrow as pa
from backhaul.destinations.base import Batch, DestinationContext, Operation
from backhaul.destinations.files import FileConfig, FileDestination
from backhaul.calls import NullRecorder

async def main():
    cfg = FileConfig(type="file", format="jsonl", path=sys.argv[2], layout=sys.argv[3])
    ctx = DestinationContext(Path(sys.argv[1]), NullRecorder(), "users", "dead")
    d = FileDestination(cfg, ctx)
    fields = {"id": pa.int64(), "email": pa.string()}
    await d.prepare(fields, ["id"], None)
    table = pa.table({"id": [1, 2], "email": ["a@x.io", "b@x.io"]})
    res = await d.write(Batch(Operation.UPSERT, table, ["1", "2"], ["id"]))
    print(len(res), flush=True)
    os._exit(0)  # die without close(): nothing is published

asyncio.run(main())
"""


@pytest.mark.parametrize(
    ("layout", "path", "published"),
    [
        ("per_run", "users-{run_id}.jsonl", "users-dead.jsonl"),
        ("current", "users.jsonl", "users.jsonl"),
    ],
)
async def test_crash_before_close_is_published_by_the_next_run(
    tmp_path: Path, layout: str, path: str, published: str
) -> None:
    script = tmp_path / "crash.py"
    script.write_text(textwrap.dedent(CRASH))
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path), path, layout],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == "2"
    out = tmp_path / published
    assert not out.exists()
    d = dest(tmp_path, "next", format="jsonl", path=path, layout=layout)
    await d.prepare({"id": pa.int64(), "email": pa.string()}, ["id"], None)
    rows = read(out, "jsonl")
    assert [r["id"] for r in rows] == [1, 2]
    assert rows[0]["email"] == "a@x.io"
    await d.close()
    if layout == "per_run":
        assert not (tmp_path / "users-next.jsonl").exists()  # this run wrote nothing


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
async def test_lost_state_is_rebuilt_from_the_published_file(tmp_path: Path, fmt: str) -> None:
    fields = {**FIELDS, "tags": pa.list_(pa.string())}
    schema = pa.schema(list(fields.items()))
    path = f"users.{fmt}"
    d = dest(tmp_path, "r1", format=fmt, path=path, layout="current")
    await d.prepare(fields, ["id"], None)
    await d.write(
        make_batch(Operation.UPSERT, [person(1, tags=["a"]), person(2, tags=None)], schema=schema)
    )
    await d.close()
    (tmp_path / f"{path}.backhaul.duckdb").unlink()
    d = dest(tmp_path, "r2", format=fmt, path=path, layout="current")
    await d.prepare(fields, ["id"], None)
    res = await d.write(
        make_batch(Operation.UPDATE, [person(2, email="new", tags=["b"])], schema=schema)
    )
    assert res[0].status is RecordStatus.OK  # the row came back from the file
    await d.close()
    got = read(tmp_path / path, fmt)
    assert [r["id"] if fmt != "csv" else int(r["id"]) for r in got] == [1, 2]
    assert got[1]["email"] == "new"
    assert (got[0]["tags"] if fmt != "csv" else json.loads(got[0]["tags"])) == ["a"]


async def test_added_mapping_becomes_a_column_of_the_current_file(tmp_path: Path) -> None:
    d = dest(tmp_path, "r1", format="parquet", path="u.parquet", layout="current")
    await d.prepare({"id": pa.int64()}, ["id"], None)
    await d.write(make_batch(Operation.UPSERT, [{"id": 1}]))
    await d.close()
    d = dest(tmp_path, "r2", format="parquet", path="u.parquet", layout="current")
    await d.prepare({"id": pa.int64(), "plan": pa.string()}, ["id"], None)
    await d.write(make_batch(Operation.UPSERT, [{"id": 2, "plan": "pro"}]))
    await d.close()
    assert read(tmp_path / "u.parquet", "parquet") == [
        {"id": 1, "plan": None},
        {"id": 2, "plan": "pro"},
    ]


@pytest.mark.parametrize(
    ("at", "plant", "said"),
    [
        ("out/users.csv", os.mkfifo, "is a named pipe (FIFO), not a file"),
        ("out/users.csv", Path.mkdir, "is a directory, not a file"),
        ("out/users.csv.backhaul.duckdb", os.mkfifo, "is a named pipe (FIFO), not a file"),
    ],
    ids=["file-pipe", "file-folder", "sidecar-pipe"],
)
def test_a_file_destination_path_that_holds_no_file_is_refused_not_waited_on(
    project: Builder, at: str, plant: Callable[[Path], object], said: str
) -> None:
    project.users(3)
    project.destination("out", type="file", format="csv", path="out/users.csv", layout="current")
    project.sync("s", destination="out")
    (project.root / "out").mkdir()
    plant(project.root / at)  # the file is read back, the sidecar opened: a pipe would wait

    ran = project.cli("run", "s")
    assert ran.returncode == 1, ran.stderr
    assert f"cannot write {project.root / at}: the path {said}" in " ".join(ran.stderr.split())
