"""The sync worker against the local Dataverse: mapping forms, send paths, idempotency, faults, throttling, tokens.

Every test runs on SQLite, PostgreSQL and MariaDB (the queue and the host
tables live there) and talks HTTPS to a real local Dataverse server.
"""

from __future__ import annotations

import typing as t
from decimal import Decimal

import pytest
import sqlalchemy as sa

from flask_dynamics_sync import DataverseMapping
from flask_dynamics_sync.models import QueueItem
from flask_dynamics_sync.models import SyncError
from flask_dynamics_sync.testing import ALWAYS
from flask_dynamics_sync.testing import Fault
from flask_dynamics_sync.testing import LocalDataverse
from flask_dynamics_sync.testing import Table
from tests.workers.crm_host import HOST_KEY
from tests.workers.crm_host import Company
from tests.workers.crm_host import Customer
from tests.workers.crm_host import Deal
from tests.workers.crm_host import Prospect
from tests.workers.crm_host import db

API = "/api/data/v9.2/"


def add(*records: t.Any) -> None:
    db.session.add_all(records)
    db.session.commit()


def customers(count: int, company: Company | None = None) -> list[Customer]:
    made = [Customer(name=f"Customer {n}", phone=f"+41 44 000 {n:04d}", company=company) for n in range(1, count + 1)]
    add(*made)
    return made


def api_requests(dv: LocalDataverse) -> list[tuple[str, str, int | None]]:
    """``(method, path under the API, status)`` of every Web API request the server received."""
    return [(r.method, r.path[len(API) :], r.status) for r in dv.request_log if r.path.startswith(API)]


def queue_rows() -> list[t.Any]:
    with db.engine.connect() as conn:
        return conn.execute(sa.select(QueueItem.__table__).order_by(QueueItem.id)).all()


def error_rows() -> list[t.Any]:
    with db.engine.connect() as conn:
        return conn.execute(sa.select(SyncError.__table__).order_by(SyncError.id)).all()


def by_host_id(dv: LocalDataverse, entity_set: str) -> dict[int, dict[str, t.Any]]:
    rows = dv.rows(entity_set)
    assert len({row["dsync_hostid"] for row in rows}) == len(rows), "one row per host record"
    return {row["dsync_hostid"]: row for row in rows}


# -- mapping forms ----------------------------------------------------------------------------


def test_alternate_key_and_fields_upsert_the_contact_bound_to_its_account(crm, local_dataverse, make_worker):
    acme = Company(name="Acme", website="https://acme.example")
    add(Customer(name="Ada Lovelace", phone="+44 20 7946 0000", company=acme))

    report = make_worker(crm).run_once()

    assert (report.claimed, report.synced, report.failed) == (2, 2, 0)
    [account] = local_dataverse.rows("accounts")
    [contact] = local_dataverse.rows("contacts")
    assert (account["dsync_hostid"], account["name"], account["websiteurl"]) == (1, "Acme", "https://acme.example")
    assert (contact["dsync_hostid"], contact["fullname"], contact["telephone1"]) == (1, "Ada Lovelace", "+44 20 7946 0000")
    assert contact["_parentcustomerid_account_value"] == account["accountid"]
    assert queue_rows() == []


def test_id_column_gets_the_dataverse_id_stored_in_the_host_before_the_send(crm, local_dataverse, make_worker):
    add(Prospect(name="Lead from the fair"))

    make_worker(crm).run_once()

    [lead] = local_dataverse.rows("leads")
    db.session.expire_all()
    assert db.session.get(Prospect, 1).dataverse_id == lead["leadid"]
    assert (lead["subject"], lead["dsync_status"]) == ("Lead from the fair", "new")


def test_payload_function_sends_what_it_returns_with_the_lookup(crm, local_dataverse, make_worker):
    acme = Company(name="Acme")
    add(Deal(title="  Renewal 2027 ", amount=Decimal("12500.50"), company=acme))

    make_worker(crm).run_once()

    [account] = local_dataverse.rows("accounts")
    [deal] = local_dataverse.rows("opportunities")
    assert (deal["name"], deal["estimatedvalue"], deal["description"]) == ("Renewal 2027", 12500.5, "Host deal #1")
    assert deal["_parentaccountid_value"] == account["accountid"]


