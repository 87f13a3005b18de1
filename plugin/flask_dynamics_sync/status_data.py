"""The figures behind *Sync Status*: one function per panel, one source of truth.

The HTML page, its JSON twin and the Prometheus exposition all call these
functions, so they always agree. Every function takes an open
:class:`~sqlalchemy.engine.Connection`, the plugin's :class:`~.config.Settings`
and the current time (naive UTC, from ``sync.now()``), and returns frozen
dataclasses.

What each panel reads, and why it stays cheap at scale:

* **Backlog** and **details**: ``dynamics_sync_queue`` rows with state
  ``pending`` (claimed rows included: they are not synced yet; parked rows are
  failures and belong to *Sync Errors*). Counts are index-only range reads of
  the index ``(state, object_type, operation, direction, queued_at)``, built
  for exactly this; an oldest record is one seek of it per direction.
* **Last hour**, **history** and **metrics**: only ``dynamics_sync_hourly``,
  by primary-key range on ``hour``; never the raw events.
* **Growing / Normal**: the latest ``dynamics_sync_backlog_snapshot`` taken at
  least six hours ago. With no such snapshot the status is *Normal* (there is
  no evidence of growth) and ``backlog_6h_ago`` is ``None``, so the page shows
  that the comparison is missing rather than inventing one.
* **Computed / next**: the ``rollup`` row of ``dynamics_sync_job`` (:func:`.jobs.read_job`).

"The last full hour" is ``[h - 1h, h)`` where ``h`` is now truncated to the
hour; the metrics window is the 24 full hours before ``h``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import functools
import typing as t
from collections import defaultdict
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .clock import HOUR
from .clock import floor_hour
from .config import Settings
from .database import dialect_family
from .jobs import JobName
from .jobs import read_job
from .models import BacklogSnapshot
from .models import HourlyThroughput
from .models import QueueItem
from .types import Direction
from .types import Operation
from .types import QueueState

#: Full hours the max / min / average per hour are computed over.
METRICS_WINDOW_HOURS = 24
#: Hours of history charted (7 days).
HISTORY_HOURS = 24 * 7
#: A backlog bigger than it was this long ago is *Growing*.
GROWTH_LOOKBACK = dt.timedelta(hours=6)

_queue = QueueItem.__table__
_hourly = HourlyThroughput.__table__
_snapshot = BacklogSnapshot.__table__


def last_full_hour(now: dt.datetime) -> dt.datetime:
    """Start of the last full hour before ``now``: 14:20 gives 13:00 (the hour 13:00–14:00)."""
    return floor_hour(now) - HOUR


def _seconds_since(moment: dt.datetime | None, now: dt.datetime) -> float | None:
    return None if moment is None else max(0.0, (now - moment).total_seconds())


def ordered_objects(settings: Settings, seen: Iterable[str]) -> list[str]:
    """Configured objects in configured order, then object types that only the data knows.

    An object removed from ``DYNAMICS_SYNC_OBJECTS`` while records of it still
    wait is listed last rather than hidden: the backlog must add up.
    """
    configured = list(settings.object_types)
    extra = sorted(set(seen) - set(configured))
    return configured + extra


def _label(settings: Settings, object_type: str) -> str:
    return settings.objects.get(object_type, object_type)


# -- backlog --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BacklogGroup:
    """Pending records of one object type and operation (and direction, when split)."""

    object_type: str
    operation: Operation
    direction: Direction | None
    pending: int
    oldest_queued_at: dt.datetime | None


def backlog_groups(
    conn: Connection, *, by_direction: bool = False, object_type: str | None = None
) -> list[BacklogGroup]:
    """Pending records per object type and operation (and direction), oldest ``queued_at`` included.

    Read from the queue index ``(state, object_type, operation, direction,
    queued_at)`` alone. On SQLite, in one statement, per object type,
    operation and direction: a count of its index range and a seek to its
    first entry (grouping the whole range compares and aggregates every
    pending entry: twice the time at 50k pending); the object types are found
    by :func:`pending_object_types`. PostgreSQL and MariaDB group one
    index-only range read, which they do faster than many range counts.
    """
    if dialect_family(conn) == "sqlite":
        ranges = _range_counts(conn, object_type)
    else:
        key = (_queue.c.object_type, _queue.c.operation, _queue.c.direction)
        stmt = (
            sa.select(*key, sa.func.count(), sa.func.min(_queue.c.queued_at))
            .where(_queue.c.state == QueueState.PENDING.value)
            .group_by(*key)
        )
        if object_type is not None:
            stmt = stmt.where(_queue.c.object_type == object_type)
        ranges = [tuple(row) for row in conn.execute(stmt)]
    found: dict[tuple[str, Operation, Direction | None], BacklogGroup] = {}
    operations = {o.value: o for o in Operation}
    directions = {d.value: d for d in Direction}
    for name, operation_value, direction_value, count, oldest in ranges:
        operation, direction = operations.get(operation_value), directions.get(direction_value)
        if not count or operation is None or direction is None:  # only the recording API writes the queue
            continue
        key = (name, operation, direction if by_direction else None)
        known = found.get(key)
        if known is not None:
            count += known.pending
            oldest = min(oldest, known.oldest_queued_at) if known.oldest_queued_at is not None else oldest
        found[key] = BacklogGroup(name, operation, key[2], int(count), oldest)
    return list(found.values())


def _range_counts(conn: Connection, object_type: str | None) -> list[tuple[t.Any, ...]]:
    """(object type, operation, direction, pending, oldest) of every range of the queue index (SQLite)."""
    names = [object_type] if object_type is not None else pending_object_types(conn)
    if not names:
        return []
    params = {f"object_type_{i}": name for i, name in enumerate(names)}
    rows = iter(conn.execute(_backlog_statement(len(names)), params).all())
    return [
        (name, operation.value, direction.value, *next(rows))
        for name in names
        for operation in Operation
        for direction in Direction
    ]


@functools.lru_cache(maxsize=32)
def _backlog_statement(object_types: int) -> sa.CompoundSelect:
    """Count and oldest entry of each (object type, operation, direction) range, in that order.

    Object types are the parameters ``object_type_0`` … (built once per number of types).
    """
    parts = []
    for i in range(object_types):
        for operation in Operation:
            for direction in Direction:
                where = (
                    _queue.c.state == QueueState.PENDING.value,
                    _queue.c.object_type == sa.bindparam(f"object_type_{i}"),
                    _queue.c.operation == operation.value,
                    _queue.c.direction == direction.value,
                )
                oldest = sa.select(sa.func.min(_queue.c.queued_at)).where(*where).correlate(None).scalar_subquery()
                parts.append(sa.select(sa.func.count().label("pending"), oldest.label("oldest")).where(*where))
    return sa.union_all(*parts)


def pending_object_types(conn: Connection) -> list[str]:
    """Object types with pending records, in order: one index seek each (a loose index scan)."""
    names: list[str] = []
    while True:
        stmt = sa.select(sa.func.min(_queue.c.object_type)).where(_queue.c.state == QueueState.PENDING.value)
        if names:
            stmt = stmt.where(_queue.c.object_type > names[-1])
        name = conn.scalar(stmt)
        if name is None:
            return names
        names.append(name)


@dataclasses.dataclass(frozen=True)
class BacklogRow:
    """One line of the backlog table; ``object_type`` is ``None`` on the totals line."""

    object_type: str | None
    label: str
    inserts: int
    updates: int
    oldest_queued_at: dt.datetime | None
    oldest_age_seconds: float | None

    @property
    def total(self) -> int:
        """Inserts plus updates waiting."""
        return self.inserts + self.updates


@dataclasses.dataclass(frozen=True)
class Backlog:
    """The default view: records waiting per object, with a totals line."""

    now: dt.datetime
    rows: tuple[BacklogRow, ...]
    total: BacklogRow

    def row(self, object_type: str) -> BacklogRow:
        """The line of ``object_type`` (zeros when it is not listed)."""
        for row in self.rows:
            if row.object_type == object_type:
                return row
        return BacklogRow(object_type, object_type, 0, 0, None, None)


def _backlog_row(
    object_type: str | None, label: str, groups: Sequence[BacklogGroup], now: dt.datetime
) -> BacklogRow:
    inserts = sum(g.pending for g in groups if g.operation is Operation.INSERT)
    updates = sum(g.pending for g in groups if g.operation is Operation.UPDATE)
    oldest = min((g.oldest_queued_at for g in groups if g.oldest_queued_at is not None), default=None)
    return BacklogRow(object_type, label, inserts, updates, oldest, _seconds_since(oldest, now))


def backlog(conn: Connection, settings: Settings, now: dt.datetime) -> Backlog:
    """Pending inserts and updates per object, every configured object listed, plus totals."""
    groups = backlog_groups(conn)
    by_object: dict[str, list[BacklogGroup]] = defaultdict(list)
    for group in groups:
        by_object[group.object_type].append(group)
    rows = tuple(
        _backlog_row(name, _label(settings, name), by_object.get(name, []), now)
        for name in ordered_objects(settings, by_object)
    )
    return Backlog(now=now, rows=rows, total=_backlog_row(None, "", groups, now))


# -- details --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class OldestRecord:
    """The record of one operation that has waited longest."""

    record_id: str
    label: str | None
    direction: Direction
    queued_at: dt.datetime
    age_seconds: float
    attempts: int
    claimed: bool
    """Handed to a worker right now (still waiting: not synced yet)."""


def oldest_record(
    conn: Connection, object_type: str, operation: Operation, now: dt.datetime
) -> OldestRecord | None:
    """The longest-waiting pending record of ``object_type`` and ``operation``: one index seek per direction."""
    candidates = [
        conn.execute(
            sa.select(
                _queue.c.record_id,
                _queue.c.label,
                _queue.c.direction,
                _queue.c.queued_at,
                _queue.c.attempts,
                _queue.c.claim_token,
                _queue.c.claimed_until,
                _queue.c.id,
            )
            .where(
                _queue.c.state == QueueState.PENDING.value,
                _queue.c.object_type == object_type,
                _queue.c.operation == operation.value,
                _queue.c.direction == direction.value,
            )
            .order_by(_queue.c.queued_at, _queue.c.id)
            .limit(1)
        ).first()
        for direction in Direction
    ]
    row = min((c for c in candidates if c is not None), key=lambda c: (c.queued_at, c.id), default=None)
    if row is None:
        return None
    claimed = row.claim_token is not None and row.claimed_until is not None and row.claimed_until >= now
    return OldestRecord(
        record_id=row.record_id,
        label=row.label,
        direction=Direction(row.direction),
        queued_at=row.queued_at,
        age_seconds=_seconds_since(row.queued_at, now) or 0.0,
        attempts=int(row.attempts or 0),
        claimed=claimed,
    )


@dataclasses.dataclass(frozen=True)
class ObjectDetails:
    """What double-clicking an object's row shows."""

    object_type: str
    label: str
    backlog: BacklogRow
    oldest_insert: OldestRecord | None
    oldest_update: OldestRecord | None


