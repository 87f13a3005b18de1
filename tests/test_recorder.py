"""The recording API: enqueue (coalescing, outbox), claim, mark_synced, mark_failed, misuse."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from flask_dynamics_sync import Change
from flask_dynamics_sync import ClaimLostError
from flask_dynamics_sync import Direction
from flask_dynamics_sync import ErrorState
from flask_dynamics_sync import Operation
from flask_dynamics_sync.models import ERROR_MESSAGE_LENGTH
from flask_dynamics_sync.models import QueueItem
from flask_dynamics_sync.models import SyncError
from flask_dynamics_sync.models import SyncEvent

from .conftest import NOW


def queue_rows(db):
    q = QueueItem.__table__
    with db.engine.connect() as conn:
        return [
            dict(row._mapping)
            for row in conn.execute(sa.select(q).order_by(q.c.object_type, q.c.record_id, q.c.direction))
        ]


def table_count(db, model) -> int:
    with db.engine.connect() as conn:
        return conn.scalar(sa.select(sa.func.count()).select_from(model.__table__))


# -- coalescing ---------------------------------------------------------------------


def test_enqueue_writes_one_pending_row(sync, db):
    sync.enqueue("Lead", 42, "insert", label="Ada Lovelace")
    db.session.commit()

    [row] = queue_rows(db)
    assert (row["object_type"], row["record_id"], row["operation"], row["direction"]) == (
        "Lead", "42", "insert", "to_dynamics",
    )
    assert (row["state"], row["label"], row["queued_at"], row["change_count"]) == ("pending", "Ada Lovelace", NOW, 1)


def test_updates_on_a_pending_insert_stay_one_pending_insert(sync, db, clock):
    sync.enqueue("Lead", "1", Operation.INSERT)
    clock.advance(minutes=5)
    sync.enqueue("Lead", "1", Operation.UPDATE)
    clock.advance(minutes=5)
    sync.enqueue("Lead", "1", Operation.UPDATE, label="renamed")
    db.session.commit()

    [row] = queue_rows(db)
    assert (row["operation"], row["queued_at"], row["changed_at"], row["change_count"], row["label"]) == (
        "insert", NOW, NOW + dt.timedelta(minutes=10), 3, "renamed",
    )


def test_update_then_update_is_one_pending_update_keeping_its_start(sync, db, clock):
    sync.enqueue("Contact", "7", "update")
    clock.advance(hours=1)
    sync.enqueue("Contact", "7", "update")
    db.session.commit()

    [row] = queue_rows(db)
    assert (row["operation"], row["queued_at"], row["change_count"]) == ("update", NOW, 2)


def test_directions_are_kept_apart(sync, db):
    sync.enqueue("Account", "9", "update", direction=Direction.TO_DYNAMICS)
    sync.enqueue("Account", "9", "update", direction="from_dynamics")
    db.session.commit()

    assert [r["direction"] for r in queue_rows(db)] == ["from_dynamics", "to_dynamics"]


def test_enqueue_many_coalesces_within_one_batch(sync, db):
    written = sync.enqueue_many(
        [
            Change("Lead", 1, "insert"),
            Change("Lead", 1, "update"),
            Change("Lead", 2, "update"),
        ]
    )
    db.session.commit()

    assert written == 3
    assert [(r["record_id"], r["operation"], r["change_count"]) for r in queue_rows(db)] == [
        ("1", "insert", 2),
        ("2", "update", 1),
    ]


# -- outbox -------------------------------------------------------------------------


def test_host_rollback_leaves_no_queue_row(sync, db):
    sync.enqueue("Lead", "1", "insert")
    db.session.rollback()

    assert queue_rows(db) == []


def test_enqueue_does_not_commit_by_itself(sync, db, app):
    sync.enqueue("Lead", "1", "insert")
    # A second connection does not see the uncommitted row.
    other = sa.create_engine(db.engine.url)
    try:
        with other.connect() as conn:
            assert conn.scalar(sa.select(sa.func.count()).select_from(QueueItem.__table__)) == 0
    finally:
        db.session.rollback()
        other.dispose()


# -- claim --------------------------------------------------------------------------


def test_claim_hands_oldest_records_first(sync, db, clock):
    for record_id in ("a", "b", "c"):
        sync.enqueue("Lead", record_id, "insert")
        clock.advance(seconds=1)
    db.session.commit()

    claimed = sync.claim(limit=2)

    assert [c.record_id for c in claimed] == ["a", "b"]
    assert {c.claim_token for c in claimed} == {claimed[0].claim_token}


def test_claimed_records_are_not_claimed_again_until_the_lease_ends(sync, db, clock, app):
    sync.enqueue("Lead", "a", "insert")
    db.session.commit()

    first = sync.claim(limit=10)
    assert sync.claim(limit=10) == []
    clock.advance(seconds=app.config["DYNAMICS_SYNC_CLAIM_TIMEOUT"] + 1)
    again = sync.claim(limit=10)

    assert [c.record_id for c in first] == ["a"]
    assert [c.record_id for c in again] == ["a"]
    assert again[0].claim_token != first[0].claim_token


def test_claim_filters_by_object_type_and_direction(sync, db):
    sync.enqueue("Lead", "1", "insert")
    sync.enqueue("Contact", "2", "insert")
    sync.enqueue("Contact", "3", "insert", direction="from_dynamics")
    db.session.commit()

    claimed = sync.claim(limit=10, object_types=["Contact"], direction="to_dynamics")

    assert [c.record_id for c in claimed] == ["2"]


# -- success ------------------------------------------------------------------------


def test_mark_synced_removes_from_queue_and_appends_an_event(sync, db, clock):
    sync.enqueue("Lead", "1", "insert")
    db.session.commit()
    [record] = sync.claim()
    clock.advance(seconds=90)

    outcome = sync.mark_synced(record)

    assert (outcome.synced, outcome.requeued, outcome.lost_claim) == (1, 0, 0)
    assert queue_rows(db) == []
    with db.engine.connect() as conn:
        [event] = conn.execute(sa.select(SyncEvent.__table__)).all()
    assert (event.object_type, event.record_id, event.operation, event.direction, event.synced_at, event.latency_ms) == (
        "Lead", "1", "insert", "to_dynamics", NOW + dt.timedelta(seconds=90), 90_000,
    )


def test_a_record_synced_after_weeks_records_the_longest_latency_the_column_holds(sync, db, clock):
    sync.enqueue("Lead", "1", "insert")
    db.session.commit()
    [record] = sync.claim()
    clock.advance(days=30)  # e.g. parked, then retried by an operator a month later

    outcome = sync.mark_synced(record)

    assert outcome.synced == 1
    with db.engine.connect() as conn:
        assert conn.scalar(sa.select(SyncEvent.latency_ms)) == 2**31 - 1


def test_a_change_while_in_flight_waits_again_as_an_update(sync, db, clock):
    sync.enqueue("Lead", "1", "insert")
    db.session.commit()
    [record] = sync.claim()
    clock.advance(minutes=1)
    sync.enqueue("Lead", "1", "update")
    db.session.commit()
    clock.advance(minutes=1)

    outcome = sync.mark_synced(record)

    assert (outcome.synced, outcome.requeued) == (0, 1)
    [row] = queue_rows(db)
    assert (row["operation"], row["queued_at"], row["claim_token"], row["state"]) == (
        "update", NOW + dt.timedelta(minutes=1), None, "pending",
    )
    assert table_count(db, SyncEvent) == 1


def test_a_worker_that_lost_its_claim_cannot_remove_the_record(sync, db, clock, app):
    sync.enqueue("Lead", "1", "insert")
    db.session.commit()
    [stale] = sync.claim()
    clock.advance(seconds=app.config["DYNAMICS_SYNC_CLAIM_TIMEOUT"] + 1)
    [fresh] = sync.claim()

    outcome = sync.mark_synced(stale)

    assert (outcome.synced, outcome.lost_claim) == (0, 1)
    assert [r["claim_token"] for r in queue_rows(db)] == [fresh.claim_token]


def test_mark_synced_takes_a_batch(sync, db):
    sync.enqueue_many([Change("Lead", i, "insert") for i in range(5)])
    db.session.commit()

    outcome = sync.mark_synced(sync.claim(limit=5))

    assert outcome.synced == 5
    assert table_count(db, SyncEvent) == 5
    assert queue_rows(db) == []


# -- failure ------------------------------------------------------------------------


def test_mark_failed_with_retry_keeps_the_record_queued_with_a_backoff(sync, db, app):
    sync.enqueue("Lead", "1", "insert", label="Ada")
    db.session.commit()
    [record] = sync.claim()

    parked = sync.mark_failed(record, "0x80040237", "Duplicate record", retry=True)

    assert parked is False
    [row] = queue_rows(db)
    backoff = app.config["DYNAMICS_SYNC_RETRY_BACKOFF"]
    assert (row["state"], row["attempts"], row["claim_token"], row["not_before"]) == (
        "pending", 1, None, NOW + dt.timedelta(seconds=backoff),
    )
    assert sync.claim() == []
    with db.engine.connect() as conn:
        [error] = conn.execute(sa.select(SyncError.__table__)).all()
    assert (
        error.object_type, error.record_id, error.record_label, error.operation, error.direction,
        error.error_code, error.error_message, error.occurred_at, error.attempt, error.state,
    ) == ("Lead", "1", "Ada", "insert", "to_dynamics", "0x80040237", "Duplicate record", NOW, 1, "open")


def test_mark_failed_without_retry_parks_the_record(sync, db):
    sync.enqueue("Lead", "1", "insert")
    db.session.commit()
    [record] = sync.claim()

    assert sync.mark_failed(record, "0x80040220", "Principal user is missing privileges", retry=False) is True
    [row] = queue_rows(db)
    assert (row["state"], row["claim_token"]) == ("parked", None)
    assert sync.claim() == []


def test_mark_failed_does_not_park_a_record_that_changed_in_flight(sync, db, clock):
    sync.enqueue("Lead", "1", "insert")
    db.session.commit()
    [record] = sync.claim()
    clock.advance(minutes=1)
    sync.enqueue("Lead", "1", "update")
    db.session.commit()

    parked = sync.mark_failed(record, "0x80040220", "Principal user is missing privileges", retry=False)

    assert parked is False
    [row] = queue_rows(db)
    assert (row["state"], row["attempts"], row["not_before"], row["claim_token"], row["dirty_since"]) == (
        "pending", 1, NOW + dt.timedelta(minutes=1), None, None,
    )
    assert [r.record_id for r in sync.claim()] == ["1"]
    with db.engine.connect() as conn:
        assert conn.execute(sa.select(SyncError.__table__.c.state, SyncError.__table__.c.attempt)).all() == [
            ("open", 1)
        ]


def test_mark_failed_after_the_claim_was_taken_over_raises_and_writes_nothing(sync, db, clock, app):
    sync.enqueue("Lead", "1", "insert")
    db.session.commit()
    [stale] = sync.claim()
    clock.advance(seconds=app.config["DYNAMICS_SYNC_CLAIM_TIMEOUT"] + 1)
    [fresh] = sync.claim()

    with pytest.raises(ClaimLostError, match="Lead '1' \\(to_dynamics\\)"):
        sync.mark_failed(stale, "0x80040220", "denied", retry=False)

    [row] = queue_rows(db)
    assert (row["state"], row["attempts"], row["claim_token"]) == ("pending", 0, fresh.claim_token)
    assert table_count(db, SyncError) == 0


def test_mark_failed_after_the_new_claimant_synced_the_record_raises_and_writes_nothing(sync, db, clock, app):
    sync.enqueue("Lead", "1", "insert")
    db.session.commit()
    [stale] = sync.claim()
    clock.advance(seconds=app.config["DYNAMICS_SYNC_CLAIM_TIMEOUT"] + 1)
    sync.mark_synced(sync.claim())

    with pytest.raises(ClaimLostError):
        sync.mark_failed(stale, "0x80040220", "denied", retry=True)

    assert queue_rows(db) == []
    assert table_count(db, SyncError) == 0


def test_a_parked_record_waits_again_when_it_changes(sync, db, clock):
    sync.enqueue("Lead", "1", "insert")
    db.session.commit()
    sync.mark_failed(sync.claim()[0], "0x80040220", "denied", retry=False)
    clock.advance(hours=2)

    sync.enqueue("Lead", "1", "update")
    db.session.commit()

    [row] = queue_rows(db)
    assert (row["state"], row["operation"], row["queued_at"]) == ("pending", "insert", NOW + dt.timedelta(hours=2))


def test_the_last_allowed_attempt_parks_even_with_retry(sync, db, clock, app):
    app_max = app.config["DYNAMICS_SYNC_MAX_ATTEMPTS"]
    sync.enqueue("Lead", "1", "insert")
    db.session.commit()
    for attempt in range(1, app_max + 1):
        clock.advance(hours=2)
        [record] = sync.claim()
        assert record.attempts == attempt - 1
        parked = sync.mark_failed(record, "0x80072322", "Timeout", retry=True)
    assert parked is True
    assert queue_rows(db)[0]["state"] == "parked"


def test_success_after_failures_resolves_the_open_errors(sync, db, clock):
    sync.enqueue("Lead", "1", "insert")
    db.session.commit()
    sync.mark_failed(sync.claim()[0], "0x80072322", "Timeout")
    clock.advance(hours=1)

    sync.mark_synced(sync.claim())

    with db.engine.connect() as conn:
        states = conn.scalars(sa.select(SyncError.__table__.c.state)).all()
    assert states == [ErrorState.RESOLVED.value]


def test_a_batch_with_several_previously_failed_records_resolves_all_their_errors(sync, db, clock):
    sync.enqueue_many([Change("Lead", 1, "insert"), Change("Lead", 2, "insert"), Change("Lead", 3, "insert")])
    db.session.commit()
    first, second, third = sync.claim(limit=3)
    sync.mark_failed(first, "0x80072322", "Timeout")
    sync.mark_failed(second, "0x80072322", "Timeout")
    sync.mark_synced(third)
    clock.advance(hours=1)

    sync.mark_synced(sync.claim(limit=3))

    with db.engine.connect() as conn:
        rows = conn.execute(sa.select(SyncError.__table__.c.record_id, SyncError.__table__.c.state)).all()
    assert sorted(rows) == [("1", "resolved"), ("2", "resolved")]


def test_an_overlong_message_is_stored_truncated(sync, db):
    sync.enqueue("Lead", "1", "insert")
    db.session.commit()

    sync.mark_failed(sync.claim()[0], "0x80040237", "é" * (ERROR_MESSAGE_LENGTH + 500))

    with db.engine.connect() as conn:
        message = conn.scalar(sa.select(SyncError.__table__.c.error_message))
    assert message == "é" * ERROR_MESSAGE_LENGTH


def test_nul_bytes_in_messages_and_labels_are_replaced(sync, db):
    sync.enqueue("Lead", "1", "insert", label="a\x00b")
    db.session.commit()

    sync.mark_failed(sync.claim()[0], "0x1", "bad\x00byte")

    with db.engine.connect() as conn:
        row = conn.execute(sa.select(SyncError.__table__)).one()
    assert (row.record_label, row.error_message) == ("a\ufffdb", "bad\ufffdbyte")


# -- misuse -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        (("Invoice", "1", "insert"), {}, ValueError, "unknown object type 'Invoice'"),
        (("Lead", "1", "delete"), {}, ValueError, "unknown operation 'delete'"),
        (("Lead", "1", "insert"), {"direction": "sideways"}, ValueError, "unknown direction 'sideways'"),
        (("Lead", "x" * 129, "insert"), {}, ValueError, "at most 128 fit"),
        (("Lead", "", "insert"), {}, ValueError, "must not be empty"),
        (("Lead", "a\x00b", "insert"), {}, ValueError, "NUL"),
        (("Lead", 1.5, "insert"), {}, TypeError, "record_id must be a str, int or UUID"),
        (("Lead", True, "insert"), {}, TypeError, "record_id must be a str, int or UUID"),
        ((None, "1", "insert"), {}, TypeError, "object_type must be a str"),
        (("Lead", "1", 3), {}, TypeError, "operation must be a str"),
        (("Lead", "1", "insert"), {"label": 5}, TypeError, "label must be a str"),
    ],
)
def test_misuse_raises_before_anything_is_written(sync, db, args, kwargs, error, message):
    sync.enqueue("Lead", "ok", "insert")

    with pytest.raises(error, match=message):
        sync.enqueue(*args, **kwargs)

    db.session.commit()
    assert [r["record_id"] for r in queue_rows(db)] == ["ok"]


def test_one_bad_change_in_a_batch_writes_none_of_it(sync, db):
    with pytest.raises(ValueError, match="unknown object type"):
        sync.enqueue_many([Change("Lead", 1, "insert"), Change("Nope", 2, "insert")])
    db.session.commit()

    assert queue_rows(db) == []


@pytest.mark.parametrize(
    ("code", "message", "retry", "error", "text"),
    [
        ("x" * 33, "m", True, ValueError, "at most 32 fit"),
        ("", "m", True, ValueError, "code must not be empty"),
        (123, "m", True, TypeError, "code must be a str"),
        ("0x1", None, True, TypeError, "message must be a str"),
        ("0x1", "m", "yes", TypeError, "retry must be a bool"),
        # Found by an outside probe: a header injection that stopped the alert e-mails for good.
        ("0x1\nBcc: evil@x", "m", False, ValueError, r"code must be printable text; it holds '\\n' \(U\+000A\)"),
        ("0x\r1", "m", True, ValueError, r"U\+000D"),
        ("0x\x001", "m", True, ValueError, r"U\+0000"),
        ("0x\u202e1", "m", True, ValueError, r"U\+202E"),
        ("0x\u20281", "m", True, ValueError, r"U\+2028"),
    ],
)
def test_mark_failed_misuse_changes_nothing(sync, db, code, message, retry, error, text):
    sync.enqueue("Lead", "1", "insert")
    db.session.commit()
    [record] = sync.claim()

    with pytest.raises(error, match=text):
        sync.mark_failed(record, code, message, retry=retry)

    assert table_count(db, SyncError) == 0
    assert queue_rows(db)[0]["claim_token"] == record.claim_token


def test_claim_rejects_a_bad_limit(sync):
    with pytest.raises(ValueError, match="limit must be between 1 and"):
        sync.claim(limit=0)
    with pytest.raises(TypeError, match="limit must be an int"):
        sync.claim(limit="10")


def test_mark_synced_rejects_what_is_not_a_claimed_record(sync):
    with pytest.raises(TypeError, match="ClaimedRecord"):
        sync.mark_synced(["Lead:1"])


# -- deadlocks ----------------------------------------------------------------------


class FakeDriverError(Exception):
    pass


def test_a_deadlocked_worker_transaction_is_retried(app):
    recorder = app.extensions["dynamics_sync"].recorder
    calls = []

    def work(conn):
        calls.append(1)
        if len(calls) == 1:
            raise sa.exc.OperationalError("UPDATE ...", {}, FakeDriverError(1213, "Deadlock found"))
        return "done"

    assert recorder.transaction(work) == "done"
    assert len(calls) == 2


def test_other_database_errors_are_not_retried(app):
    recorder = app.extensions["dynamics_sync"].recorder
    calls = []

    def work(conn):
        calls.append(1)
        raise sa.exc.OperationalError("UPDATE ...", {}, FakeDriverError(2006, "server has gone away"))

    with pytest.raises(sa.exc.OperationalError):
        recorder.transaction(work)
    assert len(calls) == 1


def test_an_unhashable_operation_is_a_clear_type_error(sync):
    with pytest.raises(TypeError, match="operation must be a str, not list"):
        sync.enqueue("Lead", "1", ["insert"])


def test_enum_members_are_stored_as_their_values(sync, db):
    sync.enqueue("Lead", "1", Operation.UPDATE, direction=Direction.FROM_DYNAMICS)
    db.session.commit()

    [row] = queue_rows(db)
    assert (type(row["operation"]), row["operation"], row["direction"]) == (str, "update", "from_dynamics")


def test_enqueue_many_uses_the_configured_default_direction(make_app, db_url):
    app = make_app(db_url, config={"DYNAMICS_SYNC_DEFAULT_DIRECTION": "from_dynamics"})
    with app.app_context():
        sync = app.extensions["dynamics_sync"].extension
        db = app.extensions["test_db"]
        sync.enqueue_many([Change("Lead", 1, "insert")])
        db.session.commit()

        assert [r["direction"] for r in queue_rows(db)] == ["from_dynamics"]