def test_a_changed_record_sent_again_stays_one_row_with_the_new_values(crm, local_dataverse, make_worker):
    worker = make_worker(crm)
    [ada] = customers(1)
    prospect = Prospect(name="First name")
    add(prospect)
    worker.run_once()
    first_lead = local_dataverse.rows("leads")[0]["leadid"]

    ada.name, prospect.name = "Ada King", "Second name"
    db.session.commit()
    worker.run_once()

    assert [row["fullname"] for row in local_dataverse.rows("contacts")] == ["Ada King"]
    assert [(row["leadid"], row["subject"]) for row in local_dataverse.rows("leads")] == [(first_lead, "Second name")]


def test_a_send_whose_answer_was_lost_is_sent_again_as_the_same_row(crm, local_dataverse, make_worker):
    customers(3)
    prospect = Prospect(name="Lead")
    add(prospect)
    local_dataverse.faults.add(Fault("drop_after_commit", entity_set="contacts"))
    local_dataverse.faults.add(Fault("drop_after_commit", entity_set="leads"))

    report = make_worker(crm).run_once()

    assert (report.synced, report.failed) == (4, 0)
    assert sorted(by_host_id(local_dataverse, "contacts")) == [1, 2, 3]
    assert len(local_dataverse.rows("leads")) == 1
    sends = [request for request in api_requests(local_dataverse) if request[1].startswith("contacts")]
    assert [status for _, _, status in sends] == [None, 204]  # dropped after the commit, then sent again


# -- send paths -------------------------------------------------------------------------------


def test_bulk_path_sends_one_upsert_multiple_per_batch(make_crm, db_url, local_dataverse, make_worker):
    app = make_crm(db_url, config={"DYNAMICS_SYNC_DATAVERSE_BATCH_SIZE": 10})
    with app.app_context():
        customers(25)
        make_worker(app).run_once()

    assert api_requests(local_dataverse) == [("POST", "contacts/Microsoft.Dynamics.CRM.UpsertMultiple", 204)] * 3
    assert sorted(by_host_id(local_dataverse, "contacts")) == list(range(1, 26))


def test_a_table_without_bulk_messages_gets_batch_requests_from_then_on(make_crm, db_url, make_worker):
    tables = [Table("contacts", "contact", "contactid", alternate_keys={"hostid": ("dsync_hostid",)}, bulk_messages=False)]
    with LocalDataverse(tables) as dv:
        app = make_crm(db_url, dv=dv, config={"DYNAMICS_SYNC_DATAVERSE_BATCH_SIZE": 5})
        with app.app_context():
            worker = make_worker(app, in_flight=1)
            customers(10)
            worker.run_once()
            db.session.get(Customer, 1).name = "Renamed"
            db.session.commit()
            worker.run_once()
        requests = api_requests(dv)
        rows = by_host_id(dv, "contacts")

    assert [(method, path) for method, path, _ in requests] == [
        ("POST", "contacts/Microsoft.Dynamics.CRM.UpsertMultiple"),
        ("POST", "$batch"),
        ("POST", "$batch"),  # the second chunk of the first cycle: bulk is not tried again
        ("POST", "$batch"),
    ]
    assert len(rows) == 10 and rows[1]["fullname"] == "Renamed"


def test_batch_mode_sends_batches_of_the_configured_size(make_crm, db_url, local_dataverse, make_worker):
    mapping = DataverseMapping("contacts", alternate_key=HOST_KEY, fields={"fullname": "name"}, send="batch")
    app = make_crm(db_url, config={"DYNAMICS_SYNC_DATAVERSE_BATCH_SIZE": 4}, Contact=mapping)
    with app.app_context():
        customers(10)
        report = make_worker(app).run_once()

    assert report.synced == 10
    assert api_requests(local_dataverse) == [("POST", "$batch", 200)] * 3
    assert sorted(by_host_id(local_dataverse, "contacts")) == list(range(1, 11))