def object_details(conn: Connection, settings: Settings, now: dt.datetime, object_type: str) -> ObjectDetails:
    """Pending inserts and updates of one object and its oldest insert and update records."""
    label = _label(settings, object_type)
    groups = backlog_groups(conn, object_type=object_type)
    return ObjectDetails(
        object_type=object_type,
        label=label,
        backlog=_backlog_row(object_type, label, groups, now),
        oldest_insert=oldest_record(conn, object_type, Operation.INSERT, now),
        oldest_update=oldest_record(conn, object_type, Operation.UPDATE, now),
    )


# -- last hour ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ThroughputGroup:
    """One ``dynamics_sync_hourly`` row: synced and failed records of an hour."""

    object_type: str
    operation: Operation
    direction: Direction
    synced: int
    failed: int


@dataclasses.dataclass(frozen=True)
class LastHourRow:
    """Records of one object synced in the last full hour; ``object_type`` ``None`` for totals."""

    object_type: str | None
    label: str
    synced: int
    failed: int


@dataclasses.dataclass(frozen=True)
class LastHour:
    """The *Last Hour* view: throughput of the hour ``[start, end)``."""

    start: dt.datetime
    end: dt.datetime
    rows: tuple[LastHourRow, ...]
    total: LastHourRow
    groups: tuple[ThroughputGroup, ...]
    """The same hour per object, operation and direction (for the Prometheus gauges)."""


