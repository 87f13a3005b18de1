"""Job leases: one holder at a time, and a dead holder never blocks the job for good."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from flask_dynamics_sync.jobs import job_states
from flask_dynamics_sync.jobs import record_run
from flask_dynamics_sync.leases import AdvisoryLockLease
from flask_dynamics_sync.leases import LeaseLost
from flask_dynamics_sync.leases import NamedLockLease
from flask_dynamics_sync.leases import RowLease
from flask_dynamics_sync.leases import make_lease

from .conftest import NOW
from .workers.jobs_worker import Worker

LEASE_SECONDS = 120  # DYNAMICS_SYNC_LEASE_SECONDS default


def lease(db, clock, name: str = "rollup", holder: str | None = None):
    return make_lease(db.engine, name, clock=clock, seconds=LEASE_SECONDS, holder=holder)


def row_lease(db, clock, holder: str, name: str = "rollup") -> RowLease:
    return RowLease(db.engine, name, clock=clock, seconds=LEASE_SECONDS, holder=holder)


def test_each_database_uses_its_own_kind_of_lock(db, clock, backend):
    expected = {"sqlite": RowLease, "postgresql": AdvisoryLockLease, "mariadb": NamedLockLease}[backend]

    assert type(lease(db, clock)) is expected


def test_one_holder_at_a_time(db, clock):
    first, second = lease(db, clock, holder="a"), lease(db, clock, holder="b")

    assert first.acquire() is True
    assert second.acquire() is False
    first.release()
    assert second.acquire() is True
    second.release()


def test_leases_of_different_jobs_are_independent(db, clock):
    rollup, prune = lease(db, clock, "rollup", holder="a"), lease(db, clock, "prune", holder="b")

    assert (rollup.acquire(), prune.acquire()) == (True, True)
    rollup.release()
    prune.release()


def test_release_twice_is_harmless(db, clock):
    held = lease(db, clock, holder="a")
    held.acquire()

    held.release()
    held.release()

    taken = lease(db, clock, holder="b")
    assert taken.acquire() is True
    taken.release()  # a server lock left on a connection nobody releases would block the next test's holder


# -- lease rows (SQLite's lease; they work on every database) -----------------------------


def test_an_expired_lease_row_is_taken_over(db, clock):
    row_lease(db, clock, "dead").acquire()
    clock.advance(seconds=LEASE_SECONDS - 1)
    assert row_lease(db, clock, "alive").acquire() is False

    clock.advance(seconds=1)

    assert row_lease(db, clock, "alive").acquire() is True
    assert job_states(db.engine)["rollup"].holder == "alive"


def test_renewing_pushes_the_expiry_back(db, clock):
    held = row_lease(db, clock, "a")
    held.acquire()
    clock.advance(seconds=100)

    held.renew()
    clock.advance(seconds=100)

    assert row_lease(db, clock, "b").acquire() is False
    assert job_states(db.engine)["rollup"].lease_expires_at == NOW + dt.timedelta(seconds=100 + LEASE_SECONDS)


def test_a_holder_whose_lease_was_taken_over_learns_it_when_renewing(db, clock):
    slow = row_lease(db, clock, "slow")
    slow.acquire()
    clock.advance(seconds=LEASE_SECONDS)
    row_lease(db, clock, "fast").acquire()

    with pytest.raises(LeaseLost, match="taken over"):
        slow.renew()


def test_releasing_frees_the_row(db, clock):
    held = row_lease(db, clock, "a")
    held.acquire()

    held.release()

    info = job_states(db.engine)["rollup"]
    assert (info.holder, info.lease_expires_at) == (None, None)


# -- a killed holder ------------------------------------------------------------------


def acquire_within(make, seconds: float = 20) -> bool:
    """Poll until the lock is free: the server drops a killed session's locks asynchronously."""
    deadline = time.monotonic() + seconds
    while True:
        candidate = make()
        if candidate.acquire():
            candidate.release()
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def test_a_killed_holder_does_not_keep_the_lease(db, db_url, clock, backend):
    holder = Worker("hold", db_url, "rollup", NOW.isoformat())
    try:
        holder.expect("held")
        assert lease(db, clock, holder="next").acquire() is False
    finally:
        holder.kill()

    if backend == "sqlite":
        assert lease(db, clock, holder="next").acquire() is False  # the row outlives its holder…
        clock.advance(seconds=LEASE_SECONDS)  # …until it expires
    assert acquire_within(lambda: lease(db, clock, holder="next"))


# -- bookkeeping ----------------------------------------------------------------------


def test_record_run_tells_the_story_of_a_run(db, clock):
    def work() -> str:
        clock.advance(seconds=3)
        return "did it"

    assert record_run(db.engine, "prune", clock, work) == "did it"

    info = job_states(db.engine)["prune"]
    assert (info.last_started_at, info.last_finished_at, info.last_status, info.last_message) == (
        NOW, NOW + dt.timedelta(seconds=3), "ok", "did it",
    )


def test_record_run_records_a_failure_and_raises_it(db, clock):
    def work() -> None:
        raise ValueError("x" * 600)

    with pytest.raises(ValueError):
        record_run(db.engine, "prune", clock, work, next_run_at=NOW + dt.timedelta(hours=1))

    info = job_states(db.engine)["prune"]
    assert (info.last_status, len(info.last_message), info.next_run_at) == ("failed", 500, NOW + dt.timedelta(hours=1))
    assert info.last_message.startswith("ValueError: xxx")
