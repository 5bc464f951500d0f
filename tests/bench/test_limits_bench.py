"""The rate-limit bench at a tiny size: its correctness outputs only, never its timings."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from backhaul.destinations.pii import sha256_hex

pytestmark = pytest.mark.integration

BENCH = Path(__file__).resolve().parents[2] / "bench"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while they are built
    spec.loader.exec_module(module)
    return module


def test_least_time_and_busiest_window_of_a_rolling_window() -> None:
    common = load("common")
    assert common.least_seconds(0, 5, 1.0) == 0.0
    assert common.least_seconds(5, 5, 1.0) == 0.0  # one window's worth goes at once
    assert common.least_seconds(6, 5, 1.0) == 1.0
    assert common.least_seconds(101, 100, 10.0) == 10.0
    assert common.busiest_window([0.0, 0.1, 0.2, 1.0, 1.05], 1.0) == 4  # (0.05, 1.05]
    assert common.busiest_window([2.0, 0.0, 0.5, 0.9], 1.0) == 3  # any order
    assert common.busiest_window([], 1.0) == 0


def test_an_audience_is_expected_to_hold_the_models_hashed_emails() -> None:
    bench = load("limits_bench")
    expected = bench.CASES["meta_audiences"].expected(2)
    assert expected == {sha256_hex("p1@bench.example"), sha256_hex("p2@bench.example")}
    assert bench.CASES["hubspot"].expected(1) == {"p1@bench.example": ("Person 1", "1")}


def test_tiny_run_keeps_each_limit_and_reaches_the_model(tmp_path: Path) -> None:
    out = tmp_path / "limits.json"
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH / "limits_bench.py"),
            "--vendors",
            "hubspot,braze,klaviyo,meta_audiences",
            "--limit",
            "4",
            "--window",
            "0.5",
            "--windows",
            "3",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results = {r["vendor"]: r for r in json.loads(out.read_text(encoding="utf-8"))["results"]}
    assert set(results) == {"hubspot", "braze", "klaviyo", "meta_audiences"}
    for vendor, r in results.items():
        assert r["status"] == "succeeded", (vendor, r["error"])
        assert r["counted_calls"] > 4, vendor  # more than one window's worth: the limit applied
        assert r["refused"] == 0 and r["answered_429"] == 0, vendor
        assert r["never_exceeded"] and r["state_equals_model"], vendor
        assert r["succeeded"] == r["rows"], vendor


def test_unknown_vendor_is_refused_with_the_known_ones(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH / "limits_bench.py"),
            "--vendors",
            "nope",
            "--out",
            str(tmp_path / "x.json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert "unknown vendor(s) nope" in done.stderr and "hubspot" in done.stderr