def last_hour(conn: Connection, settings: Settings, now: dt.datetime) -> LastHour:
    """Records synced per object in the last full hour, read from the hourly table only."""
    start = last_full_hour(now)
    result = conn.execute(
        sa.select(
            _hourly.c.object_type,
            _hourly.c.operation,
            _hourly.c.direction,
            _hourly.c.synced_count,
            _hourly.c.failed_count,
        ).where(_hourly.c.hour == start)
    )
    groups = tuple(
        ThroughputGroup(
            object_type=row.object_type,
            operation=Operation(row.operation),
            direction=Direction(row.direction),
            synced=int(row.synced_count or 0),
            failed=int(row.failed_count or 0),
        )
        for row in result
    )
    synced: dict[str, int] = defaultdict(int)
    failed: dict[str, int] = defaultdict(int)
    for group in groups:
        synced[group.object_type] += group.synced
        failed[group.object_type] += group.failed
    rows = tuple(
        LastHourRow(name, _label(settings, name), synced[name], failed[name])
        for name in ordered_objects(settings, synced)
    )
    total = LastHourRow(None, "", sum(r.synced for r in rows), sum(r.failed for r in rows))
    return LastHour(start=start, end=start + HOUR, rows=rows, total=total, groups=groups)


# -- history --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class History:
    """Records synced per hour, object and direction, oldest hour first.

    ``hours[-1]`` is the current hour, still filling up (``partial_last``);
    the others are full hours. Hours without a row count as zero.
    """

    hours: tuple[dt.datetime, ...]
    series: Mapping[tuple[str, Direction], tuple[int, ...]]
    partial_last: bool = True

    def per_object(self, object_type: str) -> tuple[int, ...]:
        """Records of ``object_type`` synced per hour, both directions added up."""
        return _add(self.series.get((object_type, d), ()) for d in Direction)

    def per_direction(self, direction: Direction, object_type: str | None = None) -> tuple[int, ...]:
        """Records synced per hour in ``direction``, of one object or (``None``) of all."""
        if object_type is not None:
            values = self.series.get((object_type, direction), ())
        else:
            values = _add(v for (_, d), v in self.series.items() if d is direction)
        return values or (0,) * len(self.hours)

    def totals(self) -> tuple[int, ...]:
        """Records synced per hour, every object and direction added up."""
        return _add(self.series.values())

    def window(self, start: dt.datetime, end: dt.datetime) -> History:
        """The hours in ``[start, end)`` only."""
        keep = [i for i, hour in enumerate(self.hours) if start <= hour < end]
        partial = self.partial_last and bool(keep) and keep[-1] == len(self.hours) - 1
        return History(
            hours=tuple(self.hours[i] for i in keep),
            series={key: tuple(values[i] for i in keep) for key, values in self.series.items()},
            partial_last=partial,
        )


