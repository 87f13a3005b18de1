"""The server-side SVG bar charts: geometry, hover titles, escaping, nothing a strict CSP blocks."""

from __future__ import annotations

import re

import pytest

from flask_dynamics_sync import chart
from flask_dynamics_sync.chart import BarChart
from flask_dynamics_sync.chart import ChartSeries


def make(values_a, values_b, **kwargs) -> BarChart:
    buckets = [f"{h}:00" for h in range(len(values_a))]
    return BarChart(
        title=kwargs.pop("title", "Lead – Last 3 hours"),
        buckets=buckets,
        axis_labels=kwargs.pop("axis_labels", [None] * len(buckets)),
        series=[
            ChartSeries("to_dynamics", "To Dynamics", values_a, "#1f6fb2"),
            ChartSeries("from_dynamics", "From Dynamics", values_b, "#e07b00"),
        ],
        **kwargs,
    )


def bars(svg: str) -> list[str]:
    return re.findall(r'<g class="ds-bar[^"]*"><title>(.*?)</title>', svg, re.S)


@pytest.mark.parametrize(("value", "top"), [(0, 1), (1, 1), (7, 10), (10, 10), (11, 20), (99, 100), (101, 200), (250, 500)])
def test_the_axis_top_is_a_round_number(value, top):
    assert chart.nice_ceiling(value) == top


def test_one_bar_per_bucket_whose_title_tells_its_hour_and_counts():
    svg = str(chart.render_bar_chart(make([3, 0, 12], [1, 0, 0])))

    assert bars(svg) == [
        "0:00: 4\nTo Dynamics: 3\nFrom Dynamics: 1",
        "1:00: 0\nTo Dynamics: 0\nFrom Dynamics: 0",
        "2:00: 12\nTo Dynamics: 12\nFrom Dynamics: 0",
    ]


def test_segments_stack_by_series_with_heights_proportional_to_counts():
    svg = str(chart.render_bar_chart(make([10, 5], [10, 0])))
    heights = [float(h) for h in re.findall(r'<rect class="ds-series-\w+"[^>]* height="([\d.]+)"', svg)]

    plot = chart.HEIGHT - chart.MARGIN_TOP - chart.MARGIN_BOTTOM
    assert heights == [plot / 2, plot / 2, plot / 4]


def test_the_partial_current_hour_is_drawn_lighter_and_says_so():
    svg = str(chart.render_bar_chart(make([1, 2], [0, 0], partial_last=True, partial_note="(so far)")))

    assert '<g class="ds-bar ds-partial"><title>1:00 (so far): 2' in svg
    assert svg.count('fill-opacity="0.45"') == 1


def test_an_all_zero_chart_says_nothing_was_synced():
    assert "No records synced</text>" in str(chart.render_bar_chart(make([0, 0], [0, 0], empty_text="No records synced")))
    assert "No records synced" not in str(chart.render_bar_chart(make([0, 1], [0, 0], empty_text="No records synced")))


def test_texts_are_escaped_and_the_svg_has_no_style_or_script():
    svg = str(chart.render_bar_chart(make([1], [0], title='<script>alert("x")</script>', axis_labels=["<b>"])))

    assert "<script>" not in svg and "&lt;script&gt;" in svg and "&lt;b&gt;" in svg
    assert "style" not in svg
    assert svg.startswith('<svg class="ds-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 720 180" role="img"')


def test_numbers_go_through_the_given_formatter():
    svg = str(chart.render_bar_chart(make([1234], [0]), format_number=lambda n: f"{n:,}".replace(",", ".")))

    assert bars(svg) == ["0:00: 1.234\nTo Dynamics: 1.234\nFrom Dynamics: 0"]
    assert ">2.000</text>" in svg  # the axis top


def test_the_legend_names_each_series_with_its_colour():
    legend = str(chart.render_legend(make([1], [1]).series))

    assert re.findall(r'fill="(#\w+)"/><text[^>]*>([^<]+)</text>', legend) == [
        ("#1f6fb2", "To Dynamics"), ("#e07b00", "From Dynamics"),
    ]
