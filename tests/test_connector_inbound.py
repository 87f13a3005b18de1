"""Changes from Dynamics: change-tracking reads into the host, refusals, no echo, conflicts.

The CRM host receives leads into its prospects (``crm_host.receive_lead``).
Every test runs on SQLite, PostgreSQL and MariaDB against a real local
Dataverse over HTTPS.
"""

from __future__ import annotations

import datetime as dt
import typing as t

import pytest
import sqlalchemy as sa

from flask_dynamics_sync.models import ChangeTrackingState
from flask_dynamics_sync.models import HourlyThroughput
from flask_dynamics_sync.models import QueueItem
from flask_dynamics_sync.models import SyncError
from flask_dynamics_sync.models import SyncEvent
from flask_dynamics_sync.testing import LocalDataverse
from tests.workers import crm_host
from tests.workers.crm_host import LEADS_BOTH_WAYS
from tests.workers.crm_host import Prospect
from tests.workers.crm_host import db

API = "/api/data/v9.2/"


@pytest.fixture
def crm(make_crm: t.Callable[..., t.Any], db_url: str) -> t.Iterator[t.Any]:
    """The CRM host receiving leads, inside an application context."""
    application = make_crm(db_url, Lead=LEADS_BOTH_WAYS)
    with application.app_context():
        yield application


def prospects() -> list[tuple[str, str, str]]:
    """``(dataverse id, name, status)`` of every prospect, by name."""
    db.session.remove()
    return sorted((p.dataverse_id, p.name, p.status) for p in db.session.scalars(sa.select(Prospect)))


def rows_of(model: type) -> list[t.Any]:
    with db.engine.connect() as conn:
        return conn.execute(sa.select(model.__table__).order_by(*model.__table__.primary_key)).all()


def events() -> list[tuple[str, str, str, str]]:
    """``(object type, record id, operation, direction)`` of every sync event, in order."""
    return [(e.object_type, e.record_id, e.operation, e.direction) for e in rows_of(SyncEvent)]


def lead(dv: LocalDataverse, subject: str, status: str = "new") -> str:
    """A lead created in Dynamics; its row id."""
    return dv.insert("leads", {"subject": subject, "dsync_status": status})["leadid"]


def test_first_read_brings_every_row_then_deltas_bring_only_changes(crm, make_worker, local_dataverse):
    dv = local_dataverse
    ada, bob = lead(dv, "Ada"), lead(dv, "Bob")
    worker = make_worker(crm)

    first = worker.run_once().received
    assert (first.applied, first.full_reads) == (2, 1)
    assert prospects() == sorted([(ada, "Ada", "new"), (bob, "Bob", "new")])
    assert "$deltatoken=" in rows_of(ChangeTrackingState)[0].link

    dv.update("leads", ada, {"subject": "Ada Lovelace", "dsync_status": "contacted"})
    cyd = lead(dv, "Cyd")
    second = worker.run_once().received
    assert (second.applied, second.full_reads) == (2, 0)
    assert prospects() == sorted([(ada, "Ada Lovelace", "contacted"), (bob, "Bob", "new"), (cyd, "Cyd", "new")])
    assert events() == [
        ("Lead", ada, "insert", "from_dynamics"),
        ("Lead", bob, "insert", "from_dynamics"),
        ("Lead", ada, "update", "from_dynamics"),
        ("Lead", cyd, "insert", "from_dynamics"),
    ]


def test_received_changes_count_in_the_hourly_figures(crm, make_worker, local_dataverse, clock):
    lead(local_dataverse, "Ada")
    lead(local_dataverse, "Bob")
    make_worker(crm).run_once()
    sync = crm.extensions["dynamics_sync"].extension
    clock.advance(hours=1)
    sync.rollup()
    assert [
        (r.object_type, r.operation, r.direction, r.synced_count) for r in rows_of(HourlyThroughput) if r.synced_count
    ] == [("Lead", "insert", "from_dynamics", 2)]