def _add(columns: Iterable[Sequence[int]]) -> tuple[int, ...]:
    columns = [c for c in columns if c]
    return tuple(sum(values) for values in zip(*columns)) if columns else ()


def throughput_history(
    conn: Connection, settings: Settings, now: dt.datetime, *, hours: int = HISTORY_HOURS
) -> History:
    """The last ``hours`` hours (the current, partial one included) per object and direction."""
    current = floor_hour(now)
    first = current - (hours - 1) * HOUR
    buckets = tuple(first + i * HOUR for i in range(hours))
    index = {hour: i for i, hour in enumerate(buckets)}
    result = conn.execute(
        sa.select(
            _hourly.c.hour,
            _hourly.c.object_type,
            _hourly.c.direction,
            sa.func.sum(_hourly.c.synced_count).label("synced"),
        )
        .where(_hourly.c.hour >= first, _hourly.c.hour <= current)
        .group_by(_hourly.c.hour, _hourly.c.object_type, _hourly.c.direction)
    )
    counts: dict[tuple[str, Direction], list[int]] = {}
    seen: set[str] = set()
    directions = {d.value: d for d in Direction}
    # Up to hours × objects × directions rows on every page load: plain tuples, no per-row enum call.
    for hour, object_type, direction, synced in result.all():
        key = (object_type, directions[direction])
        values = counts.get(key)
        if values is None:
            values = counts[key] = [0] * hours
            seen.add(object_type)
        values[index[hour]] = int(synced or 0)
    series = {
        (name, direction): tuple(counts.get((name, direction), [0] * hours))
        for name in ordered_objects(settings, seen)
        for direction in Direction
    }
    return History(hours=buckets, series=series)


