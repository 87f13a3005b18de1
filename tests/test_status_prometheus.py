"""Prometheus exposition of the Sync Status figures (``<status URL>/metrics``)."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from flask_dynamics_sync import prometheus
from flask_dynamics_sync.prometheus import MetricFamily
from flask_dynamics_sync.prometheus import Sample

from .conftest import NOW

SAMPLE = re.compile(r"^(?P<name>[a-z_]+)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> dict[str, dict[tuple[str, ...], float]]:
    """``{metric: {label values: value}}``; every line must be a comment or a valid sample."""
    families: dict[str, dict[tuple[str, ...], float]] = {}
    for line in text.splitlines():
        if line.startswith("# "):
            kind, name = line.split(" ")[1:3]
            assert kind in ("HELP", "TYPE")
            families.setdefault(name, {})
            continue
        match = SAMPLE.match(line)
        assert match, line
        labels = tuple(value for _, value in LABEL.findall(match["labels"] or ""))
        families[match["name"]][labels] = float(match["value"])
    return families


@pytest.fixture
def exposition(sync, status_dataset) -> dict[str, dict[tuple[str, ...], float]]:
    with sync.engine.connect() as conn:
        text = prometheus.render(prometheus.status_families(conn, sync.settings, NOW))
    assert text.endswith("\n")
    return parse(text)


def nonzero(samples: dict[tuple[str, ...], float]) -> dict[tuple[str, ...], float]:
    return {labels: value for labels, value in samples.items() if value}


def test_backlog_gauges_per_object_operation_and_direction(exposition):
    backlog = exposition["dynamics_sync_backlog_records"]

    assert len(backlog) == 4 * 2 * 2
    assert nonzero(backlog) == {
        ("Lead", "insert", "to_dynamics"): 2,
        ("Lead", "update", "to_dynamics"): 1,
        ("Lead", "update", "from_dynamics"): 1,
        ("Contact", "update", "to_dynamics"): 1,
        ("Opportunity", "insert", "to_dynamics"): 1,
    }


def test_oldest_pending_age_in_seconds(exposition):
    assert nonzero(exposition["dynamics_sync_oldest_pending_age_seconds"]) == {
        ("Lead", "insert", "to_dynamics"): 10800,
        ("Lead", "update", "to_dynamics"): 7200,
        ("Lead", "update", "from_dynamics"): 1800,
        ("Contact", "update", "to_dynamics"): 2700,
        ("Opportunity", "insert", "to_dynamics"): 600,
    }


def test_last_hour_throughput_and_failures(exposition):
    assert nonzero(exposition["dynamics_sync_last_hour_synced_records"]) == {
        ("Lead", "insert", "to_dynamics"): 40,
        ("Lead", "update", "to_dynamics"): 15,
        ("Lead", "update", "from_dynamics"): 5,
        ("Contact", "update", "to_dynamics"): 7,
    }
    assert nonzero(exposition["dynamics_sync_last_hour_failed_records"]) == {("Lead", "update", "to_dynamics"): 2}
    hour = dt.datetime(2026, 3, 10, 13, tzinfo=dt.timezone.utc).timestamp()
    assert exposition["dynamics_sync_last_hour_start_timestamp_seconds"] == {(): hour}


def test_when_the_rollup_last_finished(exposition):
    finished = dt.datetime(2026, 3, 10, 14, 0, 30, tzinfo=dt.timezone.utc).timestamp()

    assert exposition["dynamics_sync_rollup_last_finished_timestamp_seconds"] == {(): finished}


def test_an_empty_installation_exposes_zeros_and_no_rollup_time(sync):
    with sync.engine.connect() as conn:
        families = parse(prometheus.render(prometheus.status_families(conn, sync.settings, NOW)))

    assert "dynamics_sync_rollup_last_finished_timestamp_seconds" not in families
    assert {name: len(samples) for name, samples in families.items()} == {
        "dynamics_sync_backlog_records": 16,
        "dynamics_sync_oldest_pending_age_seconds": 16,
        "dynamics_sync_last_hour_synced_records": 16,
        "dynamics_sync_last_hour_failed_records": 16,
        "dynamics_sync_last_hour_start_timestamp_seconds": 1,
    }
    assert not any(nonzero(samples) for name, samples in families.items() if "timestamp" not in name)


def test_help_and_label_values_are_escaped():
    family = MetricFamily("x_total", "a \\ b\nc", "gauge", [Sample({"object": 'say "hi"\\\n'}, 1.5), Sample({}, 2)])

    assert prometheus.render([family]) == (
        "# HELP x_total a \\\\ b\\nc\n"
        "# TYPE x_total gauge\n"
        'x_total{object="say \\"hi\\"\\\\\\n"} 1.5\n'
        "x_total 2\n"
    )
