"""The run-history SVG: geometry, accessibility and escaping."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC
from datetime import datetime

import pytest

from backhaul.web.charts import ChartRun
from backhaul.web.charts import nice_max
from backhaul.web.charts import run_history_svg

SVG = "{http://www.w3.org/2000/svg}"


def _run(
    label: str,
    added: int = 0,
    changed: int = 0,
    removed: int = 0,
    rejected: int = 0,
    duration: float = 1.0,
) -> ChartRun:
    return ChartRun(
        label,
        datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
        added,
        changed,
        removed,
        rejected,
        duration,
        "succeeded",
    )


def _parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, 1), (1, 1), (3, 5), (7, 10), (12, 20), (24, 25), (250, 250), (251, 500), (0.4, 0.5)],
)
def test_nice_max_rounds_up_to_a_readable_axis_maximum(value: float, expected: float) -> None:
    assert nice_max(value) == pytest.approx(expected)


def test_bars_stack_in_proportion_and_the_tallest_fills_the_plot() -> None:
    runs = [_run("a", added=10, changed=5, rejected=5), _run("b", added=20, duration=4.0)]
    root = _parse(str(run_history_svg(runs, title="History")))
    bars = root.findall(f"{SVG}g[@class='bar']")
    assert len(bars) == 2
    first = {r.get("class"): float(r.get("height", 0)) for r in bars[0].findall(f"{SVG}rect")}
    second = {r.get("class"): float(r.get("height", 0)) for r in bars[1].findall(f"{SVG}rect")}
    assert set(first) == {"s-added", "s-changed", "s-rejected"}
    # 20 rows is the axis maximum: run b's single segment is twice run a's added segment.
    assert second["s-added"] == pytest.approx(2 * first["s-added"], rel=0.01)
    assert first["s-changed"] == pytest.approx(first["s-rejected"], rel=0.01)
    assert sum(first.values()) == pytest.approx(second["s-added"], rel=0.01)


def test_duration_line_has_one_point_per_run_and_the_longest_is_highest() -> None:
    runs = [
        _run("a", added=1, duration=1.0),
        _run("b", added=1, duration=4.0),
        _run("c", added=1, duration=2.0),
    ]
    root = _parse(str(run_history_svg(runs, title="History")))
    line = root.find(f"{SVG}polyline[@class='duration']")
    assert line is not None
    ys = [float(p.split(",")[1]) for p in line.get("points", "").split()]
    assert len(ys) == 3
    assert min(ys) == ys[1]  # SVG y grows downwards


def test_chart_is_accessible_with_title_description_and_tooltips() -> None:
    runs = [_run("run 1a2b3c", added=3, rejected=1, duration=2.5)]
    root = _parse(str(run_history_svg(runs, title="Runs of pql_to_crm", chart_id="c1")))
    assert root.get("role") == "img"
    assert root.get("aria-labelledby") == "c1-t c1-d"
    title = root.find(f"{SVG}title")
    assert title is not None and title.text == "Runs of pql_to_crm"
    desc = root.find(f"{SVG}desc")
    assert desc is not None and "1 runs" in (desc.text or "") and "1 rejected" in (desc.text or "")
    tip = root.find(f"{SVG}g[@class='bar']/{SVG}title")
    assert tip is not None
    assert "run 1a2b3c" in (tip.text or "") and "rejected 1" in (tip.text or "")


def test_no_runs_gives_a_placeholder() -> None:
    root = _parse(str(run_history_svg([], title="Nothing")))
    assert root.findall(f"{SVG}g[@class='bar']") == []
    assert "No runs yet" in ET.tostring(root, encoding="unicode")


def test_a_run_that_sent_nothing_still_gets_a_visible_bar() -> None:
    root = _parse(str(run_history_svg([_run("idle", duration=0.0)], title="t")))
    rects = root.findall(f"{SVG}g[@class='bar']/{SVG}rect")
    assert [r.get("class") for r in rects] == ["s-none"]


def test_text_in_the_chart_is_escaped() -> None:
    evil = "<script>alert(1)</script>"
    svg = str(run_history_svg([_run(evil, added=1)], title=evil, chart_id='x"y'))
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg
    assert not re.search(r'id="x"y', svg)
    _parse(svg)  # still well-formed XML


def _heights(bar: ET.Element) -> dict[str, float]:
    return {r.get("class") or "": float(r.get("height", 0)) for r in bar.findall(f"{SVG}rect")}


def test_an_incremental_run_stays_visible_next_to_a_first_run() -> None:
    # Log scale: 12 rows next to 1.2M rows is a bar of a sixth of the plot, not a pixel.
    runs = [_run("first", added=1_200_000), _run("next", changed=12)]
    root = _parse(str(run_history_svg(runs, title="t")))
    first, second = (_heights(b) for b in root.findall(f"{SVG}g[@class='bar']"))
    assert second["s-changed"] > first["s-added"] / 6
    assert "rows (log)" in ET.tostring(root, encoding="unicode")


def test_one_rejected_row_is_visible_among_thousands() -> None:
    runs = [_run("a", added=50_000, rejected=1)]
    root = _parse(str(run_history_svg(runs, title="t")))
    heights = _heights(root.findall(f"{SVG}g[@class='bar']")[0])
    assert heights["s-rejected"] >= 3.0
    total = heights["s-added"] + heights["s-rejected"]
    plain = _heights(
        _parse(str(run_history_svg([_run("b", added=50_001)], title="t"))).findall(
            f"{SVG}g[@class='bar']"
        )[0]
    )
    assert total == pytest.approx(plain["s-added"], abs=0.2)  # the bar keeps its height


def test_failed_runs_are_marked_and_the_time_axis_is_labelled() -> None:
    runs = [
        ChartRun("r1", datetime(2024, 5, 1, 9, 0, tzinfo=UTC), 5, 0, 0, 0, 1.0, "succeeded"),
        ChartRun("r2", datetime(2024, 5, 1, 9, 30, tzinfo=UTC), 0, 0, 0, 0, 1.0, "failed"),
        ChartRun("r3", datetime(2024, 5, 2, 10, 0, tzinfo=UTC), 3, 0, 0, 0, 1.0, "succeeded"),
    ]
    root = _parse(str(run_history_svg(runs, title="t")))
    bars = root.findall(f"{SVG}g")
    classes = [b.get("class") for b in bars if (b.get("class") or "").startswith("bar")]
    assert classes == ["bar", "bar failed", "bar"]
    failed = next(b for b in bars if b.get("class") == "bar failed")
    assert failed.find(f"{SVG}path[@class='failed-mark']") is not None
    times = [t.text for t in root.findall(f"{SVG}text[@class='axis time']")]
    assert times == ["May 01 09:00 UTC", "May 01 09:30 UTC", "May 02 10:00 UTC"]


def test_the_overview_has_one_series_per_sync_with_a_legend() -> None:
    runs = [
        ChartRun("a 1", None, 5, 0, 0, 0, 1.0, "succeeded", "alpha"),
        ChartRun("b 1", None, 7, 0, 0, 2, 1.0, "partial", "beta"),
        ChartRun("a 2", None, 1, 0, 0, 0, 1.0, "succeeded", "alpha"),
    ]
    root = _parse(str(run_history_svg(runs, title="t", by_sync=True)))
    fills = [
        next(r.get("fill") for r in b.findall(f"{SVG}rect") if r.get("class") == "s-sync")
        for b in root.findall(f"{SVG}g[@class='bar']")
    ]
    assert fills[0] == fills[2] != fills[1]  # one colour per sync
    legend = root.find(f"{SVG}g[@class='legend']")
    assert legend is not None
    assert [t.text for t in legend.findall(f"{SVG}text")] == [
        "alpha",
        "beta",
        "rejected",
        "duration",
    ]
    swatches = [r.get("fill") for r in legend.findall(f"{SVG}rect")]
    assert swatches == [fills[0], fills[1], None]  # then the rejected key, styled by class
