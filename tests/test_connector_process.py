"""``flask dynamics-sync worker`` as a process: one cycle, SIGTERM, and kill -9 in the middle of batches."""

from __future__ import annotations

import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import time
import typing as t

import sqlalchemy as sa

from flask_dynamics_sync.dataverse.settings import local_dataverse_config
from flask_dynamics_sync.models import QueueItem
from flask_dynamics_sync.models import SyncError
from flask_dynamics_sync.testing import ALWAYS
from flask_dynamics_sync.testing import Fault
from tests.workers.crm_host import Company
from tests.workers.crm_host import Customer
from tests.workers.crm_host import Deal
from tests.workers.crm_host import Prospect
from tests.workers.crm_host import db

ROOT = pathlib.Path(__file__).resolve().parent.parent
API = "/api/data/v9.2/"


def crm_environment(db_url: str, dv: t.Any, config: dict[str, t.Any]) -> dict[str, str]:
    return {**os.environ, "CRM_DATABASE_URL": db_url, "CRM_CONFIG": json.dumps({**local_dataverse_config(dv), **config})}


def start_worker(db_url: str, dv: t.Any, config: dict[str, t.Any], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "tests.workers.crm_host:create_app", "dynamics-sync", "worker", *args],
        cwd=ROOT, env=crm_environment(db_url, dv, config), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def api_log(dv: t.Any) -> list[t.Any]:
    return [r for r in dv.request_log if r.path.startswith(API)]


def wait_for(condition: t.Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def queue_count(**where: str) -> int:
    queue = QueueItem.__table__
    with db.engine.connect() as conn:
        return conn.scalar(sa.select(sa.func.count()).select_from(queue).where(*(queue.c[k] == v for k, v in where.items())))


def test_worker_once_runs_one_cycle_and_says_what_it_did(crm, local_dataverse):
    db.session.add_all([Customer(name="Ada"), Customer(name="Grace")])
    db.session.commit()

    result = crm.test_cli_runner().invoke(args=["dynamics-sync", "worker", "--once"])

    assert result.exit_code == 0, result.output
    assert result.output == "Worker: claimed 2, synced 2, failed 0 (parked 0).\n"
    assert sorted(row["fullname"] for row in local_dataverse.rows("contacts")) == ["Ada", "Grace"]


def test_sigterm_finishes_the_batch_in_flight_then_exits(crm, db_url, local_dataverse):
    db.session.add_all([Customer(name=f"C{n}") for n in range(6)])
    db.session.commit()
    local_dataverse.faults.add(Fault("timeout", entity_set="contacts", hold_seconds=0.4, process=True, count=ALWAYS))
    config = {"DYNAMICS_SYNC_WORKER_CLAIM_SIZE": 3, "DYNAMICS_SYNC_DATAVERSE_BATCH_SIZE": 1, "DYNAMICS_SYNC_DATAVERSE_IN_FLIGHT": 1}
    process = start_worker(db_url, local_dataverse, config)
    try:
        wait_for(lambda: api_log(local_dataverse) or process.poll() is not None)  # the first of three sends is held
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == 0, err
    assert out.splitlines()[-1] == "Worker stopped.", err
    assert len(local_dataverse.rows("contacts")) == 3
    assert [r.status for r in api_log(local_dataverse)] == [204, 204, 204]
    assert (queue_count(), queue_count(state="pending")) == (3, 3)
    with db.engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(QueueItem.__table__).where(QueueItem.claim_token.is_not(None))) == 0