def test_pages_are_followed_and_the_delta_link_is_stored(make_crm, db_url, make_worker, local_dataverse):
    application = make_crm(db_url, config={"DYNAMICS_SYNC_DATAVERSE_PAGE_SIZE": 2}, Lead=LEADS_BOTH_WAYS)
    with application.app_context():
        ids = [lead(local_dataverse, f"Lead {n}") for n in range(5)]
        report = make_worker(application).run_once().received
        assert (report.pages, report.applied) == (3, 5)
        assert [p[0] for p in prospects()] == sorted(ids)
        [state] = rows_of(ChangeTrackingState)
        assert (state.object_type, state.full_reads) == ("Lead", 1)
        assert "$deltatoken=" in state.link


def test_a_row_deleted_in_dynamics_deletes_the_host_record(crm, make_worker, local_dataverse):
    ada, bob = lead(local_dataverse, "Ada"), lead(local_dataverse, "Bob")
    worker = make_worker(crm)
    worker.run_once()
    local_dataverse.delete("leads", ada)
    assert worker.run_once().received.applied == 1
    assert prospects() == [(bob, "Bob", "new")]
    assert events()[-1] == ("Lead", ada, "update", "from_dynamics")


def test_an_expired_delta_token_reads_everything_again_without_duplicates(make_crm, db_url, make_worker):
    now = [1000.0]
    with LocalDataverse(change_retention_seconds=60, clock=lambda: now[0]) as dv:
        application = make_crm(db_url, dv=dv, Lead=LEADS_BOTH_WAYS)
        with application.app_context():
            ada, bob = lead(dv, "Ada"), lead(dv, "Bob")
            worker = make_worker(application)
            worker.run_once()
            now[0] += 61
            cyd = lead(dv, "Cyd")
            report = worker.run_once().received
            assert (report.full_reads, report.applied, report.unchanged) == (1, 1, 2)
            assert prospects() == sorted([(ada, "Ada", "new"), (bob, "Bob", "new"), (cyd, "Cyd", "new")])
            assert [e[1] for e in events()] == [ada, bob, cyd]
            assert rows_of(ChangeTrackingState)[0].full_reads == 2


def test_a_change_the_host_refuses_is_a_sync_error_and_a_retry_applies_it(crm, make_worker, local_dataverse, monkeypatch):
    ada = lead(local_dataverse, "Ada", status="qualified")
    worker = make_worker(crm)
    assert worker.run_once().received.refused == 1
    assert prospects() == []
    [error] = rows_of(SyncError)
    assert (error.object_type, error.record_id, error.direction, error.error_code, error.error_message, error.state) == (
        "Lead", ada, "from_dynamics", "HostRefused", "Unknown prospect status 'qualified'.", "open"
    )

    monkeypatch.setattr(crm_host, "PROSPECT_STATUSES", {"new", "contacted", "qualified"})
    sync = crm.extensions["dynamics_sync"].extension
    assert sync.retry_errors([error.id]).records == 1
    assert worker.run_once().received.applied == 1
    assert prospects() == [(ada, "Ada", "qualified")]
    assert rows_of(SyncError)[0].state == "resolved"
    assert rows_of(QueueItem) == []
    assert events() == [("Lead", ada, "insert", "from_dynamics")]


def test_a_change_from_dynamics_is_not_sent_back(crm, make_worker, local_dataverse):
    ada = lead(local_dataverse, "Ada")
    worker = make_worker(crm)
    worker.run_once()
    local_dataverse.update("leads", ada, {"subject": "Ada Lovelace"})
    worker.run_once()
    assert rows_of(QueueItem) == []
    local_dataverse.clear_request_log()
    assert worker.run_once().synced == 0
    assert [r.method for r in local_dataverse.request_log if r.path.startswith(API)] == ["GET"]


def test_the_connectors_own_write_coming_back_is_not_counted(crm, make_worker, local_dataverse):
    db.session.add(Prospect(name="Eve"))
    db.session.commit()
    worker = make_worker(crm)
    report = worker.run_once()
    assert report.synced == 1
    # The row Eve's send created comes back in the first read, with Eve's own values.
    assert (report.received.applied, report.received.unchanged) == (0, 1)
    assert [e[3] for e in events()] == ["to_dynamics"]


