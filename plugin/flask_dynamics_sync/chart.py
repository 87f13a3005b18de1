"""Server-side SVG bar charts: no JavaScript, no CDN, nothing a strict CSP blocks.

Colours are SVG presentation attributes (allowed by any ``style-src``; a
stylesheet may still override them through the ``ds-series-<key>`` classes),
and every bar is a ``<g>`` whose ``<title>`` the browser shows on hover: the
hour and its counts. Texts arrive already translated and formatted; this
module only lays them out and escapes them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from collections.abc import Sequence

from markupsafe import Markup
from markupsafe import escape

#: Geometry of a chart, in SVG user units (the ``viewBox``; the image scales to its box).
WIDTH = 720
HEIGHT = 180
MARGIN_LEFT = 48
MARGIN_RIGHT = 8
MARGIN_TOP = 8
MARGIN_BOTTOM = 22
GRID_COLOR = "#dee2e6"
TEXT_COLOR = "#6c757d"


@dataclasses.dataclass(frozen=True)
class ChartSeries:
    """One stacked layer: a value per bar."""

    key: str
    """Stable identifier, used in the CSS class ``ds-series-<key>``."""
    label: str
    values: Sequence[int]
    color: str


@dataclasses.dataclass(frozen=True)
class BarChart:
    """A stacked bar chart, one bar per bucket (hour)."""

    title: str
    buckets: Sequence[str]
    """What each bar stands for, shown on hover (e.g. a localised hour range)."""
    axis_labels: Sequence[str | None]
    """Text under a bar, or ``None`` (label only some bars so they stay legible)."""
    series: Sequence[ChartSeries]
    partial_last: bool = False
    """The last bucket is still filling up: drawn lighter, its tooltip says so."""
    partial_note: str = ""
    empty_text: str = ""
    """Shown across the plot when every bar is zero."""


def nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 × 10ⁿ not below ``value`` (at least 1): the top of the axis."""
    if value <= 1:
        return 1
    magnitude: int = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude  # pragma: no cover - the loop always returns


def _num(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def render_bar_chart(chart: BarChart, *, format_number: Callable[[int], str] = str) -> Markup:
    """The chart as an inline ``<svg>`` element (safe markup)."""
    count = len(chart.buckets)
    totals = [sum(s.values[i] for s in chart.series) for i in range(count)]
    top = nice_ceiling(max(totals, default=0))
    plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    slot = plot_w / max(count, 1)
    bar_w = max(slot * 0.8, 1.0)
    baseline = MARGIN_TOP + plot_h

    parts = [
        f'<svg class="ds-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-label="{escape(chart.title)}">',
        f"<title>{escape(chart.title)}</title>",
    ]
    ticks = (0, top // 2, top) if top % 2 == 0 else (0, top)
    for tick in ticks:
        y = baseline - tick / top * plot_h
        parts.append(
            f'<line class="ds-grid" x1="{MARGIN_LEFT}" x2="{WIDTH - MARGIN_RIGHT}" y1="{_num(y)}" y2="{_num(y)}" '
            f'stroke="{GRID_COLOR}" stroke-width="1"/>'
        )
        parts.append(
            f'<text class="ds-axis" x="{MARGIN_LEFT - 4}" y="{_num(y + 3)}" text-anchor="end" font-size="10" '
            f'fill="{TEXT_COLOR}">{escape(format_number(tick))}</text>'
        )
    for i in range(count):
        x = MARGIN_LEFT + i * slot + (slot - bar_w) / 2
        partial = chart.partial_last and i == count - 1
        opacity = ' fill-opacity="0.45"' if partial else ""
        lines = [f"{chart.buckets[i]}{' ' + chart.partial_note if partial else ''}: {format_number(totals[i])}"]
        lines += [f"{s.label}: {format_number(s.values[i])}" for s in chart.series]
        parts.append(f'<g class="ds-bar{" ds-partial" if partial else ""}"><title>{escape(chr(10).join(lines))}</title>')
        parts.append(
            f'<rect class="ds-hit" x="{_num(MARGIN_LEFT + i * slot)}" y="{MARGIN_TOP}" width="{_num(slot)}" '
            f'height="{plot_h}" fill="transparent"/>'
        )
        y = baseline
        for series in chart.series:
            value = series.values[i]
            if value <= 0:
                continue
            h = value / top * plot_h
            y -= h
            parts.append(
                f'<rect class="ds-series-{escape(series.key)}" x="{_num(x)}" y="{_num(y)}" width="{_num(bar_w)}" '
                f'height="{_num(h)}" fill="{escape(series.color)}"{opacity}/>'
            )
        parts.append("</g>")
        label = chart.axis_labels[i] if i < len(chart.axis_labels) else None
        if label:
            parts.append(
                f'<text class="ds-axis" x="{_num(MARGIN_LEFT + (i + 0.5) * slot)}" y="{HEIGHT - 6}" '
                f'text-anchor="middle" font-size="10" fill="{TEXT_COLOR}">{escape(label)}</text>'
            )
    if chart.empty_text and not any(totals):
        parts.append(
            f'<text class="ds-empty" x="{_num(MARGIN_LEFT + plot_w / 2)}" y="{_num(MARGIN_TOP + plot_h / 2)}" '
            f'text-anchor="middle" font-size="13" fill="{TEXT_COLOR}">{escape(chart.empty_text)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def render_legend(series: Sequence[ChartSeries]) -> Markup:
    """A one-line legend (swatch and label per series) as a small ``<svg>``."""
    x = 0
    items = []
    for s in series:
        items.append(
            f'<rect class="ds-series-{escape(s.key)}" x="{x}" y="3" width="12" height="12" fill="{escape(s.color)}"/>'
            f'<text x="{x + 16}" y="13" font-size="12" fill="{TEXT_COLOR}">{escape(s.label)}</text>'
        )
        x += 16 + 8 * len(s.label) + 16
    return Markup(
        f'<svg class="ds-legend" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {max(x, 1)} 18" '
        f'width="{max(x, 1)}" height="18" aria-hidden="true">{"".join(items)}</svg>'
    )
