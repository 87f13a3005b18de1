"""Reliability of the recording API: several processes (syncing and rolling up at once), killed workers, random input."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
from collections import Counter

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from flask_dynamics_sync import Change
from flask_dynamics_sync.models import HourlyThroughput
from flask_dynamics_sync.models import QueueItem
from flask_dynamics_sync.models import SyncError
from flask_dynamics_sync.models import SyncEvent

from .conftest import fuzz

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKERS = 4
ROUNDS = 40


ROLLERS = 2


def worker(db_url: str, *args: object, stdin: int | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.workers.sync_worker", db_url, *map(str, args)],
        cwd=ROOT,
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def last_json_line(process: subprocess.Popen, timeout: float = 180) -> dict:
    """The worker's report: its last line of output, once it exited successfully."""
    if process.stdin is not None and process.stdin.closed:
        process.stdin = None  # closed to tell the worker to finish; communicate() must not flush it
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def real_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def keys(conn, table, *where) -> list[str]:
    rows = conn.execute(sa.select(table.c.object_type, table.c.record_id).where(*where)).all()
    return [f"{r.object_type}:{r.record_id}" for r in rows]


def rollups_and_raw_counts(db) -> tuple[dict, dict]:
    """(hour, object, operation, direction) -> (synced, failed): the hourly table, and the raw rows counted in Python."""
    raw: dict[tuple, list[int]] = {}
    with db.engine.connect() as conn:
        for column, table, index in ((SyncEvent.synced_at, SyncEvent.__table__, 0),
                                     (SyncError.occurred_at, SyncError.__table__, 1)):
            for row in conn.execute(sa.select(table)):
                hour = getattr(row, column.key).replace(minute=0, second=0, microsecond=0)
                raw.setdefault((hour, row.object_type, row.operation, row.direction), [0, 0])[index] += 1
        rolled = {
            (r.hour, r.object_type, r.operation, r.direction): (r.synced_count, r.failed_count)
            for r in conn.execute(sa.select(HourlyThroughput.__table__))
        }
    return rolled, {key: tuple(value) for key, value in raw.items()}


@pytest.mark.slow
def test_processes_enqueueing_draining_and_rolling_up_at_once_lose_nothing(app, sync, db, db_url, clock):
    rollers = [worker(db_url, "rollup-until-eof", stdin=subprocess.PIPE) for _ in range(ROLLERS)]
    churners = [worker(db_url, "churn", seed, ROUNDS) for seed in range(WORKERS)]
    reports = [last_json_line(process) for process in churners]
    for roller in rollers:
        roller.stdin.close()  # every change is in: one last rollup each, at once
    runs = [last_json_line(roller)["runs"] for roller in rollers]

    # The rollers' figures, before the drain below adds events at a later (frozen) time.
    rolled, raw = rollups_and_raw_counts(db)
    assert rolled == raw
    assert all(n >= 2 for n in runs)

    # Drain what is left, after every backoff has passed.
    clock.set(real_now() + dt.timedelta(days=1))
    drained = 0
    while batch := sync.claim(limit=50):
        sync.mark_synced(batch)
        drained += len(batch)

    queue, events, errors = QueueItem.__table__, SyncEvent.__table__, SyncError.__table__
    with db.engine.connect() as conn:
        pending = keys(conn, queue, queue.c.state == "pending")
        parked = set(keys(conn, queue, queue.c.state == "parked"))
        synced = Counter(keys(conn, events))
        open_errors = set(keys(conn, errors, errors.c.state == "open"))
    enqueued = {key for report in reports for key in report["enqueued"]}

    assert pending == []
    assert enqueued == set(synced) | parked
    assert parked <= open_errors
    assert sum(synced.values()) == sum(r["synced"] for r in reports) + drained
    assert sum(r["failed"] for r in reports) == len(list_errors(db))


def list_errors(db) -> list[int]:
    with db.engine.connect() as conn:
        return conn.scalars(sa.select(SyncError.__table__.c.id)).all()


@pytest.mark.slow
def test_records_claimed_by_a_killed_worker_come_back_after_the_lease(app, sync, db, db_url, clock):
    sync.enqueue_many([Change("Lead", i, "insert") for i in range(10)])
    db.session.commit()
    hung = worker(db_url, "claim-and-hang", 4)
    try:
        taken = json.loads(hung.stdout.readline())
    finally:
        os.kill(hung.pid, signal.SIGKILL)
        hung.communicate(timeout=30)

    clock.set(real_now())
    others = {f"{r.object_type}:{r.record_id}" for r in sync.claim(limit=100)}
    clock.set(real_now() + dt.timedelta(seconds=61))
    returned = {f"{r.object_type}:{r.record_id}" for r in sync.claim(limit=100)}

    assert len(taken) == 4
    assert others == {f"Lead:{i}" for i in range(10)} - set(taken)
    assert returned == set(taken)