def test_single_mode_sends_one_patch_by_alternate_key_per_record(make_crm, db_url, local_dataverse, make_worker):
    mapping = DataverseMapping("contacts", alternate_key=HOST_KEY, fields={"fullname": "name"}, send="single")
    app = make_crm(db_url, Contact=mapping)
    with app.app_context():
        customers(3)
        make_worker(app, in_flight=1).run_once()

    assert api_requests(local_dataverse) == [("PATCH", f"contacts(dsync_hostid={n})", 204) for n in (1, 2, 3)]


# -- failures ---------------------------------------------------------------------------------

PERMANENT = [
    ("validation", "0x80044331", 400),
    ("privilege", "0x80040220", 403),
    ("not_found", "0x80040217", 404),
    ("duplicate", "0x80040333", 500),
]


@pytest.mark.parametrize(("kind", "code", "status"), PERMANENT, ids=[kind for kind, _, _ in PERMANENT])
def test_a_permanent_failure_parks_the_record_with_dataverses_code_and_message(
    crm, local_dataverse, make_worker, kind, code, status
):
    customers(3)
    message = f"Dataverse says no ({kind}) to =cmd|' /C calc'!A0"
    local_dataverse.faults.add(Fault(kind, entity_set="contacts", key="2", count=ALWAYS, message=message))

    report = make_worker(crm).run_once()

    assert (report.synced, report.failed, report.parked) == (2, 1, 1)
    assert sorted(by_host_id(local_dataverse, "contacts")) == [1, 3]
    [row] = queue_rows()
    assert (row.record_id, row.state, row.attempts) == ("2", "parked", 1)
    [error] = error_rows()
    assert (error.record_id, error.error_code, error.error_message, error.state) == ("2", code, message, "open")


def test_a_failure_whose_claim_another_worker_took_over_is_left_to_that_worker(
    crm, local_dataverse, make_worker, clock, monkeypatch
):
    customers(2)
    local_dataverse.faults.add(Fault("validation", entity_set="contacts", count=ALWAYS))
    worker = make_worker(crm, lease_seconds=60)
    send = worker._send

    def slow_send(items, results):
        send(items, results)
        clock.advance(seconds=61)  # the lease ran out meanwhile…
        assert len(crm.extensions["dynamics_sync"].extension.claim(1)) == 1  # …and another worker took record 1

    monkeypatch.setattr(worker, "_send", slow_send)
    report = worker.run_once()

    assert (report.failed, report.parked) == (2, 1)
    assert [(row.record_id, row.claim_token is not None) for row in queue_rows()] == [("1", True), ("2", False)]
    assert [error.record_id for error in error_rows()] == ["2"]


def test_a_server_error_is_retried_later_not_parked(crm, local_dataverse, make_worker):
    customers(1)
    local_dataverse.faults.add(Fault("server_error", entity_set="contacts", count=ALWAYS))

    report = make_worker(crm, batch_size=1).run_once()

    assert (report.failed, report.parked) == (1, 0)
    [row] = queue_rows()
    assert (row.state, row.attempts) == ("pending", 1)
    [error] = error_rows()
    assert (error.error_code, error.error_message) == ("0x80040216", "An unexpected error occurred.")


@pytest.mark.parametrize("kind", ["bad_gateway", "service_unavailable", "gateway_timeout"])
def test_gateway_errors_are_retried_with_backoff_until_they_pass(crm, local_dataverse, make_worker, kind):
    customers(2)
    local_dataverse.faults.add(Fault(kind, entity_set="contacts", count=2))

    worker = make_worker(crm)
    report = worker.run_once()

    assert (report.synced, report.failed) == (2, 0)
    assert [status for _, _, status in api_requests(local_dataverse)][-1] == 204
    assert worker.client.counters.retries == 2


