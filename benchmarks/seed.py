"""Bulk seeding at scale: deterministic, time-ordered rows written at driver level.

Rows are generated in chunks as tuples (columns drawn with ``random.choices``,
timestamps formatted once per second) and written with the fastest plain path
each driver has: ``executemany`` on SQLite (and MariaDB), ``COPY`` on
PostgreSQL. Timestamps are strings in the format SQLAlchemy stores on SQLite
(``YYYY-MM-DD HH:MM:SS.ffffff``), which PostgreSQL and MariaDB parse as well.

Rows come in time order (ids grow with time), as a live system appends them.
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import os
import random
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Sequence

import sqlalchemy as sa

from flask_dynamics_sync.models import BacklogSnapshot
from flask_dynamics_sync.models import HourlyThroughput
from flask_dynamics_sync.models import JobState
from flask_dynamics_sync.models import QueueItem
from flask_dynamics_sync.models import SyncError
from flask_dynamics_sync.models import SyncEvent

#: The benchmarks' "now": every data set ends here and every app's clock is frozen on it.
NOW = dt.datetime(2026, 3, 10, 14, 20)

OBJECTS = ("Lead", "Contact", "Account", "Opportunity")
OBJECT_WEIGHTS = (4, 3, 2, 1)
DIRECTIONS = ("to_dynamics", "from_dynamics")
OPERATIONS = ("insert", "update")
CODES = (
    ("0x80040237", "Cannot insert duplicate key."),
    ("0x80040220", "Principal user (Id=8f3a1c2e-0b7d-4c55-9e0a-5d2f6b7c8a91) is missing prvCreateLead privilege."),
    ("0x80072322", "Number of concurrent requests exceeded the limit of 52."),
    ("0x80060891", "A record with the specified key values does not exist in account entity."),
    ("0x80044331", "A validation error occurred. The length of the 'firstname' attribute exceeded the maximum."),
)
#: Every :data:`RARE_EVERY`-th error carries this word (a search that matches few rows).
RARE_WORD = "quota"
RARE_EVERY = 1000
CHUNK = 50_000


def stamp(moment: dt.datetime) -> str:
    """A timestamp as SQLAlchemy stores it on SQLite (and every backend parses)."""
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def spread_stamps(count: int, start: dt.datetime, end: dt.datetime, rng: random.Random) -> Iterator[str]:
    """``count`` increasing timestamps spread evenly over ``[start, end)`` with jitter."""
    span = (end - start).total_seconds()
    step = span / max(count, 1)
    second, prefix = -1, ""
    for i in range(count):
        offset = (i + rng.random()) * step
        whole = int(offset)
        if whole != second:  # format the date part once per second
            second, prefix = whole, (start + dt.timedelta(seconds=whole)).strftime("%Y-%m-%d %H:%M:%S.")
        yield f"{prefix}{int((offset - whole) * 1_000_000):06d}"


# -- writing ----------------------------------------------------------------------


def bulk_insert(engine: sa.Engine, table: sa.Table, columns: Sequence[str], rows: Iterable[tuple]) -> int:
    """Write ``rows`` (tuples in ``columns`` order) in one transaction; returns how many."""
    names = ", ".join(columns)
    raw = engine.raw_connection()
    total = 0
    try:
        cursor = raw.cursor()
        if engine.dialect.name == "postgresql":
            with cursor.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
                    total += 1
        else:
            marks = ", ".join(["?" if engine.dialect.name == "sqlite" else "%s"] * len(columns))
            if engine.dialect.name == "sqlite":
                cursor.execute("PRAGMA synchronous=OFF")
            sql = f"INSERT INTO {table.name} ({names}) VALUES ({marks})"
            iterator = iter(rows)
            while chunk := list(itertools.islice(iterator, CHUNK)):
                cursor.executemany(sql, chunk)
                total += len(chunk)
        raw.commit()
    finally:
        raw.close()
    return total


def _chunked(count: int) -> Iterator[int]:
    for begin in range(0, count, CHUNK):
        yield min(CHUNK, count - begin)


# -- tables -----------------------------------------------------------------------


def seed_queue(engine: sa.Engine, total: int, pending: int, now: dt.datetime = NOW) -> int:
    """``total`` queue rows: ``pending`` waiting since the last two days (one in a hundred
    claimed by a worker), the others parked after three attempts over the last 30 days.

    Rows are written in ``queued_at`` order, as records start waiting, so the
    pending ones sit among the recently parked ones at the end of the table.
    """
    rng = random.Random(1)
    parked = spread_stamps(total - pending, now - dt.timedelta(days=30), now, rng)
    waiting = spread_stamps(pending, now - dt.timedelta(days=2), now, rng)
    stamps = heapq.merge(((s, False) for s in parked), ((s, True) for s in waiting))
    claimed_until = stamp(now + dt.timedelta(minutes=5))

    def rows() -> Iterator[tuple]:
        i = 0
        for size in _chunked(total):
            objects = rng.choices(OBJECTS, OBJECT_WEIGHTS, k=size)
            operations = rng.choices(OPERATIONS, (3, 7), k=size)
            for obj, op, (queued, is_pending) in zip(objects, operations, stamps):
                claimed = is_pending and i % 100 == 0
                yield (
                    obj, f"rec-{i:08d}", DIRECTIONS[(i // 7) % 2], op,
                    "pending" if is_pending else "parked", f"Record {i}", queued, queued, queued,
                    1, 0 if is_pending else 3,
                    f"{i:032x}" if claimed else None, claimed_until if claimed else None,
                )
                i += 1

    columns = ("object_type", "record_id", "direction", "operation", "state", "label", "queued_at",
               "changed_at", "not_before", "change_count", "attempts", "claim_token", "claimed_until")
    return bulk_insert(engine, QueueItem.__table__, columns, rows())


def seed_events(engine: sa.Engine, count: int, start: dt.datetime, end: dt.datetime, seed: int = 2) -> int:
    """``count`` sync events spread evenly over ``[start, end)``."""
    rng = random.Random(seed)
    stamps = spread_stamps(count, start, end, rng)

    def rows() -> Iterator[tuple]:
        i = 0
        for size in _chunked(count):
            objects = rng.choices(OBJECTS, OBJECT_WEIGHTS, k=size)
            operations = rng.choices(OPERATIONS, (3, 7), k=size)
            directions = rng.choices(DIRECTIONS, (8, 2), k=size)
            latencies = [rng.randrange(50, 90_000) for _ in range(size)]
            for obj, op, direction, latency in zip(objects, operations, directions, latencies):
                yield obj, f"rec-{i % 400_000:08d}", op, direction, next(stamps), latency
                i += 1

    columns = ("object_type", "record_id", "operation", "direction", "synced_at", "latency_ms")
    return bulk_insert(engine, SyncEvent.__table__, columns, rows())


def seed_errors(engine: sa.Engine, count: int, now: dt.datetime = NOW, days: float = 30) -> int:
    """``count`` errors over the last ``days`` days; every 1000th message says 'quota';
    every 97th record label starts with ``=`` (a formula a spreadsheet must not run)."""
    rng = random.Random(3)
    stamps = spread_stamps(count, now - dt.timedelta(days=days), now, rng)
    states = ("open", "retried", "ignored", "resolved")

    def rows() -> Iterator[tuple]:
        i = 0
        for size in _chunked(count):
            objects = rng.choices(OBJECTS, OBJECT_WEIGHTS, k=size)
            codes = rng.choices(CODES, k=size)
            chosen = rng.choices(states, (5, 2, 1, 2), k=size)
            for obj, (code, message), state in zip(objects, codes, chosen):
                if i % RARE_EVERY == 0:
                    message = f"API {RARE_WORD} exhausted for this organization."
                yield (
                    obj, f"rec-{i:08d}", f"=Contact {i}" if i % 97 == 0 else f"Contact {i}",
                    OPERATIONS[i % 3 != 0], DIRECTIONS[i % 2], code, message, next(stamps),
                    1 + i % 5, state,
                )
                i += 1

    columns = ("object_type", "record_id", "record_label", "operation", "direction", "error_code",
               "error_message", "occurred_at", "attempt", "state")
    return bulk_insert(engine, SyncError.__table__, columns, rows())


def seed_hourly(engine: sa.Engine, now: dt.datetime = NOW, days: int = 8, per_hour: int = 40_000) -> int:
    """Hourly throughput rows for the last ``days`` days, about ``per_hour`` records an hour."""
    rng = random.Random(4)
    current = now.replace(minute=0, second=0, microsecond=0)
    computed = stamp(now)

    def rows() -> Iterator[tuple]:
        for h in range(days * 24, -1, -1):  # the current hour too
            hour = stamp(current - dt.timedelta(hours=h))
            for obj, weight in zip(OBJECTS, OBJECT_WEIGHTS):
                for op, op_share in zip(OPERATIONS, (0.3, 0.7)):
                    for direction, dir_share in zip(DIRECTIONS, (0.8, 0.2)):
                        count = int(per_hour * weight / 10 * op_share * dir_share * rng.uniform(0.5, 1.5))
                        yield hour, obj, op, direction, count, rng.randrange(0, 40), count * 2_000, 60_000, computed

    columns = ("hour", "object_type", "operation", "direction", "synced_count", "failed_count",
               "latency_sum_ms", "latency_max_ms", "computed_at")
    return bulk_insert(engine, HourlyThroughput.__table__, columns, rows())


def seed_snapshots(engine: sa.Engine, now: dt.datetime = NOW, days: int = 7, pending: int = 50_000) -> int:
    """A backlog snapshot every five minutes for ``days`` days (what the rollup jobs write)."""
    rng = random.Random(5)
    first = now.replace(second=0, microsecond=0) - dt.timedelta(days=days)

    def rows() -> Iterator[tuple]:
        for k in range(days * 24 * 12):
            taken = stamp(first + dt.timedelta(minutes=5 * k))
            for obj, weight in zip(OBJECTS, OBJECT_WEIGHTS):
                for op in OPERATIONS:
                    for direction in DIRECTIONS:
                        yield taken, obj, op, direction, int(pending * weight / 40 * rng.uniform(0.6, 1.2))

    columns = ("taken_at", "object_type", "operation", "direction", "pending_count")
    return bulk_insert(engine, BacklogSnapshot.__table__, columns, rows())


def seed_rollup_job(engine: sa.Engine, now: dt.datetime = NOW) -> None:
    """The ``rollup`` job's bookkeeping row, as after its last hourly run."""
    finished = now.replace(minute=5, second=0, microsecond=0)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(JobState.__table__).values(
                name="rollup", last_started_at=finished - dt.timedelta(seconds=2), last_finished_at=finished,
                last_status="ok", next_run_at=finished + dt.timedelta(hours=1),
                watermark=finished.replace(minute=0) - dt.timedelta(hours=3),
            )
        )


def analyze(engine: sa.Engine) -> None:
    """Settle a freshly seeded database before measuring on it.

    PostgreSQL is vacuumed and analyzed, as autovacuum would have by now
    (index-only scans need the visibility map), then checkpointed; dirty
    pages of SQLite files are written out. No background writing of the
    seeding then overlaps the measurements.
    """
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
            conn.exec_driver_sql("CHECKPOINT")
    else:
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    os.sync()