# -- random input ---------------------------------------------------------------------

text = st.text(st.characters(codec="utf-8") | st.sampled_from(["\x00", "\ud800", "%", "_", "'", "é", "😀"]), max_size=300)
anything = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.binary(max_size=20), text,
                     st.lists(st.integers(), max_size=2))
objects = st.one_of(st.sampled_from(["Lead", "Contact", "Account", "Opportunity"]), anything)
operations = st.one_of(st.sampled_from(["insert", "update", "delete", "INSERT"]), anything)
directions = st.one_of(st.none(), st.sampled_from(["to_dynamics", "from_dynamics", "up"]), anything)
record_ids = st.one_of(st.integers(min_value=-(2**70), max_value=2**70), text, st.text(min_size=120, max_size=140), anything)
labels = st.one_of(st.none(), text, st.text(min_size=250, max_size=400), anything)


@fuzz(60)
@given(calls=st.lists(st.tuples(objects, record_ids, operations, directions, labels), min_size=1, max_size=5))
def test_random_enqueue_calls_either_succeed_or_raise_a_clear_error(sync, db, calls):
    db.session.execute(sa.delete(QueueItem.__table__))
    db.session.commit()
    accepted = set()
    for object_type, record_id, operation, direction, label in calls:
        try:
            sync.enqueue(object_type, record_id, operation, direction=direction, label=label)
        except (ValueError, TypeError) as exc:
            assert str(exc)
            continue
        accepted.add((object_type, str(record_id), direction or "to_dynamics"))
    db.session.commit()

    with db.engine.connect() as conn:
        stored = {(r.object_type, r.record_id, r.direction) for r in conn.execute(sa.select(QueueItem.__table__))}
    assert stored == accepted


@fuzz(40)
@given(code=st.one_of(text, anything), message=st.one_of(text, st.text(min_size=1990, max_size=2600), anything))
def test_random_failures_either_record_an_error_or_raise_a_clear_one(sync, db, code, message):
    db.session.execute(sa.delete(QueueItem.__table__))
    db.session.execute(sa.delete(SyncError.__table__))
    db.session.commit()
    sync.enqueue("Lead", "1", "insert")
    db.session.commit()
    [record] = sync.claim()

    try:
        sync.mark_failed(record, code, message)
    except (ValueError, TypeError) as exc:
        assert str(exc)
        assert list_errors(db) == []
        return
    with db.engine.connect() as conn:
        stored = conn.execute(sa.select(SyncError.__table__)).one()
    assert len(stored.error_message) <= 2000
    assert "\x00" not in stored.error_message


limits = st.one_of(st.integers(min_value=-5, max_value=20_000), anything)
object_type_lists = st.one_of(st.none(), st.lists(objects, max_size=3), anything)
leases = st.one_of(st.none(), st.integers(min_value=-5, max_value=10**12),
                   st.sampled_from([0, 365 * 24 * 3600, 365 * 24 * 3600 + 1, 10**12, 2**62]), anything)


@fuzz(60)
@given(limit=limits, object_types=object_type_lists, direction=directions, lease=leases)
def test_random_claims_either_hand_out_waiting_records_or_raise_a_clear_error(sync, db, limit, object_types,
                                                                              direction, lease):
    db.session.execute(sa.delete(QueueItem.__table__))
    db.session.commit()
    sync.enqueue_many([Change("Lead", "1", "insert"), Change("Contact", "2", "update", "from_dynamics")])
    db.session.commit()

    try:
        claimed = sync.claim(limit, object_types=object_types, direction=direction, lease_seconds=lease)
    except (ValueError, TypeError) as exc:
        assert str(exc)
        with db.engine.connect() as conn:
            assert conn.scalar(sa.select(sa.func.count()).where(QueueItem.claim_token.is_not(None))) == 0
        return
    assert len(claimed) <= 2
    assert all(isinstance(record.claim_token, str) for record in claimed)


@fuzz(40)
@given(records=st.one_of(anything, st.lists(anything, min_size=1, max_size=3)).filter(lambda value: value != []))
def test_reporting_something_other_than_claimed_records_raises_a_clear_error(sync, db, records):
    with pytest.raises(TypeError) as raised:
        sync.mark_synced(records)
    assert "ClaimedRecord" in str(raised.value)
    with pytest.raises(TypeError):
        sync.mark_failed(records, "0x80040237", "Duplicate record")
    assert list_errors(db) == []


@pytest.mark.parametrize("lease", [10**12, 2**62])
def test_a_lease_no_date_can_hold_is_refused_before_anything_is_claimed(sync, db, lease):
    sync.enqueue("Lead", "1", "insert")
    db.session.commit()

    with pytest.raises(ValueError, match="lease_seconds"):
        sync.claim(lease_seconds=lease)
    assert [r.record_id for r in sync.claim()] == ["1"]
