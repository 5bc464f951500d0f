"""Reading project files that are too big, too deep or too clever, and ones that are fine.

The CLI cases (an alias bomb under `validate`, `run` and `serve`, a directory or a pipe
where a file belongs) are in tests/cli/test_bad_input.py; here the bounds themselves.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from backhaul.config.loader import read_yaml
from backhaul.config.yamlfile import MAX_ALIAS_VALUES
from backhaul.config.yamlfile import MAX_DEPTH
from backhaul.errors import ConfigError
from backhaul.files import MAX_TEXT_BYTES


def write(root: Path, text: str) -> Path:
    path = root / "s.yml"
    path.write_text(text, encoding="utf-8")
    return path


def test_anchors_aliases_and_merge_keys_within_bounds(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "base: &base\n  mode: upsert\n  tags: [a, b]\n"
        "copy: *base\n"
        "merged:\n  <<: *base\n  mode: mirror\n",
    )
    data, positions = read_yaml(path, tmp_path)
    assert data["copy"] == {"mode": "upsert", "tags": ["a", "b"]}
    assert data["merged"] == {"mode": "mirror", "tags": ["a", "b"]}
    assert positions.line("merged.mode") == 7
    assert positions.line("merged.tags") == 6  # a merged key: where the mapping starts


def _aliases(copies: int) -> str:
    # One anchored list of 999 values (1,000 with the list itself), repeated `copies` times.
    values = ", ".join(["x"] * 999)
    return f"a: &a [{values}]\nb:\n" + "".join("  - *a\n" for _ in range(copies))


def test_alias_expansion_is_bounded_exactly(tmp_path: Path) -> None:
    fits = MAX_ALIAS_VALUES // 1000
    data, _ = read_yaml(write(tmp_path, _aliases(fits)), tmp_path)
    assert len(data["b"]) == fits

    with pytest.raises(ConfigError) as err:
        read_yaml(write(tmp_path, _aliases(fits + 1)), tmp_path)
    # The alias that went over the bound is on line 2 + (fits + 1).
    assert err.value.message == (
        f"s.yml:{fits + 3}: aliases expand to more than {MAX_ALIAS_VALUES:,} values (at *a); "
        "write the repeated part out or use fewer nested aliases"
    )


def test_nesting_is_bounded_exactly(tmp_path: Path) -> None:
    deep = "x: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n"  # + the top mapping
    data, _ = read_yaml(write(tmp_path, deep), tmp_path)
    node, levels = data["x"], 0
    while isinstance(node, list):
        levels += 1
        node = node[0] if node else None
    assert levels == MAX_DEPTH - 1

    deeper = "x: " + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "\n"
    with pytest.raises(ConfigError, match=rf"^s.yml:1: nested more than {MAX_DEPTH} levels"):
        read_yaml(write(tmp_path, deeper), tmp_path)


def test_an_alias_inside_its_own_node(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^s.yml:2: alias \*a refers to a node that contains"):
        read_yaml(write(tmp_path, "a: &a\n  - *a\n"), tmp_path)


def test_a_huge_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "s.yml"
    with path.open("wb") as handle:  # a 2 GB sparse file: reading it would take 2 GB
        handle.truncate(2 * 1024**3)
    with pytest.raises(ConfigError) as err:
        read_yaml(path, tmp_path)
    assert err.value.message == (
        f"s.yml: is too large (2,048.0 MB; project files may be at most "
        f"{MAX_TEXT_BYTES // 1024 // 1024} MB)"
    )


def test_text_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "s.yml"
    path.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(
        ConfigError, match=r"^s.yml: is not UTF-8 text \(byte 9 cannot be decoded\)"
    ):
        read_yaml(path, tmp_path)


def test_a_fifo_is_named_not_opened(tmp_path: Path) -> None:
    path = tmp_path / "s.yml"
    os.mkfifo(path)
    # Opening a pipe for reading would block until a writer came: this returns at once.
    with pytest.raises(ConfigError, match=r"^s.yml: is a named pipe \(FIFO\), not a file"):
        read_yaml(path, tmp_path)
