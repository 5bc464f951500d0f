"""The app's signing key: made once, kept, and never read from what is not a file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from backhaul.errors import StateError
from backhaul.web.app import SECRET_FILE
from backhaul.web.app import load_secret
from conftest import within


def test_the_key_is_made_once_private_and_kept(tmp_path: Path) -> None:
    key = load_secret(tmp_path)

    assert len(key) >= 32
    assert stat.S_IMODE((tmp_path / SECRET_FILE).stat().st_mode) == 0o600
    assert load_secret(tmp_path) == key


def test_a_key_path_that_is_a_pipe_is_refused_never_waited_on(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / SECRET_FILE)  # reading it, or writing a new key, would wait forever

    refused = within(30, lambda: load_secret(tmp_path))

    assert isinstance(refused, StateError)
    assert f"signing key {tmp_path / SECRET_FILE} is a named pipe (FIFO)" in refused.message
    assert stat.S_ISFIFO((tmp_path / SECRET_FILE).stat().st_mode)  # left as it was