def test_kill_9_in_the_middle_of_batches_loses_and_duplicates_nothing(crm, db_url, local_dataverse):
    rng = random.Random(15)
    companies = [Company(name=f"Company {n}") for n in range(3)]
    db.session.add_all(companies)
    db.session.add_all(Customer(name=f"Customer {n}", phone=str(n), company=rng.choice(companies)) for n in range(12))
    db.session.add_all(Prospect(name=f"Prospect {n}") for n in range(6))
    db.session.add_all(Deal(title=f"Deal {n}", amount=n * 1000, company=rng.choice(companies)) for n in range(4))
    db.session.commit()
    config = {
        "DYNAMICS_SYNC_WORKER_CLAIM_SIZE": 4,
        "DYNAMICS_SYNC_DATAVERSE_BATCH_SIZE": 2,
        "DYNAMICS_SYNC_DATAVERSE_IN_FLIGHT": 2,
        "DYNAMICS_SYNC_CLAIM_TIMEOUT": 1,
        "DYNAMICS_SYNC_RETRY_BACKOFF": 0,
        "DYNAMICS_SYNC_WORKER_POLL_SECONDS": 0.02,
    }
    models = [Company, Customer, Prospect, Deal]

    forker = subprocess.Popen(
        [sys.executable, "-m", "tests.workers.crm_forker"],
        cwd=ROOT, env=crm_environment(db_url, local_dataverse, config),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )

    def command(line: str) -> str:
        assert forker.stdin and forker.stdout
        forker.stdin.write(line + "\n")
        forker.stdin.flush()
        return forker.stdout.readline().strip()

    endings = []
    try:
        for _ in range(20):
            sent = len(api_log(local_dataverse))
            pid = int(command("fork"))
            wait_for(lambda sent=sent: len(api_log(local_dataverse)) > sent)  # it is sending a batch
            time.sleep(rng.uniform(0, 0.03))
            os.kill(pid, signal.SIGKILL)
            endings.append(command(f"reap {pid}"))
            for model in rng.sample(models, 3):  # users go on editing while workers die
                record = rng.choice(db.session.scalars(sa.select(model)).all())
                setattr(record, "title" if model is Deal else "name", f"{model.__name__} edit {rng.randrange(10**6)}")
            db.session.add(Customer(name=f"New customer {rng.randrange(10**6)}", company=rng.choice(companies)))
            db.session.commit()
        pid = int(command("fork"))
        wait_for(lambda: queue_count() == 0, timeout=30)
        os.kill(pid, signal.SIGKILL)
        command(f"reap {pid}")
    finally:
        forker.communicate(timeout=10)

    assert endings == ["signal 9"] * 20
    db.session.expire_all()
    with db.engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(SyncError.__table__)) == 0

    def rows(entity_set: str, key: str) -> dict[t.Any, dict[str, t.Any]]:
        found = local_dataverse.rows(entity_set)
        assert len({row[key] for row in found}) == len(found), f"a duplicate in {entity_set}"
        return {row[key]: row for row in found}

    accounts = rows("accounts", "dsync_hostid")
    assert {k: r["name"] for k, r in accounts.items()} == {c.id: c.name for c in db.session.scalars(sa.select(Company))}
    contacts = rows("contacts", "dsync_hostid")
    assert {k: (r["fullname"], r["_parentcustomerid_account_value"]) for k, r in contacts.items()} == {
        c.id: (c.name, accounts[c.company_id]["accountid"]) for c in db.session.scalars(sa.select(Customer))
    }
    leads = rows("leads", "leadid")
    assert {k: r["subject"] for k, r in leads.items()} == {p.dataverse_id: p.name for p in db.session.scalars(sa.select(Prospect))}
    deals = rows("opportunities", "dsync_hostid")
    assert {k: r["name"] for k, r in deals.items()} == {d.id: d.title for d in db.session.scalars(sa.select(Deal))}


def test_the_scheduler_runs_the_worker_when_asked(make_crm, sqlite_url, local_dataverse):
    from flask_dynamics_sync.scheduler import build_scheduler
    from flask_dynamics_sync.scheduler import run_worker_cycles

    app = make_crm(sqlite_url, config={"DYNAMICS_SYNC_WORKER_IN_SCHEDULER": True, "DYNAMICS_SYNC_WORKER_CLAIM_SIZE": 2})
    with app.app_context():
        db.session.add_all([Customer(name=f"C{n}") for n in range(5)])
        db.session.commit()
    job = build_scheduler(app).get_job("worker")

    handled = run_worker_cycles(app)  # what the job runs every DYNAMICS_SYNC_WORKER_POLL_SECONDS
    app.extensions["dynamics_sync"].worker.close()

    assert (job.func, job.args, job.max_instances) == (run_worker_cycles, (app,), 1)
    assert handled == 5
    assert len(local_dataverse.rows("contacts")) == 5
