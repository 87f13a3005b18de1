"""Rollup figures: one hour of 40k events, and a backfill of 1M events (25 such hours).

Both run through ``DynamicsSync.rollup(start, end)`` (the job's bookkeeping,
the set-based upsert, the backlog snapshot) on the status data set: 5M events,
40k an hour, errors at 1%, and a backlog of 50k pending records in 1M queue
rows. The baseline is what one would write first: fetch the range's events and
errors, count them per bucket in a Python dict, delete the range's buckets and
insert the new ones. Plugin and baseline alternate over the same hours, and
the baseline's buckets are checked equal to the plugin's.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import defaultdict

import sqlalchemy as sa

from flask_dynamics_sync.models import HourlyThroughput
from flask_dynamics_sync.models import SyncError
from flask_dynamics_sync.models import SyncEvent

from . import seed
from .apps import make_app
from .datasets import status_database
from .harness import Figure
from .harness import median_p95

HOUR = dt.timedelta(hours=1)
ONE_HOUR_SAMPLES = 30
BACKFILL_SAMPLES = 3
BACKFILL_HOURS = 25

events = SyncEvent.__table__
errors = SyncError.__table__
hourly = HourlyThroughput.__table__


def python_rollup(engine: sa.Engine, start: dt.datetime, end: dt.datetime, now: dt.datetime) -> dict:
    """The baseline: a loop over the range's events and errors, then delete and insert the buckets."""
    buckets: dict[tuple, list] = defaultdict(lambda: [0, 0, 0, None])
    with engine.begin() as conn:
        rows = conn.execute(
            sa.select(events.c.synced_at, events.c.object_type, events.c.operation, events.c.direction,
                      events.c.latency_ms).where(events.c.synced_at >= start, events.c.synced_at < end)
        )
        for synced_at, object_type, operation, direction, latency in rows:
            bucket = buckets[(synced_at.replace(minute=0, second=0, microsecond=0), object_type, operation, direction)]
            bucket[0] += 1
            if latency is not None:
                bucket[2] += latency
                bucket[3] = latency if bucket[3] is None else max(bucket[3], latency)
        failed = conn.execute(
            sa.select(errors.c.occurred_at, errors.c.object_type, errors.c.operation, errors.c.direction)
            .where(errors.c.occurred_at >= start, errors.c.occurred_at < end)
        )
        for occurred_at, object_type, operation, direction in failed:
            buckets[(occurred_at.replace(minute=0, second=0, microsecond=0), object_type, operation, direction)][1] += 1
        conn.execute(sa.delete(hourly).where(hourly.c.hour >= start, hourly.c.hour < end))
        conn.execute(sa.insert(hourly), [
            {"hour": key[0], "object_type": key[1], "operation": key[2], "direction": key[3],
             "synced_count": b[0], "failed_count": b[1], "latency_sum_ms": b[2], "latency_max_ms": b[3],
             "computed_at": now}
            for key, b in buckets.items()
        ])
    return {key: tuple(b) for key, b in buckets.items()}


def stored_buckets(engine: sa.Engine, start: dt.datetime, end: dt.datetime) -> dict:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(hourly.c.hour, hourly.c.object_type, hourly.c.operation, hourly.c.direction,
                      hourly.c.synced_count, hourly.c.failed_count, hourly.c.latency_sum_ms, hourly.c.latency_max_ms)
            .where(hourly.c.hour >= start, hourly.c.hour < end)
        )
        return {tuple(r[:4]): tuple(r[4:]) for r in rows}


def alternate(plugin, baseline, stored, ranges) -> tuple[list[float], list[float]]:
    """Seconds per run of the plugin and of the baseline, alternating over ``ranges``.

    After each pair the plugin runs again and its buckets must equal the loop's.
    """
    mine, theirs = [], []
    for start, end in ranges:
        began = time.perf_counter()
        plugin(start, end)
        mine.append(time.perf_counter() - began)
        began = time.perf_counter()
        expected = baseline(start, end)
        theirs.append(time.perf_counter() - began)
        plugin(start, end)
        assert stored(start, end) == expected, (start, end)
    return mine, theirs


def run_backend(scale, backend: str, server: str | None) -> list[Figure]:
    data = status_database(scale, backend, server)
    app, db, sync = make_app(data.url)
    current = seed.NOW.replace(minute=0, second=0, microsecond=0)
    with app.app_context():
        engine = db.engine
        stored = lambda start, end: stored_buckets(engine, start, end)  # noqa: E731
        plugin = lambda start, end: sync.rollup(start, end)  # noqa: E731
        baseline = lambda start, end: python_rollup(engine, start, end, seed.NOW)  # noqa: E731
        plugin(current - 3 * HOUR, current - 2 * HOUR)  # warm-up
        hours = [(current - (i + 2) * HOUR, current - (i + 1) * HOUR) for i in range(ONE_HOUR_SAMPLES)]
        one, one_base = alternate(plugin, baseline, stored, hours)
        span = [(current - BACKFILL_HOURS * HOUR, current)] * BACKFILL_SAMPLES
        fill, fill_base = alternate(plugin, baseline, stored, span)
    suffix = "" if backend == "sqlite" else f" [{backend}]"
    context = f"; {data.pending:,} pending in {data.queue:,} queue rows"
    med, p95 = median_p95([s * 1000 for s in one])
    base, _ = median_p95([s * 1000 for s in one_base])
    figures = [Figure(
        name="rollup of one hour" + suffix, scale=f"{data.events_per_hour:,} events/hour", unit="ms",
        median=med, p95=p95, target=60, baseline=base,
        baseline_label="a Python loop over the same events (fetch, count in a dict, write)",
        note=f"{data.events:,} events in the table{context}",
    )]
    med, p95 = median_p95(fill)
    base, _ = median_p95(fill_base)
    figures.append(Figure(
        name="rollup backfill" + suffix, scale=f"{data.events_per_hour * BACKFILL_HOURS:,} events ({BACKFILL_HOURS} h)",
        unit="s", median=med, p95=p95, target=2.0, baseline=base,
        baseline_label="the same Python loop", note=f"p95 column: slowest of {BACKFILL_SAMPLES} runs",
    ))
    return figures