# -- metrics --------------------------------------------------------------------------------


class Trend(str, enum.Enum):
    """Is the backlog bigger than it was six hours ago?"""

    GROWING = "growing"
    NORMAL = "normal"


@dataclasses.dataclass(frozen=True)
class RollupInfo:
    """When the hourly figures were last computed and when they will be next."""

    last_finished_at: dt.datetime | None
    next_run_at: dt.datetime | None
    last_status: str | None


def rollup_info(conn: Connection) -> RollupInfo:
    """The ``rollup`` job's bookkeeping row (all ``None`` before its first run)."""
    job = read_job(conn, JobName.ROLLUP)
    if job is None:
        return RollupInfo(None, None, None)
    return RollupInfo(job.last_finished_at, job.next_run_at, job.last_status)


@dataclasses.dataclass(frozen=True)
class SnapshotBacklog:
    """The backlog per object as the snapshot taken at ``taken_at`` saw it."""

    taken_at: dt.datetime | None
    pending: Mapping[str, int]


def backlog_before(conn: Connection, moment: dt.datetime) -> SnapshotBacklog:
    """The latest backlog snapshot taken at or before ``moment`` (primary-key seeks only)."""
    taken_at = conn.scalar(sa.select(sa.func.max(_snapshot.c.taken_at)).where(_snapshot.c.taken_at <= moment))
    if taken_at is None:
        return SnapshotBacklog(None, {})
    result = conn.execute(
        sa.select(_snapshot.c.object_type, sa.func.sum(_snapshot.c.pending_count).label("pending"))
        .where(_snapshot.c.taken_at == taken_at)
        .group_by(_snapshot.c.object_type)
    )
    return SnapshotBacklog(taken_at, {row.object_type: int(row.pending or 0) for row in result})


@dataclasses.dataclass(frozen=True)
class ObjectMetrics:
    """Throughput over the last 24 full hours and the backlog outlook of one object (or all)."""

    object_type: str | None
    label: str
    backlog: int
    backlog_6h_ago: int | None
    max_per_hour: int
    min_per_hour: int
    avg_per_hour: float
    drain_hours: float | None
    """Backlog ÷ average per hour; 0 with nothing waiting, ``None`` when nothing was synced."""
    status: Trend


@dataclasses.dataclass(frozen=True)
class Metrics:
    """The backlog metrics panel."""

    rows: tuple[ObjectMetrics, ...]
    total: ObjectMetrics
    window_start: dt.datetime
    window_end: dt.datetime
    compared_with: dt.datetime | None
    """When the snapshot the *Growing* status compares with was taken."""
    rollup: RollupInfo

    def row(self, object_type: str) -> ObjectMetrics | None:
        """The metrics of ``object_type``, if listed."""
        return next((row for row in self.rows if row.object_type == object_type), None)


