"""The sync workers' figures: written by each worker to its row, read summed by the status JSON and metrics.

Workers run in many processes and on many machines; the database they share
is the one place all their figures meet, like the rest of *Sync Status*. A
worker writes its cumulative counters and its current rate after every cycle
(one small ``UPDATE``); readers sum the rows of the workers seen in the last
:data:`KEPT_HOURS` hours (a range of the ``heartbeat_at`` index), and a worker
starting deletes older rows, so the table stays as small as the fleet. A
worker is *active* while its last write is recent (:data:`ACTIVE_SECONDS`).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import os
import socket
import time
import typing as t
import uuid
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..models import WorkerState

if t.TYPE_CHECKING:
    from ..host_database import HostDatabase
    from .client import ClientCounters

workers = WorkerState.__table__

#: A worker that wrote nothing for this long is no longer counted as active.
ACTIVE_SECONDS = 120
#: Rows of workers not heard of for this long leave the sums (and the table).
KEPT_HOURS = 24
#: The records/s rate is measured over this many seconds.
RATE_SECONDS = 60.0
COUNTERS = ("requests", "throttled", "retries", "token_refreshes", "records_synced", "records_failed")


@dataclasses.dataclass(frozen=True)
class WorkerFigures:
    """All workers' figures together."""

    active_workers: int
    requests: int
    throttled: int
    retries: int
    token_refreshes: int
    records_synced: int
    records_failed: int
    records_per_second: float
    last_heartbeat_at: dt.datetime | None


def read_figures(conn: Connection, now: dt.datetime) -> WorkerFigures:
    """The sums over the workers seen in the last :data:`KEPT_HOURS`; the rate and the count over the active ones."""
    active = sa.and_(workers.c.heartbeat_at >= now - dt.timedelta(seconds=ACTIVE_SECONDS), workers.c.stopped_at.is_(None))
    row = conn.execute(
        sa.select(
            *(sa.func.coalesce(sa.func.sum(workers.c[name]), 0).label(name) for name in COUNTERS),
            sa.func.coalesce(sa.func.sum(sa.case((active, workers.c.records_per_second), else_=0.0)), 0.0).label("rate"),
            sa.func.coalesce(sa.func.sum(sa.case((active, 1), else_=0)), 0).label("active"),
            sa.func.max(workers.c.heartbeat_at).label("last"),
        ).where(workers.c.heartbeat_at >= now - dt.timedelta(hours=KEPT_HOURS))
    ).one()
    return WorkerFigures(
        active_workers=int(row.active),
        **{name: int(getattr(row, name)) for name in COUNTERS},
        records_per_second=round(float(row.rate), 3),
        last_heartbeat_at=row.last,
    )


def new_worker_id() -> str:
    """``host:pid:random``: unique per process, readable in the table."""
    return f"{socket.gethostname()[:80]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class WorkerStats:
    """One worker's row: created on the first write, updated after every cycle."""

    def __init__(
        self,
        db: HostDatabase,
        counters: ClientCounters,
        *,
        clock: Callable[[], dt.datetime],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.worker_id = new_worker_id()
        self._db = db
        self._counters = counters
        self._clock = clock
        self._monotonic = monotonic
        self._started = False
        self.synced = 0
        self.failed = 0
        self._recent: collections.deque[tuple[float, int]] = collections.deque()
        self._first = monotonic()

    def rate(self) -> float:
        """Records reported per second over the last :data:`RATE_SECONDS` (or since the start)."""
        now = self._monotonic()
        while self._recent and self._recent[0][0] < now - RATE_SECONDS:
            self._recent.popleft()
        span = min(RATE_SECONDS, now - self._first)
        return sum(n for _, n in self._recent) / span if span > 0 else 0.0

    def _values(self, now: dt.datetime) -> dict[str, t.Any]:
        counters = self._counters
        return {
            "heartbeat_at": now,
            "requests": counters.requests,
            "throttled": counters.throttled,
            "retries": counters.retries,
            "token_refreshes": counters.token_refreshes,
            "records_synced": self.synced,
            "records_failed": self.failed,
            "records_per_second": self.rate(),
        }

    def flush(self, synced: int, failed: int) -> None:
        """Add one cycle's results and write the row (needs an application context)."""
        self.synced += synced
        self.failed += failed
        if synced or failed:
            self._recent.append((self._monotonic(), synced + failed))
        now = self._clock()
        with self._db.engine.begin() as conn:
            if not self._started:
                conn.execute(sa.delete(workers).where(workers.c.heartbeat_at < now - dt.timedelta(hours=KEPT_HOURS)))
                conn.execute(sa.insert(workers).values(worker_id=self.worker_id, started_at=now, **self._values(now)))
                self._started = True
            else:
                conn.execute(sa.update(workers).where(workers.c.worker_id == self.worker_id).values(**self._values(now)))

    def stopped(self) -> None:
        """Mark the row stopped (a clean exit); its counters stay in the sums."""
        if not self._started:
            return
        now = self._clock()
        self._recent.clear()
        with self._db.engine.begin() as conn:
            conn.execute(
                sa.update(workers)
                .where(workers.c.worker_id == self.worker_id)
                .values(stopped_at=now, **{**self._values(now), "records_per_second": 0.0})
            )
