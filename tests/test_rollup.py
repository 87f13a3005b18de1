"""The hourly rollup: buckets, sliding window, catch-up, backfill, idempotence, concurrency."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from flask_dynamics_sync.jobs import ensure_job_row
from flask_dynamics_sync.jobs import job_states
from flask_dynamics_sync.models import BacklogSnapshot
from flask_dynamics_sync.models import HourlyThroughput
from flask_dynamics_sync.models import JobState
from flask_dynamics_sync.models import QueueItem
from flask_dynamics_sync.models import SyncError
from flask_dynamics_sync.models import SyncEvent
from flask_dynamics_sync.rollup import hours_to_recompute
from flask_dynamics_sync.rollup import next_watermark

from .conftest import NOW
from .conftest import fuzz
from .conftest import insert_rows
from .workers.jobs_worker import Worker
from .workers.jobs_worker import start_together

H = dt.timedelta(hours=1)
M = dt.timedelta(minutes=1)
HOUR = dt.datetime(2026, 3, 10, 14)  # the hour NOW (14:20) falls in
WINDOW = 3  # DYNAMICS_SYNC_ROLLUP_WINDOW_HOURS default


def event(at: dt.datetime, object_type: str = "Lead", operation: str = "insert",
          direction: str = "to_dynamics", latency: int | None = 100) -> dict:
    return {"object_type": object_type, "record_id": "r", "operation": operation, "direction": direction,
            "synced_at": at, "latency_ms": latency}


def error(at: dt.datetime, object_type: str = "Lead", operation: str = "insert",
          direction: str = "to_dynamics", state: str = "open") -> dict:
    return {"object_type": object_type, "record_id": "r", "operation": operation, "direction": direction,
            "error_code": "0x80040237", "error_message": "Duplicate record", "occurred_at": at,
            "attempt": 1, "state": state}


def add_events(db, *rows: dict) -> None:
    if rows:
        insert_rows(db, SyncEvent, list(rows))


def add_errors(db, *rows: dict) -> None:
    if rows:
        insert_rows(db, SyncError, list(rows))


def set_job(db, name: str, **values) -> None:
    with db.engine.begin() as conn:
        ensure_job_row(conn, name)
        conn.execute(sa.update(JobState.__table__).where(JobState.name == name).values(**values))


def buckets(db) -> dict[tuple, tuple]:
    """The hourly table: (hour, object, operation, direction) -> (synced, failed, latency sum, latency max)."""
    h = HourlyThroughput.__table__
    with db.engine.connect() as conn:
        rows = conn.execute(sa.select(h)).all()
    return {
        (r.hour, r.object_type, r.operation, r.direction): (r.synced_count, r.failed_count, r.latency_sum_ms, r.latency_max_ms)
        for r in rows
    }


def straightforward_count(event_rows: list[dict], error_rows: list[dict]) -> dict[tuple, tuple]:
    """The rollup computed the obvious way, in Python."""
    synced: dict[tuple, int] = defaultdict(int)
    failed: dict[tuple, int] = defaultdict(int)
    latencies: dict[tuple, list[int]] = defaultdict(list)
    for e in event_rows:
        key = (e["synced_at"].replace(minute=0, second=0, microsecond=0), e["object_type"], e["operation"], e["direction"])
        synced[key] += 1
        if e["latency_ms"] is not None:
            latencies[key].append(e["latency_ms"])
    for e in error_rows:
        key = (e["occurred_at"].replace(minute=0, second=0, microsecond=0), e["object_type"], e["operation"], e["direction"])
        failed[key] += 1
    return {
        key: (synced[key], failed[key], sum(latencies[key]), max(latencies[key], default=None))
        for key in set(synced) | set(failed)
    }


def raw_rows(db) -> tuple[list[dict], list[dict]]:
    """Every sync event and error row, as dicts."""
    with db.engine.connect() as conn:
        return tuple(
            [dict(r._mapping) for r in conn.execute(sa.select(model.__table__))] for model in (SyncEvent, SyncError)
        )


def job_row(db, name: str = "rollup"):
    return job_states(db.engine).get(name)


def empty_tables(db) -> None:
    with db.engine.begin() as conn:
        for model in (SyncEvent, SyncError, HourlyThroughput, BacklogSnapshot, JobState, QueueItem):
            conn.execute(sa.delete(model.__table__))


# -- buckets --------------------------------------------------------------------------


def test_events_are_counted_per_hour_object_operation_and_direction(sync, db):
    add_events(
        db,
        event(HOUR - H + 5 * M), event(HOUR - H + 59 * M), event(HOUR - H + 30 * M, operation="update"),
        event(HOUR - H + 1 * M, direction="from_dynamics"), event(HOUR - H + 2 * M, object_type="Contact"),
        event(HOUR + 1 * M),
    )

    sync.rollup()

    assert buckets(db) == {
        (HOUR - H, "Lead", "insert", "to_dynamics"): (2, 0, 200, 100),
        (HOUR - H, "Lead", "update", "to_dynamics"): (1, 0, 100, 100),
        (HOUR - H, "Lead", "insert", "from_dynamics"): (1, 0, 100, 100),
        (HOUR - H, "Contact", "insert", "to_dynamics"): (1, 0, 100, 100),
        (HOUR, "Lead", "insert", "to_dynamics"): (1, 0, 100, 100),
    }


def test_failures_are_counted_from_error_rows_by_the_hour_they_occurred(sync, db):
    add_events(db, event(HOUR - H + 10 * M))
    add_errors(db, error(HOUR - H + 20 * M), error(HOUR - H + 40 * M, state="resolved"), error(HOUR - 2 * H, operation="update"))

    sync.rollup()

    assert buckets(db) == {
        (HOUR - H, "Lead", "insert", "to_dynamics"): (1, 2, 100, 100),
        (HOUR - 2 * H, "Lead", "update", "to_dynamics"): (0, 1, 0, None),
    }


def test_latency_sum_and_maximum_leave_out_events_without_latency(sync, db):
    add_events(db, event(HOUR, latency=250), event(HOUR, latency=None), event(HOUR, latency=4000))

    sync.rollup()

    assert buckets(db) == {(HOUR, "Lead", "insert", "to_dynamics"): (3, 0, 4250, 4000)}


def test_an_hour_starts_inclusive_and_ends_exclusive(sync, db):
    add_events(db, event(HOUR - H), event(HOUR - dt.timedelta(microseconds=1)), event(HOUR))

    sync.rollup()

    assert {key[0]: value[0] for key, value in buckets(db).items()} == {HOUR - H: 2, HOUR: 1}


def test_running_twice_gives_the_same_rows(sync, db):
    add_events(db, event(HOUR - 2 * H), event(HOUR - H), event(HOUR))
    add_errors(db, error(HOUR - H))
    sync.rollup()
    first = buckets(db)

    sync.rollup()

    assert buckets(db) == first


# -- which hours ------------------------------------------------------------------------


def test_the_first_run_rolls_up_all_history(sync, db):
    add_events(db, event(HOUR - 50 * H), event(HOUR - 10 * H))

    result = sync.rollup()

    assert sorted(key[0] for key in buckets(db)) == [HOUR - 50 * H, HOUR - 10 * H]
    assert (result.start, result.end, result.hours) == (HOUR - 50 * H, HOUR + H, 51)


def test_a_run_recomputes_the_window_and_the_current_hour_and_moves_the_watermark(sync, db):
    sync.rollup()

    result = sync.rollup()

    assert (result.start, result.end) == (HOUR - WINDOW * H, HOUR + H)
    assert result.watermark == HOUR - WINDOW * H
    assert job_row(db).watermark == HOUR - WINDOW * H


def test_a_late_event_inside_the_window_is_counted(sync, db, clock):
    add_events(db, event(HOUR - 2 * H + 10 * M))
    sync.rollup()
    clock.advance(hours=1)
    add_events(db, event(HOUR - 2 * H + 50 * M))  # written 2 h 20 min after its hour ended

    sync.rollup()

    assert buckets(db)[(HOUR - 2 * H, "Lead", "insert", "to_dynamics")][0] == 2


def test_an_event_later_than_the_window_needs_a_backfill(sync, db, clock):
    add_events(db, event(HOUR - 2 * H + 10 * M))
    sync.rollup()
    clock.advance(hours=WINDOW)
    sync.rollup()
    add_events(db, event(HOUR - 2 * H + 50 * M))  # written 4 h 20 min after its hour ended
    clock.advance(minutes=10)

    sync.rollup()
    assert buckets(db)[(HOUR - 2 * H, "Lead", "insert", "to_dynamics")][0] == 1
    sync.rollup(HOUR - 2 * H, HOUR - H)
    assert buckets(db)[(HOUR - 2 * H, "Lead", "insert", "to_dynamics")][0] == 2


def test_a_gap_of_30_hours_without_runs_is_caught_up(sync, db, clock):
    sync.rollup()
    hours = [HOUR + i * H for i in range(31)]
    add_events(db, *(event(hour + 30 * M) for hour in hours))
    clock.advance(hours=30)

    result = sync.rollup()

    assert sorted(key[0] for key in buckets(db)) == hours
    assert (result.start, result.end) == (HOUR - WINDOW * H, HOUR + 31 * H)


def test_events_arriving_within_the_window_are_counted_however_far_apart_the_runs(sync, db, clock):
    sync.rollup()
    clock.advance(minutes=50)  # 15:10
    add_events(db, event(HOUR + 40 * M))  # the previous hour, 70 minutes after it ended
    clock.advance(hours=20)

    sync.rollup()

    assert buckets(db)[(HOUR, "Lead", "insert", "to_dynamics")][0] == 1


# -- backfill ---------------------------------------------------------------------------


def test_a_backfill_recomputes_exactly_the_hours_asked_for(sync, db):
    add_events(db, event(HOUR - 30 * H), event(HOUR - 20 * H), event(HOUR - 10 * H))

    result = sync.rollup(HOUR - 25 * H, HOUR - 15 * H)

    assert list(buckets(db)) == [(HOUR - 20 * H, "Lead", "insert", "to_dynamics")]
    assert (result.start, result.end, result.buckets) == (HOUR - 25 * H, HOUR - 15 * H, 1)


def test_a_backfill_is_widened_to_whole_hours(sync, db):
    add_events(db, event(HOUR - 3 * H + 5 * M), event(HOUR - H + 55 * M))

    result = sync.rollup(HOUR - 3 * H + 30 * M, HOUR - H + 30 * M)

    assert (result.start, result.end) == (HOUR - 3 * H, HOUR)
    assert len(buckets(db)) == 2


def test_a_backfill_accepts_aware_datetimes(sync, db):
    add_events(db, event(HOUR - 5 * H))
    paris = dt.timezone(dt.timedelta(hours=1))

    result = sync.rollup((HOUR - 5 * H).replace(tzinfo=dt.timezone.utc).astimezone(paris), None)

    assert result.start == HOUR - 5 * H
    assert list(buckets(db)) == [(HOUR - 5 * H, "Lead", "insert", "to_dynamics")]


def test_an_empty_backfill_range_is_refused(sync):
    with pytest.raises(ValueError, match="empty range"):
        sync.rollup(HOUR, HOUR - H)


def test_a_backfill_from_before_the_first_event_makes_those_hours_final(sync, db):
    add_events(db, event(HOUR - 30 * H))

    result = sync.rollup(HOUR - 40 * H, HOUR - 10 * H)

    assert result.watermark == HOUR - 10 * H


def test_a_backfill_elsewhere_leaves_the_watermark(sync, db, clock):
    sync.rollup()
    clock.advance(hours=10)

    result = sync.rollup(HOUR + 5 * H, HOUR + 6 * H)

    assert result.watermark == HOUR - WINDOW * H


def test_a_bucket_whose_source_rows_are_gone_is_removed(sync, db, clock):
    add_events(db, event(HOUR - H), event(HOUR - H, object_type="Contact"))
    sync.rollup()
    with db.engine.begin() as conn:
        conn.execute(sa.delete(SyncEvent.__table__).where(SyncEvent.object_type == "Contact"))
    clock.advance(minutes=1)

    result = sync.rollup()

    assert list(buckets(db)) == [(HOUR - H, "Lead", "insert", "to_dynamics")]
    assert result.removed == 1


def test_hours_already_pruned_keep_their_figures(sync, db, clock):
    add_events(db, event(HOUR - 40 * H), event(HOUR - 40 * H))
    sync.rollup()
    with db.engine.begin() as conn:
        conn.execute(sa.delete(SyncEvent.__table__))
    set_job(db, "prune", watermark=HOUR - 20 * H)  # retention deleted the raw rows before this hour

    result = sync.rollup(HOUR - 50 * H, HOUR)

    assert buckets(db) == {(HOUR - 40 * H, "Lead", "insert", "to_dynamics"): (2, 0, 200, 100)}
    assert result.start == HOUR - 20 * H


# -- backlog snapshot and bookkeeping ---------------------------------------------------------


def test_each_run_takes_a_backlog_snapshot_at_its_minute(sync, db, clock):
    clock.set(NOW + dt.timedelta(seconds=42))
    sync.enqueue("Lead", "1", "insert")
    sync.enqueue("Lead", "2", "insert")
    sync.enqueue("Lead", "3", "update", direction="from_dynamics")
    sync.enqueue("Contact", "4", "update")
    sync.enqueue("Account", "5", "update")
    db.session.commit()
    sync.mark_failed(sync.claim(object_types=["Account"])[0], "0x1", "parked", retry=False)

    result = sync.rollup()

    s = BacklogSnapshot.__table__
    with db.engine.connect() as conn:
        rows = {(r.taken_at, r.object_type, r.operation, r.direction): r.pending_count for r in conn.execute(sa.select(s))}
    assert rows == {
        (NOW, "Lead", "insert", "to_dynamics"): 2,
        (NOW, "Lead", "update", "from_dynamics"): 1,
        (NOW, "Contact", "update", "to_dynamics"): 1,
    }
    assert (result.snapshot_at, result.snapshot_rows) == (NOW, 3)


def test_a_second_snapshot_in_the_same_minute_replaces_the_first(sync, db, clock):
    sync.enqueue("Lead", "1", "insert")
    db.session.commit()
    sync.rollup()
    sync.mark_synced(sync.claim())
    clock.advance(seconds=30)

    result = sync.rollup()

    assert result.snapshot_rows == 0


def test_a_run_is_recorded_on_the_rollup_job_row(sync, db, clock):
    add_events(db, event(HOUR))

    sync.rollup()

    info = job_row(db)
    assert (info.last_started_at, info.last_finished_at, info.last_status, info.watermark) == (
        NOW, NOW, "ok", HOUR - WINDOW * H,
    )
    assert info.last_message == (
        "rolled up 4 hour(s) 2026-03-10 11:00 – 2026-03-10 15:00 UTC: 1 bucket(s), 0 removed; "
        "watermark 2026-03-10 11:00; backlog snapshot of 0 row(s)"
    )


def test_a_failed_run_is_recorded_and_raised(sync, db, monkeypatch):
    from flask_dynamics_sync import scheduler

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(scheduler, "roll_up", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        sync.rollup()

    info = job_row(db)
    assert (info.last_status, info.last_message) == ("failed", "RuntimeError: disk full")


# -- properties -------------------------------------------------------------------------

T0 = dt.datetime(2026, 3, 8, 0, 0)
SPAN_MINUTES = 30 * 60

source_rows = st.tuples(
    st.integers(0, SPAN_MINUTES - 1),  # when, in minutes after T0
    st.integers(0, 59),  # seconds
    st.sampled_from(["Lead", "Contact"]),
    st.sampled_from(["insert", "update"]),
    st.sampled_from(["to_dynamics", "from_dynamics"]),
    st.one_of(st.none(), st.integers(0, 10_000)),  # latency
    st.integers(0, WINDOW * 60 - 1),  # written this many minutes late (less than the window)
    st.booleans(),  # an error rather than an event
)
runs = st.lists(
    st.one_of(
        st.tuples(st.just("run"), st.integers(0, SPAN_MINUTES + WINDOW * 60)),
        st.tuples(st.just("backfill"), st.integers(0, SPAN_MINUTES), st.integers(-3, 30), st.integers(1, 30)),
    ),
    max_size=6,
)


@fuzz(25)
@given(rows=st.lists(source_rows, max_size=40), schedule=runs)
def test_the_rollup_equals_a_straightforward_count_whatever_the_runs(sync, db, clock, rows, schedule):
    """Rows are written up to the window late; runs of any kind happen at any times in between.

    After a final run, the table equals counting all rows in Python.
    """
    empty_tables(db)
    pending = []
    for minute, second, object_type, operation, direction, latency, late, is_error in rows:
        at = T0 + minute * M + dt.timedelta(seconds=second)
        row = error(at, object_type, operation, direction) if is_error else event(at, object_type, operation, direction, latency)
        written = at.replace(minute=0, second=0) + H + late * M
        pending.append((written, is_error, row))
    pending.sort(key=lambda item: item[0])
    final = T0 + SPAN_MINUTES * M + (WINDOW + 1) * H
    moments = sorted((T0 + step[1] * M, step) for step in schedule) + [(final, ("run", None))]

    for moment, step in moments:
        arrived = [item for item in pending if item[0] <= moment]
        pending = [item for item in pending if item[0] > moment]
        add_errors(db, *(row for _, is_error, row in arrived if is_error))
        add_events(db, *(row for _, is_error, row in arrived if not is_error))
        clock.set(moment)
        if step[0] == "run":
            sync.rollup()
        else:
            start = moment.replace(minute=0) + step[2] * H
            sync.rollup(start, start + step[3] * H)

    assert pending == []
    assert buckets(db) == straightforward_count(*raw_rows(db))


# -- concurrency ------------------------------------------------------------------------


def test_two_processes_rolling_the_same_hours_at_once_give_exact_rows(sync, db, db_url):
    rows = [event(HOUR - i * M * 7, object_type=("Lead", "Contact")[i % 2], latency=i) for i in range(400)]
    add_events(db, *rows)
    add_errors(db, *(error(HOUR - i * M * 11) for i in range(50)))

    workers = [
        Worker("rollup", db_url, NOW.isoformat(), 5),
        Worker("rollup", db_url, NOW.isoformat(), 5, (HOUR - 60 * H).isoformat(), (HOUR + H).isoformat()),
    ]
    try:
        start_together(workers)
        for worker in workers:
            worker.expect("done")
    finally:
        for worker in workers:
            worker.close()

    assert buckets(db) == straightforward_count(*raw_rows(db))


# -- which hours a run recomputes, and the watermark after it (pure functions) -------------


def hours(**given):
    arguments = {"now": NOW, "window_hours": 3, "watermark": None, "pruned_before": None, "earliest": None,
                 "start": None, "end": None}
    return hours_to_recompute(**{**arguments, **given})


def test_a_first_scheduled_run_recomputes_from_the_earliest_source_hour_to_the_current_hour():
    assert hours(earliest=HOUR - 30 * H) == (HOUR - 30 * H, HOUR + H)


def test_a_first_scheduled_run_without_data_recomputes_the_sliding_window():
    assert hours() == (HOUR - 3 * H, HOUR + H)


def test_a_scheduled_run_catches_up_from_the_watermark():
    assert hours(watermark=HOUR - 10 * H) == (HOUR - 10 * H, HOUR + H)


def test_a_scheduled_run_never_starts_after_the_sliding_window():
    assert hours(watermark=HOUR + 5 * H) == (HOUR - 3 * H, HOUR + H)


def test_a_backfill_recomputes_exactly_its_range():
    assert hours(watermark=HOUR - 3 * H, start=HOUR - 20 * H, end=HOUR - 15 * H) == (HOUR - 20 * H, HOUR - 15 * H)


def test_a_backfill_without_a_start_begins_at_the_earliest_source_hour_or_the_current_hour():
    assert hours(end=HOUR - H, earliest=HOUR - 8 * H) == (HOUR - 8 * H, HOUR - H)
    assert hours(end=HOUR + H) == (HOUR, HOUR + H)


def test_a_backfill_without_an_end_runs_to_the_end_of_the_current_hour():
    assert hours(start=HOUR - 2 * H) == (HOUR - 2 * H, HOUR + H)


def test_pruned_hours_are_never_recomputed():
    assert hours(earliest=HOUR - 30 * H, pruned_before=HOUR - 20 * H) == (HOUR - 20 * H, HOUR + H)
    assert hours(start=HOUR - 30 * H, end=HOUR - 25 * H, pruned_before=HOUR - 20 * H) == (HOUR - 20 * H, HOUR - 25 * H)


def watermark_after(**given):
    arguments = {"now": NOW, "window_hours": 3, "watermark": None, "earliest": None, "backfill": False}
    return next_watermark(**{**arguments, **given})


def test_a_scheduled_run_moves_the_watermark_to_the_start_of_the_sliding_window():
    assert watermark_after(watermark=HOUR - 10 * H, first=HOUR - 10 * H, stop=HOUR + H) == HOUR - 3 * H


def test_a_backfill_that_joins_the_final_hours_extends_them():
    assert watermark_after(backfill=True, watermark=HOUR - 10 * H, first=HOUR - 12 * H, stop=HOUR - 5 * H) == HOUR - 5 * H


def test_a_backfill_is_final_only_up_to_the_sliding_window():
    assert watermark_after(backfill=True, watermark=HOUR - 10 * H, first=HOUR - 10 * H, stop=HOUR + H) == HOUR - 3 * H


def test_a_backfill_after_a_gap_leaves_the_watermark():
    assert watermark_after(backfill=True, watermark=HOUR - 10 * H, first=HOUR - 8 * H, stop=HOUR - 6 * H) == HOUR - 10 * H


def test_a_backfill_never_moves_the_watermark_back():
    assert watermark_after(backfill=True, watermark=HOUR - 4 * H, first=HOUR - 12 * H, stop=HOUR - 8 * H) == HOUR - 4 * H


def test_a_first_backfill_from_the_earliest_data_starts_the_watermark():
    assert watermark_after(backfill=True, earliest=HOUR - 12 * H, first=HOUR - 12 * H, stop=HOUR - 6 * H) == HOUR - 6 * H
    assert watermark_after(backfill=True, earliest=HOUR - 12 * H, first=HOUR - 10 * H, stop=HOUR - 6 * H) is None
