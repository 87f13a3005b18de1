"""Bulk seeding at scale: driver-level executemany in chunks, deterministic data."""

from __future__ import annotations

import datetime as dt
import itertools
import random
from collections.abc import Iterator

import sqlalchemy as sa

from flask_dynamics_sync.models import HourlyThroughput
from flask_dynamics_sync.models import QueueItem
from flask_dynamics_sync.models import SyncError
from flask_dynamics_sync.models import SyncEvent

OBJECTS = ("Lead", "Contact", "Account", "Opportunity")
DIRECTIONS = ("to_dynamics", "from_dynamics")
CODES = (
    ("0x80040237", "Cannot insert duplicate key."),
    ("0x80040220", "Principal user (Id=8f3a…) is missing prvCreateLead privilege."),
    ("0x80072322", "Number of concurrent requests exceeded the limit of 52."),
    ("0x80060891", "A record with the specified key values does not exist in account entity."),
    ("0x80044331", "A validation error occurred. The length of the 'firstname' attribute exceeded the maximum."),
)
CHUNK = 20_000


def _insert(engine: sa.Engine, table: sa.Table, rows: Iterator[dict]) -> int:
    """Insert ``rows`` in chunks through SQLAlchemy Core executemany (fast on every driver)."""
    total = 0
    with engine.begin() as conn:
        while chunk := list(itertools.islice(rows, CHUNK)):
            conn.execute(table.insert(), chunk)
            total += len(chunk)
    return total


def seed_queue(engine: sa.Engine, total: int, pending: int, now: dt.datetime) -> int:
    """``total`` queue rows of which ``pending`` wait (the rest parked), ages up to two days."""
    rng = random.Random(1)

    def rows() -> Iterator[dict]:
        for i in range(total):
            queued = now - dt.timedelta(seconds=rng.randrange(1, 172_800))
            yield {
                "object_type": OBJECTS[i % 4],
                "record_id": f"rec-{i:08d}",
                "direction": DIRECTIONS[(i // 4) % 2],
                "operation": "insert" if rng.random() < 0.3 else "update",
                "state": "pending" if i < pending else "parked",
                "label": f"Record {i}",
                "queued_at": queued,
                "changed_at": queued,
                "not_before": queued,
                "change_count": 1,
                "attempts": 0 if i < pending else 3,
            }

    return _insert(engine, QueueItem.__table__, rows())


def event_rows(count: int, start: dt.datetime, end: dt.datetime, seed: int = 2) -> Iterator[dict]:
    """``count`` sync events spread uniformly over [start, end)."""
    rng = random.Random(seed)
    span = (end - start).total_seconds()
    for i in range(count):
        yield {
            "object_type": OBJECTS[rng.randrange(4)],
            "record_id": f"rec-{i:08d}",
            "operation": "insert" if rng.random() < 0.3 else "update",
            "direction": DIRECTIONS[0] if rng.random() < 0.8 else DIRECTIONS[1],
            "synced_at": start + dt.timedelta(seconds=rng.random() * span),
            "latency_ms": rng.randrange(50, 90_000),
        }


def seed_events(engine: sa.Engine, count: int, start: dt.datetime, end: dt.datetime) -> int:
    return _insert(engine, SyncEvent.__table__, event_rows(count, start, end))


def seed_errors(engine: sa.Engine, count: int, now: dt.datetime) -> int:
    """``count`` errors over the last 30 days; every 1000th message carries the word 'quota'."""
    rng = random.Random(3)

    def rows() -> Iterator[dict]:
        for i in range(count):
            code, message = CODES[i % len(CODES)]
            if i % 1000 == 0:
                message = "API quota exhausted for this organization."
            yield {
                "object_type": OBJECTS[i % 4],
                "record_id": f"rec-{i:08d}",
                "record_label": f"=Contact {i}" if i % 97 == 0 else f"Contact {i}",
                "operation": "insert" if i % 3 == 0 else "update",
                "direction": DIRECTIONS[i % 2],
                "error_code": code,
                "error_message": message,
                "occurred_at": now - dt.timedelta(seconds=rng.randrange(0, 30 * 86_400)),
                "attempt": 1 + i % 5,
                "state": ("open", "retried", "ignored", "resolved")[i % 4],
            }

    return _insert(engine, SyncError.__table__, rows())


def seed_hourly(engine: sa.Engine, now: dt.datetime, days: int = 8) -> int:
    """Hourly throughput rows for the last ``days`` days (what the rollup would have written)."""
    rng = random.Random(4)
    current = now.replace(minute=0, second=0, microsecond=0)

    def rows() -> Iterator[dict]:
        for h in range(days * 24):
            hour = current - dt.timedelta(hours=h + 1)
            for obj in OBJECTS:
                for op in ("insert", "update"):
                    for direction in DIRECTIONS:
                        count = rng.randrange(100, 4_000)
                        yield {
                            "hour": hour,
                            "object_type": obj,
                            "operation": op,
                            "direction": direction,
                            "synced_count": count,
                            "failed_count": rng.randrange(0, 40),
                            "latency_sum_ms": count * 2_000,
                            "latency_max_ms": 60_000,
                            "computed_at": hour + dt.timedelta(hours=1, minutes=5),
                        }

    return _insert(engine, HourlyThroughput.__table__, rows())
