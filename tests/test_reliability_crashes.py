"""Crashes: a process killed with SIGKILL in the middle of a rollup, a prune, a claim, a success
report or an export loses nothing and counts nothing twice; the work goes on after a restart.

Each worker (:mod:`tests.workers.crash_worker`) freezes inside its transaction,
right after a chosen statement ran, and is killed there. What it had not
committed must vanish; what it had committed must stay; locks and leases of
the dead process must not block the next run (server locks end with the
session, a SQLite lease row after ``DYNAMICS_SYNC_LEASE_SECONDS``).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import time
from collections import Counter

import pytest
import sqlalchemy as sa

from flask_dynamics_sync import Change
from flask_dynamics_sync.models import HourlyThroughput
from flask_dynamics_sync.models import JobState
from flask_dynamics_sync.models import QueueItem
from flask_dynamics_sync.models import SyncError
from flask_dynamics_sync.models import SyncEvent
from flask_dynamics_sync.scheduler import JobRun
from flask_dynamics_sync.scheduler import run_job

from .conftest import ERRORS_URL
from .conftest import NOW
from .conftest import insert_rows
from .workers.crash_worker import CONFIG
from .workers.crash_worker import CrashWorker

pytestmark = pytest.mark.slow

LEASE_SECONDS = 120  # DYNAMICS_SYNC_LEASE_SECONDS default
CLAIM_TIMEOUT = 300  # DYNAMICS_SYNC_CLAIM_TIMEOUT default


@pytest.fixture
def crash_app(make_app, db_url):
    """The standard host with the configuration the crash workers use, in an application context."""
    app = make_app(db_url, config=CONFIG)
    with app.app_context():
        yield app


@pytest.fixture
def crash_db(crash_app):
    return crash_app.extensions["test_db"]


@pytest.fixture
def crash_sync(crash_app):
    return crash_app.extensions["dynamics_sync"].extension


def killed_while_paused(db_url: str, mode: str, *args: object) -> str:
    """Start a crash worker, wait until it froze inside its work, kill -9 it; returns its session id."""
    worker = CrashWorker(mode, db_url, NOW.isoformat(), *args)
    try:
        return worker.paused()
    finally:
        worker.kill()


def wait_for_session_end(db, backend: str, session: str, timeout: float = 30) -> None:
    """Until the server has ended the killed process's session (and rolled its transaction back)."""
    if backend == "sqlite":
        return  # the lock of a dead process is gone once it is reaped
    query = (
        "SELECT count(*) FROM pg_stat_activity WHERE pid = :id" if backend == "postgresql"
        else "SELECT count(*) FROM information_schema.processlist WHERE id = :id"
    )
    deadline = time.monotonic() + timeout
    with db.engine.connect() as conn:
        while conn.scalar(sa.text(query), {"id": int(session)}):
            assert time.monotonic() < deadline, f"session {session} still alive {timeout} s after the kill"
            time.sleep(0.05)
            conn.rollback()


def tick_after_crash(app, clock, job: str, timeout: float = 30) -> JobRun:
    """The job's next tick by a healthy process, once the dead holder's lease is gone.

    The clock moves past the lease (a lease row on SQLite), but stays within the
    same tick; server locks are released as soon as the server ends the session.
    """
    clock.advance(seconds=LEASE_SECONDS + 1)
    deadline = time.monotonic() + timeout
    while (run := run_job(app, job)).reason == "locked":
        assert time.monotonic() < deadline, f"{job} still locked {timeout} s after the kill"
        time.sleep(0.1)
    return run


def rolled_up(db) -> dict[tuple, tuple[int, int]]:
    with db.engine.connect() as conn:
        return {
            (r.hour, r.object_type, r.operation, r.direction): (r.synced_count, r.failed_count)
            for r in conn.execute(sa.select(HourlyThroughput.__table__))
        }


def raw_counts(db) -> dict[tuple, tuple[int, int]]:
    """The rollup of the raw events, counted in Python (the tests add no errors)."""
    with db.engine.connect() as conn:
        events = conn.execute(sa.select(SyncEvent.__table__)).all()
    counts = Counter(
        (e.synced_at.replace(minute=0, second=0, microsecond=0), e.object_type, e.operation, e.direction)
        for e in events
    )
    return {key: (count, 0) for key, count in counts.items()}


def add_events(db, times: list[dt.datetime], object_type: str = "Lead") -> None:
    insert_rows(db, SyncEvent, [
        {"object_type": object_type, "record_id": f"{object_type}-{i}", "operation": "insert",
         "direction": "to_dynamics", "synced_at": at, "latency_ms": 50}
        for i, at in enumerate(times)
    ])


def count(db, model) -> int:
    with db.engine.connect() as conn:
        return int(conn.scalar(sa.select(sa.func.count()).select_from(model)))


def job_status(db, name: str) -> str | None:
    with db.engine.connect() as conn:
        return conn.scalar(sa.select(JobState.last_status).where(JobState.name == name))


def minutes(start: dt.datetime, n: int, step: int = 7) -> list[dt.datetime]:
    return [start + dt.timedelta(minutes=step * i, seconds=i) for i in range(n)]