def test_gateway_errors_outlasting_the_retries_leave_the_record_queued(make_crm, db_url, local_dataverse, make_worker):
    app = make_crm(db_url, config={"DYNAMICS_SYNC_DATAVERSE_RETRIES": 2})
    with app.app_context():
        customers(1)
        local_dataverse.faults.add(Fault("service_unavailable", entity_set="contacts", count=ALWAYS))
        report = make_worker(app).run_once()
        [row] = queue_rows()
        [error] = error_rows()

    assert (report.failed, report.parked) == (1, 0)
    assert len(api_requests(local_dataverse)) == 3
    assert (row.state, error.error_code, error.error_message) == ("pending", "HTTP 503", "Service Unavailable")


def test_a_timed_out_request_is_sent_again_and_gives_one_row(make_crm, db_url, local_dataverse, make_worker):
    app = make_crm(db_url, config={"DYNAMICS_SYNC_DATAVERSE_TIMEOUT": 0.3})
    with app.app_context():
        customers(2)
        local_dataverse.faults.add(Fault("timeout", entity_set="contacts", hold_seconds=0.6, process=True))
        report = make_worker(app).run_once()

    assert (report.synced, report.failed) == (2, 0)
    assert sorted(by_host_id(local_dataverse, "contacts")) == [1, 2]


def test_a_batch_answer_cut_after_the_commit_is_sent_again_without_duplicates(make_crm, db_url, local_dataverse, make_worker):
    mapping = DataverseMapping("contacts", alternate_key=HOST_KEY, fields={"fullname": "name"}, send="batch")
    app = make_crm(db_url, Contact=mapping)
    with app.app_context():
        customers(6)
        local_dataverse.faults.add(Fault("drop_after_commit", entity_set="$batch"))
        report = make_worker(app).run_once()

    assert (report.synced, report.failed) == (6, 0)
    assert sorted(by_host_id(local_dataverse, "contacts")) == [1, 2, 3, 4, 5, 6]


# -- service protection -----------------------------------------------------------------------


def test_after_a_429_no_request_is_sent_before_retry_after_has_passed(make_crm, db_url, local_dataverse, make_worker):
    mapping = DataverseMapping("contacts", alternate_key=HOST_KEY, fields={"fullname": "name"}, send="single")
    app = make_crm(db_url, Contact=mapping)
    with app.app_context():
        customers(8)
        local_dataverse.faults.add(Fault("throttled", entity_set="contacts", nth=2, retry_after=1))
        worker = make_worker(app, in_flight=4)
        report = worker.run_once()

    log = [r for r in local_dataverse.request_log if r.path.startswith(API)]
    [throttled] = [r for r in log if r.status == 429]
    later = [r for r in log if r.time > throttled.time]
    assert report.synced == 8 and worker.client.counters.throttled == 1
    assert later, "the requests went on after the pause"
    # Requests already in flight when the 429 was answered arrive within moments of it; every
    # request sent after the client heard the 429 arrives a full Retry-After later.
    in_flight = [r for r in later if r.time < throttled.time + 0.2]
    assert len(in_flight) <= 3
    assert all(r.time >= throttled.time + 1.0 for r in later if r not in in_flight)


def test_the_worker_paces_itself_below_the_request_limit(make_crm, sqlite_url, make_worker):
    limits = {"DYNAMICS_SYNC_DATAVERSE_REQUEST_LIMIT": 4, "DYNAMICS_SYNC_DATAVERSE_WINDOW_SECONDS": 0.5}
    mapping = DataverseMapping("contacts", alternate_key=HOST_KEY, fields={"fullname": "name"}, send="single")
    with LocalDataverse(request_limit=4, window_seconds=0.5) as dv:
        app = make_crm(sqlite_url, dv=dv, config=limits, Contact=mapping)
        with app.app_context():
            customers(10)
            report = make_worker(app, in_flight=4).run_once()
        log = [r for r in dv.request_log if r.path.startswith(API)]

    assert report.synced == 10
    assert [r.status for r in log] == [204] * 10
    assert log[-1].time - log[0].time >= 1.0  # 10 requests at 4 per half second need two full windows


