"""Prometheus text exposition (format 0.0.4) of the *Sync Status* figures.

Served by the status view at ``<status URL>/metrics``. Every configured object
gets a sample for every operation and direction, zero when nothing waits or
nothing was synced, so alerts never face a missing series. Metric help texts
are for machines and stay in English.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence

from sqlalchemy.engine import Connection

from . import status_data
from .config import Settings
from .dataverse.stats import WorkerFigures
from .types import Direction
from .types import Operation

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "dynamics_sync_"


@dataclasses.dataclass(frozen=True)
class Sample:
    """One value of a metric family, with its labels."""

    labels: Mapping[str, str]
    value: float


@dataclasses.dataclass(frozen=True)
class MetricFamily:
    """A metric name with its help text, type and samples."""

    name: str
    help: str
    type: str
    samples: Sequence[Sample]


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def _format_value(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def render(families: Iterable[MetricFamily]) -> str:
    """The families in the text exposition format, ending with a newline."""
    lines: list[str] = []
    for family in families:
        lines.append(f"# HELP {family.name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.type}")
        for sample in family.samples:
            labels = ",".join(f'{key}="{_escape_label(value)}"' for key, value in sample.labels.items())
            name = f"{family.name}{{{labels}}}" if labels else family.name
            lines.append(f"{name} {_format_value(sample.value)}")
    return "\n".join(lines) + "\n"


def _timestamp(moment: dt.datetime) -> float:
    return moment.replace(tzinfo=dt.timezone.utc).timestamp()


Key = tuple[str, Operation, Direction | None]
"""A series: object type, operation and direction (None when not split)."""


def _series_keys(settings: Settings, seen: Iterable[str]) -> list[Key]:
    names = status_data.ordered_objects(settings, seen)
    return [(name, operation, direction) for name in names for operation in Operation for direction in Direction]


def _labels(key: Key) -> dict[str, str]:
    name, operation, direction = key
    labels = {"object": name, "operation": operation.value}
    if direction is not None:
        labels["direction"] = direction.value
    return labels


def status_families(conn: Connection, settings: Settings, now: dt.datetime) -> list[MetricFamily]:
    """Backlog gauges, oldest pending age, last-hour throughput and rollup times."""
    groups = status_data.backlog_groups(conn, by_direction=True)
    pending: dict[Key, status_data.BacklogGroup] = {(g.object_type, g.operation, g.direction): g for g in groups}
    hour = status_data.last_hour(conn, settings, now)
    throughput: dict[Key, status_data.ThroughputGroup] = {
        (g.object_type, g.operation, g.direction): g for g in hour.groups
    }
    rollup = status_data.rollup_info(conn)

    backlog_keys = _series_keys(settings, (g.object_type for g in groups))
    hour_keys = _series_keys(settings, (g.object_type for g in hour.groups))

    def age(key: Key) -> float:
        group = pending.get(key)
        if group is None or group.oldest_queued_at is None:
            return 0
        return max(0.0, (now - group.oldest_queued_at).total_seconds())

    families = [
        MetricFamily(
            PREFIX + "backlog_records",
            "Records waiting to be synced (pending, claimed ones included).",
            "gauge",
            [Sample(_labels(k), pending[k].pending if k in pending else 0) for k in backlog_keys],
        ),
        MetricFamily(
            PREFIX + "oldest_pending_age_seconds",
            "Seconds the oldest waiting record has waited; 0 when none waits.",
            "gauge",
            [Sample(_labels(k), age(k)) for k in backlog_keys],
        ),
        MetricFamily(
            PREFIX + "last_hour_synced_records",
            "Records synced in the last full hour (from the hourly rollup).",
            "gauge",
            [Sample(_labels(k), throughput[k].synced if k in throughput else 0) for k in hour_keys],
        ),
        MetricFamily(
            PREFIX + "last_hour_failed_records",
            "Failed sync attempts in the last full hour (from the hourly rollup).",
            "gauge",
            [Sample(_labels(k), throughput[k].failed if k in throughput else 0) for k in hour_keys],
        ),
        MetricFamily(
            PREFIX + "last_hour_start_timestamp_seconds",
            "Start of the hour the last_hour_* gauges describe (Unix time).",
            "gauge",
            [Sample({}, _timestamp(hour.start))],
        ),
    ]
    if rollup.last_finished_at is not None:
        families.append(
            MetricFamily(
                PREFIX + "rollup_last_finished_timestamp_seconds",
                "When the hourly rollup last finished (Unix time).",
                "gauge",
                [Sample({}, _timestamp(rollup.last_finished_at))],
            )
        )
    return families


def worker_families(figures: WorkerFigures) -> list[MetricFamily]:
    """The sync workers' figures, summed over every worker process (see :mod:`.dataverse.stats`)."""

    def one(name: str, help: str, type: str, value: float) -> MetricFamily:
        return MetricFamily(PREFIX + name, help, type, [Sample({}, value)])

    return [
        one("worker_active", "Sync workers that reported in the last two minutes.", "gauge", figures.active_workers),
        one("worker_requests_total", "Web API requests sent by the sync workers.", "counter", figures.requests),
        one("worker_throttled_total", "Requests answered 429 (service protection limits).", "counter", figures.throttled),
        one("worker_retries_total", "Requests sent again after a timeout, a dropped connection or a 502/503/504.", "counter", figures.retries),
        one("worker_token_refreshes_total", "Tokens refreshed after a 401.", "counter", figures.token_refreshes),
        one("worker_records_synced_total", "Records the sync workers reported synced.", "counter", figures.records_synced),
        one("worker_records_failed_total", "Records the sync workers reported failed.", "counter", figures.records_failed),
        one("worker_records_per_second", "Records per second over the last minute, all active workers.", "gauge", figures.records_per_second),
    ]
