"""Run-history charts as inline SVG, rendered on the server (no JavaScript, no chart library).

Every piece of text that goes into the SVG is escaped here, so the returned
:class:`~markupsafe.Markup` is safe to drop into a template as it is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

from markupsafe import Markup

# Series drawn bottom-up in each bar: (attribute, legend label, CSS class).
SERIES = (
    ("added", "added", "s-added"),
    ("changed", "changed", "s-changed"),
    ("removed", "removed", "s-removed"),
    ("rejected", "rejected", "s-rejected"),
)


@dataclass(frozen=True, slots=True)
class ChartRun:
    """One bar of a run-history chart."""

    label: str  # what the tooltip names the run by (short id, or sync and id)
    started_at: datetime | None
    added: int
    changed: int
    removed: int
    rejected: int
    duration_s: float
    status: str
    sync: str = ""

    @property
    def total(self) -> int:
        return self.added + self.changed + self.removed + self.rejected


@dataclass(frozen=True, slots=True)
class _Box:
    width: int
    height: int
    left: int = 48
    right: int = 52
    top: int = 28
    bottom: int = 34

    @property
    def plot_w(self) -> int:
        return self.width - self.left - self.right

    @property
    def plot_h(self) -> int:
        return self.height - self.top - self.bottom

    @property
    def base(self) -> int:
        return self.top + self.plot_h


def _svg_open(
    classes: str, width: int, height: int, chart_id: str, title: str, desc: str
) -> list[str]:
    """The start of a chart's ``<svg>``: a screen reader names it by its ``<title>`` and
    reads the ``<desc>`` summary, tied to it by ids prefixed with ``chart_id``."""
    uid = escape(chart_id)
    return [
        f'<svg class="{classes}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{uid}-t {uid}-d" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{uid}-t">{escape(title)}</title>',
        f'<desc id="{uid}-d">{escape(desc)}</desc>',
    ]


def _closed_empty(parts: list[str], x: float, y: float, text: str) -> Markup:
    """The chart begun in ``parts`` with only ``text`` centred at (x, y): nothing to draw."""
    parts.append(
        f'<text class="empty" x="{x:g}" y="{y:g}" text-anchor="middle">{escape(text)}</text></svg>'
    )
    return Markup("".join(parts))  # every text above is escaped


def nice_max(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is at least ``value``."""
    if value <= 0:
        return 1.0
    power = 1.0
    while power * 10 <= value:
        power *= 10
    while power > value:
        power /= 10
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power  # pragma: no cover - the loop always returns


