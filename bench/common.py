"""What the rate-limit benchmarks share: writing project files and the least time a window allows."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML


def write_yaml(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as a block-style YAML file, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    yaml = YAML(typ="safe")
    yaml.default_flow_style = False
    with path.open("w", encoding="utf-8") as out:
        yaml.dump(data, out)


def least_seconds(calls: int, limit: int, interval: float) -> float:
    """The least time from the first to the last of ``calls`` a rolling window allows.

    Call ``k * limit + 1`` may arrive no sooner than ``k`` windows after the first call.
    """
    return (math.ceil(calls / limit) - 1) * interval if calls else 0.0


def busiest_window(times: Sequence[float], interval: float) -> int:
    """The most of ``times`` (seconds, any order) inside one rolling window of ``interval``."""
    ordered = sorted(times)
    most = start = 0
    for end, at in enumerate(ordered):
        while ordered[start] <= at - interval:
            start += 1
        most = max(most, end - start + 1)
    return most