# -- rollup -----------------------------------------------------------------------------


def test_a_rollup_killed_mid_transaction_leaves_the_previous_figures_and_the_next_tick_counts_exactly(
    crash_app, crash_db, crash_sync, db_url, clock
):
    add_events(crash_db, minutes(NOW.replace(hour=12, minute=0), 12), "Lead")
    crash_sync.rollup()
    before = rolled_up(crash_db)
    add_events(crash_db, minutes(NOW.replace(hour=13, minute=3), 9), "Contact")  # late and current events

    killed_while_paused(db_url, "rollup")

    assert rolled_up(crash_db) == before  # its upsert was never committed
    assert job_status(crash_db, "rollup") == "running"  # the dead run's only trace
    run = tick_after_crash(crash_app, clock, "rollup")
    assert run.reason == "ran" and job_status(crash_db, "rollup") == "ok"
    assert rolled_up(crash_db) == raw_counts(crash_db)
    assert sum(synced for synced, _ in rolled_up(crash_db).values()) == 21


# -- retention --------------------------------------------------------------------------


def test_a_prune_killed_between_batches_keeps_the_rollups_and_the_next_tick_finishes_it(
    crash_app, crash_db, crash_sync, db_url, clock
):
    old = minutes(NOW - dt.timedelta(days=20), 35, step=11)  # beyond the 14 days of event retention
    recent = minutes(NOW.replace(hour=9, minute=0), 5)
    add_events(crash_db, old + recent)
    crash_sync.rollup()
    figures = rolled_up(crash_db)

    killed_while_paused(db_url, "prune", 3)  # batches of 10: two committed, the third not

    assert count(crash_db, SyncEvent) == 40 - 2 * 10
    assert tick_after_crash(crash_app, clock, "prune").reason == "ran"
    assert count(crash_db, SyncEvent) == len(recent)
    crash_sync.rollup()
    assert rolled_up(crash_db) == figures  # pruned hours keep their figures: nothing lost or counted twice


# -- the recording API ------------------------------------------------------------------


@pytest.fixture
def ten_waiting(crash_sync, crash_db) -> set[str]:
    crash_sync.enqueue_many([Change("Lead", f"L-{i}", "insert") for i in range(10)])
    crash_db.session.commit()
    return {f"Lead:L-{i}" for i in range(10)}


def keys(records) -> set[str]:
    return {f"{r.object_type}:{r.record_id}" for r in records}


def test_a_claim_killed_before_it_commits_hands_out_nothing(crash_db, crash_sync, db_url, backend, ten_waiting):
    session = killed_while_paused(db_url, "claim", 4)
    wait_for_session_end(crash_db, backend, session)

    assert keys(crash_sync.claim(limit=100)) == ten_waiting  # at once: no lease to wait for


def test_a_success_report_killed_before_it_commits_leaves_the_records_to_come_back_after_the_lease(
    crash_db, crash_sync, db_url, backend, clock, ten_waiting
):
    worker = CrashWorker("mark-synced", db_url, NOW.isoformat(), 4)
    try:
        taken = set(json.loads(worker.expect("claimed").split(" ", 1)[1]))
        session = worker.paused()
    finally:
        worker.kill()
    wait_for_session_end(crash_db, backend, session)

    assert count(crash_db, SyncEvent) == 0  # the report was never committed
    others = crash_sync.claim(limit=100)
    assert keys(others) == ten_waiting - taken  # the dead worker's claim still holds its records
    crash_sync.mark_synced(others)
    clock.advance(seconds=CLAIM_TIMEOUT + 1)
    returned = crash_sync.claim(limit=100)
    assert keys(returned) == taken
    crash_sync.mark_synced(returned)
    assert (count(crash_db, SyncEvent), count(crash_db, QueueItem)) == (10, 0)  # each record synced once


# -- export -----------------------------------------------------------------------------


def test_an_export_killed_mid_stream_holds_nothing_and_the_next_export_is_complete(
    crash_app, crash_db, db_url, backend
):
    insert_rows(crash_db, SyncError, [
        {"object_type": "Lead", "record_id": f"L-{i}", "record_label": None, "operation": "insert",
         "direction": "to_dynamics", "error_code": "0x80040237", "error_message": "Duplicate record",
         "occurred_at": NOW - dt.timedelta(seconds=i), "attempt": 1, "state": "open"}
        for i in range(300)
    ])

    session = killed_while_paused(db_url, "export")
    wait_for_session_end(crash_db, backend, session)

    with crash_db.engine.begin() as conn:  # the table takes writes: the dead reader holds no lock
        conn.execute(sa.update(SyncError).values(attempt=SyncError.attempt + 1))
    data = crash_app.test_client().get(ERRORS_URL + "export/csv/").get_data(as_text=True)
    rows = list(csv.reader(io.StringIO(data.lstrip("\ufeff"))))[1:]
    assert Counter(row[3] for row in rows) == {f"L-{i}": 1 for i in range(300)}
    assert {row[9] for row in rows} == {"2"}