def _num(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def _seconds(value: float) -> str:
    if value >= 120:
        return f"{value / 60:.3g} min"
    return f"{value:.3g} s"


def _tooltip(run: ChartRun) -> str:
    when = run.started_at.strftime("%Y-%m-%d %H:%M UTC") if run.started_at else "not started"
    return (
        f"{run.label} · {run.status} · {when}\n"
        f"added {run.added}, changed {run.changed}, removed {run.removed}, "
        f"rejected {run.rejected} · {_seconds(run.duration_s)}"
    )


#: Colours of the per-sync series on the overview (a sync keeps its colour by name order).
SYNC_COLOURS = (
    "#2e6fd0",
    "#2e9d57",
    "#c77c1a",
    "#8a4fc7",
    "#1a9aa6",
    "#b8457a",
    "#6b7d1f",
    "#5b6472",
)
MIN_SEGMENT = 3.0  # SVG units: one rejected row next to thousands delivered stays visible
FAILED = ("failed", "guarded")


def log_height(value: float, top: float, plot_h: float) -> float:
    """The height of ``value`` rows on a log scale whose top is ``top`` rows: a first run
    of a million rows and an incremental run of ten both stay visible."""
    if value <= 0:
        return 0.0
    return math.log10(1 + value) / math.log10(1 + top) * plot_h


def _log_top(value: float) -> float:
    """The smallest power of ten at least ``value`` (the axis top, at least 10)."""
    top = 10.0
    while top < value:
        top *= 10
    return top


def run_history_svg(
    runs: Sequence[ChartRun],
    *,
    title: str,
    chart_id: str = "run-history",
    width: int = 760,
    height: int = 240,
    by_sync: bool = False,
) -> Markup:
    """A bar per run (delivered added/changed/removed, rejected) with a duration line.

    Rows are on a log scale (labelled 1, 10, 100, ...), so an incremental run stays visible
    next to a first run of millions; within a bar, segments keep their proportions but a
    non-empty segment is never thinner than :data:`MIN_SEGMENT`, so one rejected row shows.
    A failed or guarded run is marked with a red cross under its bar. The time axis names
    the start of the first, middle and last run.

    Args:
        runs: runs oldest first; each becomes one bar, left to right.
        title: the chart's accessible name (escaped here).
        chart_id: prefix of the element ids, unique within the page.
        width: width of the drawing in SVG units (it scales to its container).
        height: height in SVG units.
        by_sync: one colour (series) per sync, with a legend of syncs (the overview);
            the run's ``sync`` names it. Otherwise the colours are the kinds of change.

    Returns:
        An ``<svg>`` element with a ``<title>``, a ``<desc>`` summary and a tooltip per bar.
    """
    box = _Box(width, height)
    parts = _svg_open("chart", width, height, chart_id, title, _description(runs))
    if not runs:
        return _closed_empty(parts, width / 2, height / 2, "No runs yet")

    rows_top = _log_top(max(r.total for r in runs))
    secs_max = nice_max(max(r.duration_s for r in runs))
    parts += _axes(box, rows_top, secs_max)
    colours = _sync_colours(runs) if by_sync else {}

    slot = box.plot_w / len(runs)
    bar_w = max(1.0, min(28.0, slot * 0.7))
    points: list[tuple[float, float]] = []
    for i, run in enumerate(runs):
        x = box.left + slot * i + (slot - bar_w) / 2
        failed = run.status in FAILED
        parts.append(
            f'<g class="{"bar failed" if failed else "bar"}"><title>{escape(_tooltip(run))}</title>'
        )
        y = float(box.base)
        for css, h, fill in _segments(run, rows_top, box.plot_h, colours):
            y -= h
            # A fill attribute, not a style: the app's content security policy forbids
            # inline styles.
            style = f' fill="{fill}"' if fill else ""
            parts.append(
                f'<rect class="{css}" x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" '
                f'height="{h:.1f}"{style}/>'
            )
        if run.total == 0:
            # A run that sent nothing still gets a sliver, so it is visible and hoverable.
            parts.append(
                f'<rect class="s-none" x="{x:.1f}" y="{box.base - 1:.1f}" '
                f'width="{bar_w:.1f}" height="1"/>'
            )
        if failed:
            mx, my, r = x + bar_w / 2, box.base + 8.0, 3.5
            parts.append(
                f'<path class="failed-mark" d="M{mx - r:.1f},{my - r:.1f}L{mx + r:.1f},'
                f'{my + r:.1f}M{mx - r:.1f},{my + r:.1f}L{mx + r:.1f},{my - r:.1f}"/>'
            )
        parts.append("</g>")
        cy = box.base - run.duration_s / secs_max * box.plot_h
        points.append((x + bar_w / 2, cy))

    line = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
    parts.append(f'<polyline class="duration" points="{line}"/>')
    parts += [
        f'<circle class="duration-dot" cx="{px:.1f}" cy="{py:.1f}" r="2.5"/>' for px, py in points
    ]
    parts += _time_axis(box, runs, slot)
    parts += _sync_legend(box, colours) if by_sync else _legend(box)
    parts.append("</svg>")
    return Markup("".join(parts))  # every text above is escaped


def _segments(
    run: ChartRun, rows_top: float, plot_h: float, colours: dict[str, str]
) -> list[tuple[str, float, str | None]]:
    """The bar's pieces bottom-up: (CSS class, height, fill or None for the class's)."""
    if run.total <= 0:
        return []
    total_h = log_height(run.total, rows_top, plot_h)
    values: list[tuple[str, int, str | None]]
    if colours:
        delivered = run.total - run.rejected
        values = [("s-sync", delivered, colours[run.sync]), ("s-rejected", run.rejected, None)]
    else:
        values = [(css, int(getattr(run, attr)), None) for attr, _label, css in SERIES]
    shown = [(css, v, fill) for css, v, fill in values if v > 0]
    heights = [max(v / run.total * total_h, MIN_SEGMENT) for _, v, _ in shown]
    # Keep the bar's height: what the thin segments gained comes off the tallest one.
    extra = sum(heights) - total_h
    if extra > 0:
        tallest = heights.index(max(heights))
        heights[tallest] = max(heights[tallest] - extra, MIN_SEGMENT)
    return [(css, h, fill) for (css, _, fill), h in zip(shown, heights, strict=True)]


def _sync_colours(runs: Sequence[ChartRun]) -> dict[str, str]:
    names = sorted({r.sync for r in runs})
    return {n: SYNC_COLOURS[i % len(SYNC_COLOURS)] for i, n in enumerate(names)}


def _time_axis(box: _Box, runs: Sequence[ChartRun], slot: float) -> list[str]:
    """Start times under the first, middle and last bar (with dates when runs span days)."""
    times = [r.started_at for r in runs if r.started_at is not None]
    if not times:
        return []
    fmt = "%H:%M" if len({t.date() for t in times}) == 1 else "%b %d %H:%M"
    picks = sorted({0, (len(runs) - 1) // 2, len(runs) - 1})
    out: list[str] = []
    for i in picks:
        moment = runs[i].started_at
        if moment is None:
            continue
        x = box.left + slot * i + slot / 2
        if len(picks) > 1 and i == 0:
            anchor = "start"
        elif len(picks) > 1 and i == len(runs) - 1:
            anchor = "end"
        else:
            anchor = "middle"
        out.append(
            f'<text class="axis time" x="{x:.1f}" y="{box.base + 24}" '
            f'text-anchor="{anchor}">{escape(moment.strftime(fmt))} UTC</text>'
        )
    return out


def _sync_legend(box: _Box, colours: dict[str, str]) -> list[str]:
    """The syncs' colours (as many as fit, then "+N more"), then rejected and duration."""
    out = ['<g class="legend">']
    x = box.left + 56
    y = box.top - 16
    limit = box.left + box.plot_w - 190  # room for the rejected and duration keys
    names = list(colours)
    for i, name in enumerate(names):
        shown = name if len(name) <= 18 else name[:17] + "…"
        if x + 24 + 7 * len(shown) > limit:
            more = f"+{len(names) - i} more"
            out.append(f'<text x="{x}" y="{y + 9}">{more}</text>')
            x += 12 + 7 * len(more)
            break
        out.append(f'<rect x="{x}" y="{y}" width="10" height="10" fill="{colours[name]}"/>')
        out.append(f'<text x="{x + 14}" y="{y + 9}">{escape(shown)}</text>')
        x += 24 + 7 * len(shown)
    out.append(f'<rect class="s-rejected" x="{x}" y="{y}" width="10" height="10"/>')
    out.append(f'<text x="{x + 14}" y="{y + 9}">rejected</text>')
    x += 24 + 7 * len("rejected")
    out.append(f'<line class="duration" x1="{x}" y1="{y + 5}" x2="{x + 14}" y2="{y + 5}"/>')
    out.append(f'<text x="{x + 18}" y="{y + 9}">duration</text>')
    out.append("</g>")
    return out


def _description(runs: Sequence[ChartRun]) -> str:
    if not runs:
        return "No runs recorded yet."
    totals = {attr: sum(int(getattr(r, attr)) for r in runs) for attr, _, _ in SERIES}
    longest = max(r.duration_s for r in runs)
    return (
        f"{len(runs)} runs, oldest to newest. In total: "
        + ", ".join(f"{n} {name}" for name, n in totals.items())
        + f". Longest run {_seconds(longest)}."
    )


def _axes(box: _Box, rows_top: float, secs_max: float) -> list[str]:
    out: list[str] = []
    ticks = [0.0]
    tick = 1.0
    while tick <= rows_top:
        ticks.append(tick)
        tick *= 10
    step = max(1, (len(ticks) - 1) // 4)  # at most five labelled lines
    for value in [ticks[0], *ticks[1::step]]:
        y = box.base - log_height(value, rows_top, box.plot_h)
        out.append(
            f'<line class="grid" x1="{box.left}" y1="{y:.1f}" '
            f'x2="{box.left + box.plot_w}" y2="{y:.1f}"/>'
        )
        out.append(
            f'<text class="axis" x="{box.left - 6}" y="{y + 4:.1f}" '
            f'text-anchor="end">{_num(value)}</text>'
        )
    for frac in (0.0, 0.5, 1.0):
        y = box.base - frac * box.plot_h
        out.append(
            f'<text class="axis axis-duration" x="{box.left + box.plot_w + 6}" '
            f'y="{y + 4:.1f}">{_seconds(secs_max * frac)}</text>'
        )
    out.append(f'<text class="axis" x="4" y="{box.top - 12}">rows (log)</text>')
    out.append(
        f'<text class="axis axis-duration" x="{box.left + box.plot_w + 6}" '
        f'y="{box.top - 12}">duration</text>'
    )
    return out


def _legend(box: _Box) -> list[str]:
    out = ['<g class="legend">']
    x = box.left + 40
    y = box.top - 16
    for _attr, label, css in SERIES:
        out.append(f'<rect class="{css}" x="{x}" y="{y}" width="10" height="10"/>')
        out.append(f'<text x="{x + 14}" y="{y + 9}">{label}</text>')
        x += 24 + 7 * len(label)
    out.append(f'<line class="duration" x1="{x}" y1="{y + 5}" x2="{x + 14}" y2="{y + 5}"/>')
    out.append(f'<text x="{x + 18}" y="{y + 9}">duration</text>')
    out.append("</g>")
    return out


def breakdown_svg(
    values: Sequence[tuple[str, int]],
    *,
    title: str,
    other: int = 0,
    chart_id: str = "breakdown",
    width: int = 560,
) -> Markup:
    """A horizontal bar per value (members with that value), most frequent first.

    Args:
        values: ``(label, count)`` pairs in the order to draw them.
        title: the chart's accessible name (escaped here).
        other: members whose value is not among ``values``; drawn as a last bar "other".
        chart_id: prefix of the element ids, unique within the page.
        width: width of the drawing in SVG units (it scales to its container).
    """
    bars = [*values, ("other", other)] if other else list(values)
    label_w, right, row_h, top = 150, 70, 22, 8
    height = top * 2 + row_h * max(len(bars), 1)
    total = sum(n for _, n in bars)
    desc = ", ".join(f"{label}: {n}" for label, n in bars) or "no members"
    parts = _svg_open("chart breakdown", width, height, chart_id, title, desc)
    if not bars:
        return _closed_empty(parts, width / 2, height / 2 + 4, "No members")
    top_n = max(n for _, n in bars) or 1
    plot_w = width - label_w - right
    for i, (label, n) in enumerate(bars):
        y = top + i * row_h
        w = max(n / top_n * plot_w, 1.0)
        share = f"{n / total:.0%}" if total else "0%"
        shown = label if len(label) <= 22 else label[:21] + "…"
        parts += [
            f'<g class="bar"><title>{escape(f"{label}: {n} ({share})")}</title>',
            f'<text class="axis" x="{label_w - 6}" y="{y + 15}" text-anchor="end">'
            f"{escape(shown)}</text>",
            f'<rect class="s-added" x="{label_w}" y="{y + 3}" width="{w:.1f}" '
            f'height="{row_h - 6}"/>',
            f'<text class="axis" x="{label_w + w + 4:.1f}" y="{y + 15}">'
            f"{escape(f'{n} · {share}')}</text></g>",
        ]
    parts.append("</svg>")
    return Markup("".join(parts))  # every text above is escaped


__all__ = [
    "MIN_SEGMENT",
    "SERIES",
    "ChartRun",
    "breakdown_svg",
    "log_height",
    "nice_max",
    "run_history_svg",
]