def modified_on(dv: LocalDataverse, row_id: str) -> dt.datetime:
    [row] = [r for r in dv.rows("leads") if r["leadid"] == row_id]
    return dt.datetime.fromisoformat(row["modifiedon"].rstrip("Z"))


def changed_on_both_sides(dv: LocalDataverse, worker: t.Any, clock: t.Any, host_later: bool) -> str:
    """A lead received, then renamed in Dynamics and in the host (the host a minute after or before)."""
    ada = lead(dv, "Ada")
    worker.run_once()
    dv.update("leads", ada, {"subject": "Ada (Dynamics)"})
    clock.set(modified_on(dv, ada) + dt.timedelta(minutes=1 if host_later else -1))
    prospect = db.session.scalar(sa.select(Prospect).where(Prospect.dataverse_id == ada))
    prospect.name = "Ada (host)"
    db.session.commit()
    return ada


def test_last_writer_wins_dynamics_when_its_change_is_later(crm, make_worker, local_dataverse, clock):
    worker = make_worker(crm)
    ada = changed_on_both_sides(local_dataverse, worker, clock, host_later=False)
    assert worker.receiver.run_once().applied == 1
    assert prospects() == [(ada, "Ada (Dynamics)", "new")]
    assert rows_of(QueueItem) == []


def test_last_writer_wins_the_host_when_its_change_is_later(crm, make_worker, local_dataverse, clock):
    worker = make_worker(crm)
    ada = changed_on_both_sides(local_dataverse, worker, clock, host_later=True)
    assert worker.receiver.run_once().host_wins == 1
    assert prospects() == [(ada, "Ada (host)", "new")]
    worker.run_once()
    assert [r["subject"] for r in local_dataverse.rows("leads")] == ["Ada (host)"]


def test_host_wins_rule_keeps_the_host_change_even_when_dynamics_is_later(make_crm, db_url, make_worker, local_dataverse, clock):
    application = make_crm(db_url, config={"DYNAMICS_SYNC_CONFLICT_RULE": "host"}, Lead=LEADS_BOTH_WAYS)
    with application.app_context():
        worker = make_worker(application)
        ada = changed_on_both_sides(local_dataverse, worker, clock, host_later=False)
        assert worker.receiver.run_once().host_wins == 1
        assert prospects() == [(ada, "Ada (host)", "new")]
        prospect_id = db.session.scalar(sa.select(Prospect.id))
        assert [(q.record_id, q.direction) for q in rows_of(QueueItem)] == [(str(prospect_id), "to_dynamics")]


def test_nothing_is_read_from_a_paused_table_until_it_is_resumed(crm, make_worker, local_dataverse):
    sync = crm.extensions["dynamics_sync"].extension
    sync.pause("Lead", "from_dynamics", by="ana")
    ada = lead(local_dataverse, "Ada")
    worker = make_worker(crm)
    local_dataverse.clear_request_log()

    assert worker.run_once().received.pages == 0
    assert (prospects(), local_dataverse.request_log) == ([], [])

    sync.resume("Lead", "from_dynamics")
    assert worker.run_once().received.applied == 1
    assert prospects() == [(ada, "Ada", "new")]


def test_a_failed_read_keeps_the_stored_link_and_the_next_cycle_reads_the_changes(crm, make_worker, local_dataverse):
    from flask_dynamics_sync.testing import ALWAYS
    from flask_dynamics_sync.testing import Fault

    ada = lead(local_dataverse, "Ada")
    worker = make_worker(crm)
    worker.run_once()
    link = rows_of(ChangeTrackingState)[0].link
    local_dataverse.update("leads", ada, {"subject": "Ada Lovelace"})
    local_dataverse.faults.add(Fault("service_unavailable", entity_set="leads", method="GET", count=ALWAYS))

    assert worker.run_once().received.read_failures == 1
    assert rows_of(ChangeTrackingState)[0].link == link

    local_dataverse.faults.clear()
    assert worker.run_once().received.applied == 1
    assert prospects() == [(ada, "Ada Lovelace", "new")]
