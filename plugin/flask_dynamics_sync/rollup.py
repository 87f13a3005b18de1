"""The hourly rollup: raw sync events and errors → :class:`~flask_dynamics_sync.models.HourlyThroughput`.

A run recomputes whole buckets (hour × object × operation × direction) for a
range of hours with one set-based statement per hour, ``INSERT … SELECT … GROUP BY``
with the dialect's upsert (``ON CONFLICT`` on SQLite and PostgreSQL,
``ON DUPLICATE KEY`` on MariaDB/MySQL), and removes buckets of the range whose
source rows are gone. Running it twice, concurrently or after a crash leaves
the same rows: every run holds the ``rollup`` job row's lock for its
transaction, so runs never interleave.

**Which hours a run recomputes.** The ``rollup`` row's ``watermark`` is the
first hour not known to be final. A run without a range recomputes from the
watermark (or the first event ever, on the first run) up to and including the
current hour, then moves the watermark to ``current hour - window``
(``DYNAMICS_SYNC_ROLLUP_WINDOW_HOURS``). So a run catches up every hour missed
since the previous one, however long nothing ran, and an event is counted
whenever it is written less than ``window`` hours after its hour ended, even
if runs are far apart. A run with a range (backfill) recomputes exactly those
hours.

Hours whose raw rows retention has deleted (before the ``prune`` row's
``watermark``) are never recomputed: their rollups are kept as they are.

Each run also writes a :class:`~flask_dynamics_sync.models.BacklogSnapshot`
(pending queue rows per object, operation and direction) at the run's minute.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import typing as t

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .clock import HOUR
from .clock import ceil_hour
from .clock import floor_hour
from .clock import naive_utc
from .database import dialect_family
from .jobs import JobName
from .jobs import lock_job_row
from .jobs import read_job
from .jobs import set_watermark
from .models import error_table
from .models import event_table
from .models import hourly_table
from .models import queue_table
from .models import snapshot_table
from .types import QueueState

hourly = hourly_table
events = event_table
errors = error_table
queue = queue_table
snapshots = snapshot_table

_KEY = ("hour", "object_type", "operation", "direction")
_FIGURES = ("synced_count", "failed_count", "latency_sum_ms", "latency_max_ms", "computed_at")


@dataclasses.dataclass(frozen=True)
class RollupResult:
    """What one rollup run did. ``start``/``end`` are the hours recomputed, ``end`` excluded."""

    start: dt.datetime | None
    """First hour recomputed; ``None`` if the range was empty (e.g. all of it pruned)."""
    end: dt.datetime | None
    buckets: int
    """Bucket rows the range holds after the run."""
    removed: int
    """Buckets of the range removed because their source rows are gone."""
    watermark: dt.datetime | None
    """The ``rollup`` watermark after the run: every hour before it is final."""
    snapshot_at: dt.datetime
    """Minute of the backlog snapshot written by the run."""
    snapshot_rows: int

    @property
    def hours(self) -> int:
        """Number of hours recomputed."""
        if self.start is None or self.end is None:
            return 0
        return int((self.end - self.start) / HOUR)

    def __str__(self) -> str:
        if self.start is None:
            rolled = "no hours to roll up"
        else:
            rolled = (
                f"rolled up {self.hours} hour(s) {self.start:%Y-%m-%d %H:%M} – {self.end:%Y-%m-%d %H:%M} UTC: "
                f"{self.buckets} bucket(s), {self.removed} removed"
            )
        watermark = "none" if self.watermark is None else f"{self.watermark:%Y-%m-%d %H:%M}"
        return f"{rolled}; watermark {watermark}; backlog snapshot of {self.snapshot_rows} row(s)"


# -- SQL --------------------------------------------------------------------------


def _int(value: int) -> sa.ColumnElement[int]:
    return sa.literal_column(str(int(value)), sa.Integer)


def buckets_select(hour: dt.datetime, now: dt.datetime) -> sa.Select[t.Any]:
    """The buckets of one hour: its events and errors, each grouped, then merged.

    One hour at a time: the hour is a constant, so nothing is computed per row
    to find it, and each grouping sorts one hour's rows (a third faster than
    grouping a range by an hour expression, on SQLite).
    """
    end = hour + HOUR
    from_events = (
        sa.select(
            events.c.object_type,
            events.c.operation,
            events.c.direction,
            sa.func.count().label("synced"),
            _int(0).label("failed"),
            sa.func.sum(events.c.latency_ms).label("latency_sum"),
            sa.func.max(events.c.latency_ms).label("latency_max"),
        )
        .where(events.c.synced_at >= hour, events.c.synced_at < end)
        .group_by(events.c.object_type, events.c.operation, events.c.direction)
    )
    from_errors = (
        sa.select(
            errors.c.object_type,
            errors.c.operation,
            errors.c.direction,
            _int(0).label("synced"),
            sa.func.count().label("failed"),
            sa.cast(sa.null(), sa.BigInteger).label("latency_sum"),
            sa.cast(sa.null(), sa.Integer).label("latency_max"),
        )
        .where(errors.c.occurred_at >= hour, errors.c.occurred_at < end)
        .group_by(errors.c.object_type, errors.c.operation, errors.c.direction)
    )
    merged = sa.union_all(from_events, from_errors).subquery("source")
    key = [merged.c[name] for name in _KEY[1:]]
    return sa.select(
        sa.literal(hour, hourly_table.c.hour.type),
        *key,
        sa.func.sum(merged.c.synced),
        sa.func.sum(merged.c.failed),
        sa.func.coalesce(sa.func.sum(merged.c.latency_sum), _int(0)),
        sa.func.max(merged.c.latency_max),
        sa.literal(now, hourly_table.c.computed_at.type),
    ).group_by(*key)


def upsert_buckets_statement(family: str, hour: dt.datetime, now: dt.datetime) -> sa.Insert:
    """``INSERT INTO hourly … SELECT …`` of one hour, replacing the figures of buckets that already exist."""
    source = buckets_select(hour, now)
    columns = [*_KEY, *_FIGURES]
    if family == "mysql":
        from sqlalchemy.dialects.mysql import insert as mysql_insert

        stmt = mysql_insert(hourly).from_select(columns, source)
        return stmt.on_duplicate_key_update({name: stmt.inserted[name] for name in _FIGURES})
    if family == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        pg_stmt = pg_insert(hourly).from_select(columns, source)
        return pg_stmt.on_conflict_do_update(
            index_elements=list(_KEY), set_={name: pg_stmt.excluded[name] for name in _FIGURES}
        )
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    lite_stmt = sqlite_insert(hourly).from_select(columns, source)
    return lite_stmt.on_conflict_do_update(
        index_elements=list(_KEY), set_={name: lite_stmt.excluded[name] for name in _FIGURES}
    )


def earliest_source_hour(conn: Connection) -> dt.datetime | None:
    """The hour of the oldest event or error (two index look-ups), or ``None`` if there is none."""
    oldest = [
        conn.scalar(sa.select(sa.func.min(events.c.synced_at))),
        conn.scalar(sa.select(sa.func.min(errors.c.occurred_at))),
    ]
    known = [value for value in oldest if value is not None]
    return floor_hour(min(known)) if known else None


def snapshot_backlog(conn: Connection, now: dt.datetime) -> tuple[dt.datetime, int]:
    """Write the pending backlog per object, operation and direction at ``now``'s minute.

    A second snapshot in the same minute replaces the first. Returns the
    snapshot time and its number of rows.
    """
    taken_at = now.replace(second=0, microsecond=0)
    conn.execute(sa.delete(snapshots).where(snapshots.c.taken_at == taken_at))
    group = (queue.c.object_type, queue.c.operation, queue.c.direction)
    conn.execute(
        sa.insert(snapshots).from_select(
            ["taken_at", "object_type", "operation", "direction", "pending_count"],
            sa.select(sa.literal(taken_at, snapshots.c.taken_at.type), *group, sa.func.count())
            .where(queue.c.state == QueueState.PENDING.value)
            .group_by(*group),
        )
    )
    rows = conn.scalar(sa.select(sa.func.count()).select_from(snapshots).where(snapshots.c.taken_at == taken_at))
    return taken_at, int(rows or 0)


# -- which hours, and how far they are final (pure) ------------------------------------


def hours_to_recompute(
    *,
    now: dt.datetime,
    window_hours: int,
    watermark: dt.datetime | None,
    pruned_before: dt.datetime | None,
    earliest: dt.datetime | None,
    start: dt.datetime | None,
    end: dt.datetime | None,
) -> tuple[dt.datetime, dt.datetime]:
    """The hours ``[first, stop)`` a run recomputes (empty when ``first >= stop``).

    A scheduled run (no ``start``/``end``) takes the sliding window and every
    hour since the ``watermark`` (or since the ``earliest`` source hour on the
    first run). A backfill takes ``[start, end)``, a missing ``start`` meaning the
    earliest source hour and a missing ``end`` the end of the current hour.
    Hours before ``pruned_before`` lost their raw rows and are never recomputed.
    """
    current = floor_hour(now)
    final_before = current - dt.timedelta(hours=window_hours)
    if start is not None or end is not None:
        first = start if start is not None else (earliest or current)
        stop = end if end is not None else current + HOUR
    else:
        first = min(watermark or earliest or final_before, final_before)
        stop = current + HOUR
    if pruned_before is not None:
        first = max(first, pruned_before)
    return first, stop


def next_watermark(
    *,
    now: dt.datetime,
    window_hours: int,
    watermark: dt.datetime | None,
    earliest: dt.datetime | None,
    first: dt.datetime,
    stop: dt.datetime,
    backfill: bool,
) -> dt.datetime | None:
    """The ``rollup`` watermark after recomputing ``[first, stop)``: every hour before it is final.

    A scheduled run moves it to the start of the sliding window. A backfill
    moves it only when it starts where the final hours end (or before any
    data), so the final hours stay contiguous; it never moves it back.
    """
    final_before = floor_hour(now) - dt.timedelta(hours=window_hours)
    if not backfill:
        return final_before
    contiguous_from = watermark if watermark is not None else (earliest or first)
    if first > contiguous_from:
        return watermark
    candidate = min(stop, final_before)
    return candidate if watermark is None else max(watermark, candidate)


# -- the run ----------------------------------------------------------------------


def roll_up(
    conn: Connection,
    *,
    now: dt.datetime,
    window_hours: int,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
) -> RollupResult:
    """Recompute hours in the caller's transaction (:func:`hours_to_recompute`), then move the watermark.

    Without ``start`` and ``end``: the sliding window and catch-up since the
    watermark. With either: backfill ``[floor(start), ceil(end))``; a missing
    ``start`` means the first event, a missing ``end`` the end of the current hour.
    """
    backfill = start is not None or end is not None
    start = None if start is None else floor_hour(naive_utc(start))
    end = None if end is None else ceil_hour(naive_utc(end))
    if start is not None and end is not None and start >= end:
        raise ValueError(f"empty range: start {start} is not before end {end}")

    family = dialect_family(conn)
    lock_job_row(conn, JobName.ROLLUP)
    state = read_job(conn, JobName.ROLLUP)
    watermark = state.watermark if state is not None else None
    pruned = read_job(conn, JobName.PRUNE)
    earliest = earliest_source_hour(conn) if watermark is None or (backfill and start is None) else None
    first, stop = hours_to_recompute(
        now=now,
        window_hours=window_hours,
        watermark=watermark,
        pruned_before=pruned.watermark if pruned is not None else None,
        earliest=earliest,
        start=start,
        end=end,
    )

    buckets = removed = 0
    if first < stop:
        hour = first
        while hour < stop:
            conn.execute(upsert_buckets_statement(family, hour, now))
            hour += HOUR
        in_range = sa.and_(hourly.c.hour >= first, hourly.c.hour < stop)
        # Buckets the upsert did not touch have no source rows any more.
        removed = conn.execute(sa.delete(hourly).where(in_range, hourly.c.computed_at != now)).rowcount
        buckets = int(conn.scalar(sa.select(sa.func.count()).select_from(hourly).where(in_range)) or 0)

    new_watermark = next_watermark(
        now=now,
        window_hours=window_hours,
        watermark=watermark,
        earliest=earliest,
        first=first,
        stop=stop,
        backfill=backfill,
    )
    if new_watermark != watermark:
        set_watermark(conn, JobName.ROLLUP, new_watermark)

    snapshot_at, snapshot_rows = snapshot_backlog(conn, now)
    return RollupResult(
        start=first if first < stop else None,
        end=stop if first < stop else None,
        buckets=buckets,
        removed=removed,
        watermark=new_watermark,
        snapshot_at=snapshot_at,
        snapshot_rows=snapshot_rows,
    )


def refresh_current_hour(conn: Connection, *, now: dt.datetime, window_hours: int) -> RollupResult:
    """Recompute the current (partial) hour only: the frequent refresh between hourly runs."""
    current = floor_hour(now)
    return roll_up(conn, now=now, window_hours=window_hours, start=current, end=current + HOUR)
