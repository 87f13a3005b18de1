"""The workers' figures in the status JSON and Prometheus metrics, and secrets kept out of everything."""

from __future__ import annotations

import logging

from flask_admin import Admin

from flask_dynamics_sync.testing import Fault
from tests.workers.crm_host import Customer
from tests.workers.crm_host import db

STATUS = "/admin/dynamics/status/"
SECRET = "local-secret"


def test_the_status_json_and_metrics_sum_every_workers_figures(make_crm, db_url, local_dataverse, make_worker, clock):
    app = make_crm(db_url, config={"DYNAMICS_SYNC_DATAVERSE_BATCH_SIZE": 2})
    app.extensions["dynamics_sync"].extension.add_views(Admin(app), app=app)
    with app.app_context():
        db.session.add_all([Customer(name=f"C{n}") for n in range(5)])
        db.session.commit()
        local_dataverse.faults.add(Fault("throttled", entity_set="contacts", retry_after=0))
        local_dataverse.faults.add(Fault("service_unavailable", entity_set="contacts"))
        first, second = make_worker(app, in_flight=1), make_worker(app, in_flight=1, claim_size=2)
        second.run_once()
        first.run_once()
    client = app.test_client()

    figures = client.get(STATUS + "json").get_json()["worker"]
    metrics = client.get(STATUS + "metrics").get_data(as_text=True).splitlines()

    assert {key: figures[key] for key in ("active_workers", "requests", "throttled", "retries", "records_synced", "records_failed")} == {
        "active_workers": 2,
        "requests": 5,  # 3 bulk messages, one of them answered 429 and one 503 first
        "throttled": 1,
        "retries": 1,
        "records_synced": 5,
        "records_failed": 0,
    }
    assert figures["records_per_second"] > 0
    assert "dynamics_sync_worker_requests_total 5" in metrics
    assert "dynamics_sync_worker_throttled_total 1" in metrics
    assert "dynamics_sync_worker_records_synced_total 5" in metrics
    assert "dynamics_sync_worker_active 2" in metrics


def test_a_stopped_worker_is_no_longer_active_but_its_counts_stay(crm, make_worker, local_dataverse):
    from flask_dynamics_sync.dataverse.stats import read_figures

    db.session.add(Customer(name="Ada"))
    db.session.commit()
    worker = make_worker(crm)
    worker.run_once()
    worker.close()

    with db.engine.connect() as conn:
        figures = read_figures(conn, crm.extensions["dynamics_sync"].extension.now())
    assert (figures.active_workers, figures.records_synced, figures.records_per_second) == (0, 1, 0.0)


def test_secrets_and_tokens_never_reach_the_logs_or_the_endpoints(make_crm, sqlite_url, local_dataverse, make_worker, caplog):
    app = make_crm(sqlite_url)
    app.extensions["dynamics_sync"].extension.add_views(Admin(app), app=app)
    caplog.set_level(logging.DEBUG)
    with app.app_context():
        db.session.add(Customer(name="Ada"))
        db.session.commit()
        worker = make_worker(app)
        worker.run_once()
        local_dataverse.revoke_tokens()  # a refresh: the token request is logged too
        local_dataverse.faults.add(Fault("validation", entity_set="contacts", count=2))
        db.session.add(Customer(name="Grace"))
        db.session.commit()
        worker.run_once()
        token = worker.client._token
    client = app.test_client()
    pages = [client.get(STATUS + path).get_data(as_text=True) for path in ("json", "metrics", "")]
    pages.append(client.get("/admin/dynamics/errors/").get_data(as_text=True))

    assert token and worker.client.counters.token_refreshes == 1
    assert "HTTP Request" in caplog.text  # httpx did log its requests
    for text in [caplog.text, *pages]:
        assert SECRET not in text
        assert token not in text


def test_workers_not_heard_of_for_a_day_leave_the_figures_and_the_table(crm, make_worker, local_dataverse, clock):
    import datetime as dt

    import sqlalchemy as sa

    from flask_dynamics_sync.dataverse.stats import read_figures
    from flask_dynamics_sync.models import WorkerState

    db.session.add(Customer(name="Ada"))
    db.session.commit()
    old = make_worker(crm)
    old.run_once()
    old.close()
    clock.advance(hours=25)
    db.session.add(Customer(name="Grace"))
    db.session.commit()
    make_worker(crm).run_once()

    with db.engine.connect() as conn:
        figures = read_figures(conn, clock())
        rows = conn.scalar(sa.select(sa.func.count()).select_from(WorkerState.__table__))
    assert (figures.records_synced, figures.active_workers, rows) == (1, 1, 1)
    assert clock() - figures.last_heartbeat_at < dt.timedelta(seconds=1)
