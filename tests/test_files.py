"""Paths Backhaul reads or may create: what stands there, and opening only regular files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from backhaul.files import MISSING
from backhaul.files import NotReadable
from backhaul.files import not_a_file
from backhaul.files import open_regular
from backhaul.files import problem
from conftest import within


def test_not_a_file_passes_a_file_or_nothing_and_names_anything_else(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")

    assert not_a_file(tmp_path / "file") is None
    assert not_a_file(tmp_path / "absent") is None
    assert problem(tmp_path / "absent") == MISSING
    assert not_a_file(tmp_path / "folder") == "is a directory, not a file"
    assert not_a_file(tmp_path / "pipe") == "is a named pipe (FIFO), not a file"
    assert not_a_file(tmp_path / "dangling") == (
        f"is a broken symbolic link (to {tmp_path / 'gone'}, which does not exist)"
    )


def test_open_regular_reads_a_file_and_refuses_a_pipe_without_waiting(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"abc")
    os.mkfifo(tmp_path / "pipe")

    with open_regular(tmp_path / "file") as handle:
        assert handle.read() == b"abc"
    refused = within(30, lambda: open_regular(tmp_path / "pipe"))
    assert isinstance(refused, NotReadable)
    assert refused.reason == "is a named pipe (FIFO), not a file"
    with pytest.raises(NotReadable) as missing:
        open_regular(tmp_path / "absent")
    assert missing.value.reason == MISSING