def test_the_worker_stays_below_the_concurrency_limit(make_crm, sqlite_url, make_worker):
    mapping = DataverseMapping("contacts", alternate_key=HOST_KEY, fields={"fullname": "name"}, send="single")
    with LocalDataverse(max_concurrent=2) as dv:
        app = make_crm(sqlite_url, dv=dv, config={"DYNAMICS_SYNC_DATAVERSE_MAX_CONCURRENT": 2}, Contact=mapping)
        dv.faults.add(Fault("timeout", entity_set="contacts", hold_seconds=0.1, process=True, count=ALWAYS))
        with app.app_context():
            customers(8)
            report = make_worker(app, in_flight=6, batch_size=1).run_once()
        statuses = [r.status for r in dv.request_log if r.path.startswith(API)]

    assert report.synced == 8
    assert statuses == [204] * 8


# -- tokens -----------------------------------------------------------------------------------


def test_a_401_refreshes_the_token_once_and_the_send_goes_through(crm, local_dataverse, make_worker):
    worker = make_worker(crm)
    [ada] = customers(1)
    worker.run_once()
    local_dataverse.revoke_tokens()
    local_dataverse.clear_request_log()

    ada.name = "Ada King"
    db.session.commit()
    report = worker.run_once()

    assert report.synced == 1
    assert [(r.method, r.path.rsplit("/", 1)[-1], r.status) for r in local_dataverse.request_log] == [
        ("POST", "Microsoft.Dynamics.CRM.UpsertMultiple", 401),
        ("POST", "token", 200),
        ("POST", "Microsoft.Dynamics.CRM.UpsertMultiple", 204),
    ]
    assert worker.client.counters.token_refreshes == 1
    assert local_dataverse.rows("contacts")[0]["fullname"] == "Ada King"


def test_the_hosts_own_token_callable_is_used_and_asked_again_after_a_401(make_crm, db_url, local_dataverse, make_worker):
    import msal

    msal_app = msal.ConfidentialClientApplication(
        "local-client",
        client_credential="local-secret",
        authority=local_dataverse.authority,
        instance_discovery=False,
        http_client=local_dataverse.requests_session(),
    )
    calls: list[bool] = []

    def get_token(force_refresh: bool = False) -> str:
        calls.append(force_refresh)
        if force_refresh:
            for entry in list(msal_app.token_cache.search(msal_app.token_cache.CredentialType.ACCESS_TOKEN)):
                msal_app.token_cache.remove_at(entry)
        return msal_app.acquire_token_for_client(scopes=[local_dataverse.scope])["access_token"]

    app = make_crm(db_url, config={"DYNAMICS_SYNC_DATAVERSE_TOKEN": get_token, "DYNAMICS_SYNC_DATAVERSE_CLIENT_SECRET": None})
    with app.app_context():
        customers(1)
        worker = make_worker(app)
        worker.run_once()
        local_dataverse.revoke_tokens()
        customers(1)
        report = worker.run_once()

    assert report.synced == 1
    assert calls == [False, True]


# -- several workers --------------------------------------------------------------------------


def test_two_workers_share_the_queue_and_send_each_record_once(make_crm, db_url, local_dataverse, make_worker):
    import threading

    from flask_dynamics_sync.models import SyncEvent

    app = make_crm(db_url, config={"DYNAMICS_SYNC_WORKER_CLAIM_SIZE": 5, "DYNAMICS_SYNC_DATAVERSE_BATCH_SIZE": 5})
    with app.app_context():
        customers(40)
    workers = [make_worker(app, in_flight=1), make_worker(app, in_flight=1)]
    handled = [0, 0]
    start = threading.Barrier(2)

    def drain(index: int) -> None:
        start.wait()
        while report := workers[index].run_once():
            if not report.claimed:
                return
            handled[index] += report.synced

    threads = [threading.Thread(target=drain, args=(index,)) for index in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(handled) == 40 and min(handled) > 0
    assert sorted(by_host_id(local_dataverse, "contacts")) == list(range(1, 41))
    with app.app_context(), db.engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(SyncEvent.__table__)) == 40
    assert len(api_requests(local_dataverse)) == 8  # 40 records in bulk messages of 5, none sent twice
