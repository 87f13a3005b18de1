"""The data sets the sections share, seeded once per run and backend."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools

from . import seed
from .apps import engine_of
from .apps import fresh_database

#: Hours of sync events before :data:`~.seed.NOW`: 5M events at 40k an hour.
EVENT_HOURS = 125


@dataclasses.dataclass(frozen=True)
class StatusData:
    """A seeded database: the queue, sync events, hourly rollups, backlog snapshots, the rollup job."""

    url: str
    queue: int
    pending: int
    events: int
    errors: int

    def describe(self) -> str:
        return f"{self.queue:,} queue, {self.pending:,} pending, {self.events:,} events"

    @property
    def events_per_hour(self) -> int:
        return self.events // EVENT_HOURS


@functools.cache
def status_database(scale, backend: str, server: str | None, *, small: bool = False) -> StatusData:
    """1M queue rows (50k pending) and 5M events; ``small``: 10k (500 pending) and 50k events.

    Errors arrive at 1% of the events over the same hours (the rollup counts them).
    """
    factor = 100 if small else 1
    queue, pending, events = (scale.n(n // factor) for n in (1_000_000, 50_000, 5_000_000))
    errors = events // 100
    url = fresh_database(backend, "status_small" if small else "status_big", server)
    engine = engine_of(url)
    start = seed.NOW - dt.timedelta(hours=EVENT_HOURS)
    seed.seed_queue(engine, queue, pending)
    seed.seed_events(engine, events, start, seed.NOW)
    seed.seed_errors(engine, errors, days=EVENT_HOURS / 24)
    seed.seed_hourly(engine, per_hour=events // EVENT_HOURS)
    seed.seed_snapshots(engine, pending=pending)
    seed.seed_rollup_job(engine)
    seed.analyze(engine)
    engine.dispose()
    return StatusData(url, queue, pending, events, errors)
