"""Retention: delete old raw rows, in batches, never before they are rolled up.

* Raw sync events older than ``DYNAMICS_SYNC_EVENT_RETENTION_DAYS`` are deleted,
  but only in hours before the rollup's watermark (hours that are final and
  rolled up). If the rollup never ran, no event is deleted.
* Resolved and ignored errors older than ``DYNAMICS_SYNC_ERROR_RETENTION_DAYS``
  are deleted, with the same rollup condition (they count as failures in the
  rollup). Open and retried errors are kept whatever their age.
* Backlog snapshots older than the event retention are deleted.
* Hourly rollups are kept.

Before deleting, the ``prune`` job row's ``watermark`` is moved to the first
hour whose raw rows are all still there, under the rollup's lock; the rollup
never recomputes hours before it, so pruned hours keep their figures.

Each batch (``DYNAMICS_SYNC_PRUNE_BATCH_SIZE`` rows, plus rows sharing the
batch's last timestamp) is a short transaction of its own, so no lock is held
for long and the sync workers keep writing meanwhile.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .clock import floor_hour
from .database import Transaction
from .jobs import JobName
from .jobs import lock_job_row
from .jobs import read_job
from .jobs import set_watermark
from .rollup import errors
from .rollup import events
from .rollup import snapshots
from .types import ErrorState

#: Error states retention may delete.
PRUNABLE_ERROR_STATES = (ErrorState.RESOLVED, ErrorState.IGNORED)


@dataclasses.dataclass(frozen=True)
class PruneResult:
    """What one retention run deleted, and below which times."""

    events_deleted: int
    errors_deleted: int
    snapshots_deleted: int
    event_cutoff: dt.datetime | None
    """Events before this time were deleted; ``None`` when the rollup has not run yet."""
    error_cutoff: dt.datetime | None
    """Resolved/ignored errors before this time were deleted; ``None`` when the rollup has not run yet."""
    snapshot_cutoff: dt.datetime
    batches: int

    def __str__(self) -> str:
        def cutoff(value: dt.datetime | None) -> str:
            return "kept: the rollup has not run yet" if value is None else f"before {value:%Y-%m-%d %H:%M} UTC"

        return (
            f"deleted {self.events_deleted} sync event(s) ({cutoff(self.event_cutoff)}), "
            f"{self.errors_deleted} resolved/ignored error(s) ({cutoff(self.error_cutoff)}), "
            f"{self.snapshots_deleted} backlog snapshot row(s) (before {self.snapshot_cutoff:%Y-%m-%d %H:%M} UTC) "
            f"in {self.batches} batch(es); hourly rollups kept"
        )


def _delete_batch(
    conn: Connection, table: sa.Table, time_column: sa.Column[dt.datetime], condition: sa.ColumnElement[bool], size: int
) -> int:
    """Delete the oldest ``size`` rows matching ``condition`` (and their timestamp's ties).

    The batch boundary is read from the time index (``OFFSET size - 1``), then
    one range ``DELETE`` runs: portable (no ``DELETE … LIMIT`` or ``LIMIT``
    in a subquery, which MariaDB lacks) and index-driven on every backend.
    """
    boundary = conn.scalar(
        sa.select(time_column).where(condition).order_by(time_column).offset(size - 1).limit(1)
    )
    if boundary is not None:
        condition = sa.and_(condition, time_column <= boundary)
    return conn.execute(sa.delete(table).where(condition)).rowcount


def delete_in_batches(
    transaction: Transaction,
    table: sa.Table,
    time_column: sa.Column[dt.datetime],
    condition: sa.ColumnElement[bool],
    *,
    batch_size: int,
    between_batches: Callable[[], None] | None = None,
) -> tuple[int, int]:
    """Delete every row matching ``condition``, a batch per transaction. Returns (rows, batches)."""
    deleted = batches = 0
    while True:
        count = transaction(lambda conn: _delete_batch(conn, table, time_column, condition, batch_size))
        batches += 1
        deleted += count
        if count < batch_size:
            return deleted, batches
        if between_batches is not None:
            between_batches()


def _announce_cutoffs(conn: Connection, now: dt.datetime, event_days: int, error_days: int) -> tuple[
    dt.datetime | None, dt.datetime | None
]:
    """Decide the cutoffs and record them as the ``prune`` watermark, under the rollup's lock."""
    lock_job_row(conn, JobName.ROLLUP)
    rollup = read_job(conn, JobName.ROLLUP)
    rolled_before = rollup.watermark if rollup is not None else None
    if rolled_before is None:
        return None, None
    event_cutoff = min(floor_hour(now - dt.timedelta(days=event_days)), rolled_before)
    error_cutoff = min(floor_hour(now - dt.timedelta(days=error_days)), rolled_before)
    lock_job_row(conn, JobName.PRUNE)
    previous = read_job(conn, JobName.PRUNE)
    complete_from = max(event_cutoff, error_cutoff)
    if previous is not None and previous.watermark is not None:
        complete_from = max(complete_from, previous.watermark)
    set_watermark(conn, JobName.PRUNE, complete_from)
    return event_cutoff, error_cutoff


def prune(
    transaction: Transaction,
    *,
    now: dt.datetime,
    event_retention_days: int,
    error_retention_days: int,
    batch_size: int,
    between_batches: Callable[[], None] | None = None,
) -> PruneResult:
    """Apply retention as of ``now``; ``between_batches`` runs between two batches (e.g. a lease renewal)."""
    event_cutoff, error_cutoff = transaction(
        lambda conn: _announce_cutoffs(conn, now, event_retention_days, error_retention_days)
    )
    total_batches = 0

    def run(table: sa.Table, column: sa.Column[dt.datetime], condition: sa.ColumnElement[bool]) -> int:
        nonlocal total_batches
        deleted, batches = delete_in_batches(
            transaction, table, column, condition, batch_size=batch_size, between_batches=between_batches
        )
        total_batches += batches
        return deleted

    events_deleted = errors_deleted = 0
    if event_cutoff is not None:
        events_deleted = run(events, events.c.synced_at, events.c.synced_at < event_cutoff)
    if error_cutoff is not None:
        # One state at a time, so that each batch is one range of the (state, occurred_at) index.
        for state in PRUNABLE_ERROR_STATES:
            errors_deleted += run(
                errors, errors.c.occurred_at, sa.and_(errors.c.state == state.value, errors.c.occurred_at < error_cutoff)
            )
    snapshot_cutoff = now - dt.timedelta(days=event_retention_days)
    snapshots_deleted = run(snapshots, snapshots.c.taken_at, snapshots.c.taken_at < snapshot_cutoff)
    return PruneResult(
        events_deleted=events_deleted,
        errors_deleted=errors_deleted,
        snapshots_deleted=snapshots_deleted,
        event_cutoff=event_cutoff,
        error_cutoff=error_cutoff,
        snapshot_cutoff=snapshot_cutoff,
        batches=total_batches,
    )