def _object_metrics(
    object_type: str | None, label: str, pending: int, before: int | None, per_hour: Sequence[int]
) -> ObjectMetrics:
    per_hour = list(per_hour) or [0]
    average = sum(per_hour) / len(per_hour)
    if pending == 0:
        drain: float | None = 0.0
    elif average > 0:
        drain = pending / average
    else:
        drain = None
    growing = before is not None and pending > before
    return ObjectMetrics(
        object_type=object_type,
        label=label,
        backlog=pending,
        backlog_6h_ago=before,
        max_per_hour=max(per_hour),
        min_per_hour=min(per_hour),
        avg_per_hour=average,
        drain_hours=drain,
        status=Trend.GROWING if growing else Trend.NORMAL,
    )


def backlog_metrics(
    conn: Connection,
    settings: Settings,
    now: dt.datetime,
    *,
    current: Backlog | None = None,
    history: History | None = None,
) -> Metrics:
    """Max / min / average synced per hour over the last 24 full hours, drain time and trend.

    Pass the ``current`` backlog and a ``history`` covering the window when
    the caller already has them, to save the queries.
    """
    end = floor_hour(now)
    start = end - METRICS_WINDOW_HOURS * HOUR
    current = current if current is not None else backlog(conn, settings, now)
    if history is None or not history.hours or history.hours[0] > start:
        history = throughput_history(conn, settings, now, hours=METRICS_WINDOW_HOURS + 1)
    window = history.window(start, end)
    snapshot = backlog_before(conn, now - GROWTH_LOOKBACK)

    def before(object_type: str | None) -> int | None:
        if snapshot.taken_at is None:
            return None
        if object_type is None:
            return sum(snapshot.pending.values())
        return snapshot.pending.get(object_type, 0)

    rows = tuple(
        _object_metrics(row.object_type, row.label, row.total, before(row.object_type), window.per_object(row.object_type))
        for row in current.rows
        if row.object_type is not None
    )
    total = _object_metrics(None, "", current.total.total, before(None), window.totals())
    return Metrics(
        rows=rows,
        total=total,
        window_start=start,
        window_end=end,
        compared_with=snapshot.taken_at,
        rollup=rollup_info(conn),
    )


# -- the whole page -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StatusReport:
    """Every panel of the page, as served by the HTML view and its JSON twin."""

    generated_at: dt.datetime
    backlog: Backlog
    last_hour: LastHour
    metrics: Metrics
    history: History


def status_report(conn: Connection, settings: Settings, now: dt.datetime) -> StatusReport:
    """All panels in one go: six small indexed reads."""
    current = backlog(conn, settings, now)
    history = throughput_history(conn, settings, now)
    return StatusReport(
        generated_at=now,
        backlog=current,
        last_hour=last_hour(conn, settings, now),
        metrics=backlog_metrics(conn, settings, now, current=current, history=history),
        history=history,
    )


@dataclasses.dataclass(frozen=True)
class Headline:
    """The four figures at the top of Sync Status, taken from the panels below them."""

    backlog: int
    """Records waiting, every object (the backlog table's total)."""
    open_errors: int
    """Open sync errors, counted up to the count cap (and one more)."""
    synced_last_hour: int
    """Records synced in the last full hour (the Last Hour view's total)."""
    oldest: BacklogRow | None
    """The object whose oldest record has waited longest, ``None`` when nothing waits."""


def headline(report: StatusReport, open_errors: int) -> Headline:
    """The headline of ``report``, with the open-error count read beside it."""
    waiting = [row for row in report.backlog.rows if row.oldest_queued_at is not None]
    return Headline(
        backlog=report.backlog.total.total,
        open_errors=open_errors,
        synced_last_hour=report.last_hour.total.synced,
        oldest=min(waiting, key=lambda row: row.oldest_queued_at, default=None),  # type: ignore[arg-type, return-value]
    )


@dataclasses.dataclass(frozen=True)
class ThroughputReport:
    """The *Last Hour* view's panels: throughput only, so the queue is not counted."""

    generated_at: dt.datetime
    last_hour: LastHour
    history: History


def throughput_report(conn: Connection, settings: Settings, now: dt.datetime) -> ThroughputReport:
    """The last full hour and the history: two reads of the hourly table."""
    return ThroughputReport(
        generated_at=now,
        last_hour=last_hour(conn, settings, now),
        history=throughput_history(conn, settings, now),
    )
