"""Connector figures: records/s to the local Dataverse over HTTPS, the bulk path against the queue's own
throughput, requests per record, and a throttled run against service protection limits.

Every figure sends real requests to a local Dataverse (``flask_dynamics_sync.testing``) on a local
port. For the throughput figures it runs in a process of its own (``python -m
flask_dynamics_sync.testing``), as Dataverse is a service elsewhere: in the worker's process its
request handling would compete with the worker for the interpreter. The throttled run reads the
server's request log, so its server runs in this process. The baseline (``claim`` +
``mark_synced`` without any sending) is measured in the same run, on the same database.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import typing as t
from collections.abc import Iterator

import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from flask_dynamics_sync import DataverseMapping
from flask_dynamics_sync import DynamicsSync
from flask_dynamics_sync.dataverse.settings import local_dataverse_config
from flask_dynamics_sync.dataverse.worker import SyncWorker
from flask_dynamics_sync.models import QueueItem
from flask_dynamics_sync.testing import LocalDataverse

from .apps import reset_database
from .apps import sqlite_url
from .bench_recorder import bench_claim_and_mark_synced
from .harness import Figure

connector_db = SQLAlchemy()
API = "/api/data/v9.2/"


class BenchContact(connector_db.Model):  # type: ignore[name-defined]
    __tablename__ = "bench_connector_contact"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    email: Mapped[str] = mapped_column(sa.String(200))
    phone: Mapped[str] = mapped_column(sa.String(40))


def _mapping(send: str) -> DataverseMapping:
    return DataverseMapping(
        "contacts",
        alternate_key={"dsync_hostid": "id"},
        fields={"lastname": "name", "emailaddress1": "email", "telephone1": "phone"},
        send=send,
    )


class Bench:
    """A host with one tracked model, a local Dataverse and the connector pointed at it."""

    def __init__(self, url: str, dv: LocalDataverse, *, send: str = "bulk", **config: t.Any) -> None:
        reset_database(url)
        self.dv = dv
        self.app = Flask("bench_connector")
        self.app.config.update(SQLALCHEMY_DATABASE_URI=url, **local_dataverse_config(dv), **config)
        connector_db.init_app(self.app)
        self.sync = DynamicsSync()
        self.tracking = self.sync.track(BenchContact, "Contact", dataverse=_mapping(send))
        self.sync.init_app(self.app, db=connector_db)
        with self.app.app_context():
            connector_db.drop_all()
            connector_db.create_all()

    def close(self) -> None:
        self.tracking.remove()
        with self.app.app_context():
            connector_db.session.remove()
            connector_db.engine.dispose()

    def add_contacts(self, count: int) -> None:
        """``count`` new host contacts (queued by tracking), inserted in bulk."""
        with self.app.app_context():
            start = connector_db.session.scalar(sa.select(sa.func.coalesce(sa.func.max(BenchContact.id), 0)))
            connector_db.session.add_all(
                BenchContact(id=i, name=f"Contact {i}", email=f"c{i}@example.com", phone=f"+39 02 {i:07d}")
                for i in range(start + 1, start + count + 1)
            )
            connector_db.session.commit()

    def queued(self) -> int:
        with self.app.app_context(), connector_db.engine.connect() as conn:
            return conn.scalar(sa.select(sa.func.count()).select_from(QueueItem.__table__))

    def drain(self, worker: SyncWorker) -> float:
        """Run cycles until the queue is empty; the seconds it took."""
        began = time.perf_counter()
        while worker.run_once().claimed:
            pass
        return time.perf_counter() - began


class ServerProcess(t.NamedTuple):
    """A local Dataverse in a child process: what ``local_dataverse_config`` reads."""

    url: str
    ca_file: str
    tenant: str = "local-tenant"
    client_id: str = "local-client"
    client_secret: str = "local-secret"

    @property
    def authority(self) -> str:
        return f"{self.url}/{self.tenant}"


@contextlib.contextmanager
def server_process() -> Iterator[ServerProcess]:
    """``python -m flask_dynamics_sync.testing`` on a free port, stopped afterwards."""
    with tempfile.TemporaryDirectory(prefix="bench-dataverse-") as folder:
        ca_file = os.path.join(folder, "ca.pem")
        process = subprocess.Popen(
            [sys.executable, "-m", "flask_dynamics_sync.testing", "--ca-file", ca_file],
            stdout=subprocess.PIPE, text=True,
        )
        try:
            assert process.stdout is not None
            match = re.search(r" at (https://\S+)", process.stdout.readline())
            assert match, "the local Dataverse did not say where it listens"
            yield ServerProcess(match.group(1), ca_file)
        finally:
            process.terminate()
            process.wait(timeout=30)


def _api_requests(dv: LocalDataverse, since: float = 0.0) -> list[t.Any]:
    return [r for r in dv.request_log if r.path.startswith(API) and r.time >= since]


def _drain_to_server(url: str, records: int, batch_size: int, in_flight: int) -> tuple[float, int]:
    """Send ``records`` new host contacts to a local Dataverse process; seconds taken and requests sent."""
    with server_process() as dv:
        bench = Bench(url, dv)  # type: ignore[arg-type]
        try:
            bench.add_contacts(records)
            worker = SyncWorker(bench.app, batch_size=batch_size, in_flight=in_flight,
                                claim_size=min(10_000, max(batch_size * in_flight, 100)), record_stats=False)
            try:
                seconds = bench.drain(worker)
            finally:
                worker.close()
            assert bench.queued() == 0 and worker.client.counters.throttled == 0
            return seconds, worker.client.counters.requests
        finally:
            bench.close()


def bench_http_rate(url: str, records: int, batch_size: int, in_flight: int) -> Figure:
    """End to end: queued host records to rows in the local Dataverse, on the bulk path."""
    seconds, _ = _drain_to_server(url, records, batch_size, in_flight)
    rate = records / seconds
    return Figure(
        name=f"connector records/s, batch {batch_size}, {in_flight} in flight",
        scale=f"{records:,} records over HTTPS",
        unit="records/s",
        median=rate,
        p95=rate,
        target=None,
        higher_is_better=True,
        note="UpsertMultiple; the local Dataverse (another process) closes every connection after one answer",
    )


def bench_bulk_path(url: str, records: int) -> list[Figure]:
    """The bulk path end to end against claim + mark_synced alone, and its requests per record."""
    baseline = bench_claim_and_mark_synced(url, records, repeat=1)
    seconds, requests = _drain_to_server(url, records, 1000, 4)
    rate = records / seconds
    return [
        Figure(
            name="connector bulk path end to end",
            scale=f"{records:,} records, batches of 1,000, 4 in flight",
            unit="records/s",
            median=rate,
            p95=rate,
            target=None,
            higher_is_better=True,
            baseline=baseline.median,
            baseline_label="claim + mark_synced alone (the recorder's figure: batches of 500), same run and database",
            max_ratio=4.0,
            note="target: at least a quarter of the baseline",
        ),
        Figure(
            name="connector requests per record (bulk path)",
            scale=f"{records:,} records, batches of 1,000",
            unit="req/record",
            median=requests / records,
            p95=requests / records,
            target=0.01,
        ),
    ]


def bench_throttled(url: str, seconds: float) -> list[Figure]:
    """Single requests against a local Dataverse limited to 100 requests per 10 s, for ``seconds``."""
    limit, window = 100, 10.0
    limits = {"DYNAMICS_SYNC_DATAVERSE_REQUEST_LIMIT": limit, "DYNAMICS_SYNC_DATAVERSE_WINDOW_SECONDS": window}
    with LocalDataverse(request_limit=limit, window_seconds=window) as dv:
        bench = Bench(url, dv, send="single", **limits)
        try:
            bench.add_contacts(int(limit * (seconds / window + 2)))
            dv.clear_request_log()
            worker = SyncWorker(bench.app, batch_size=1, in_flight=4, claim_size=20, record_stats=False)
            stop = threading.Event()
            runner = threading.Thread(target=worker.run, args=(stop,))
            runner.start()
            deadline = time.monotonic() + seconds + 30
            while not _api_requests(dv) and time.monotonic() < deadline:
                time.sleep(0.01)
            first = _api_requests(dv)[0].time
            time.sleep(seconds)
            stop.set()
            runner.join()
            worker.close()
            during = [r for r in _api_requests(dv, first) if r.time < first + seconds]
        finally:
            bench.close()
    allowed = limit * seconds / window
    accepted = sum(1 for r in during if r.status != 429)
    throttled = sum(1 for r in during if r.status == 429)
    return [
        Figure(
            name="connector throttled run: share of the allowed rate",
            scale=f"{seconds:.0f} s at {limit} requests / {window:.0f} s",
            unit="%",
            median=100 * accepted / allowed,
            p95=100 * accepted / allowed,
            target=90,
            higher_is_better=True,
            note=f"{accepted} requests accepted of {allowed:.0f} allowed",
        ),
        Figure(
            name="connector throttled run: requests answered 429",
            scale=f"{seconds:.0f} s at {limit} requests / {window:.0f} s",
            unit="%",
            median=100 * throttled / max(1, len(during)),
            p95=100 * throttled / max(1, len(during)),
            target=1,
            note=f"{throttled} of {len(during)} requests",
        ),
    ]


def run_backend(scale: t.Any, backend: str, server: str | None) -> list[Figure]:
    """The connector's figures, on SQLite (the queue side is the recorder's, measured there)."""
    if backend != "sqlite":
        return []
    url = sqlite_url("connector")
    figures = []
    for batch_size, records in ((1, 300), (10, 2_000), (100, 10_000), (1000, 20_000)):
        for in_flight in (1, 4):
            figures.append(bench_http_rate(url, scale.n(records) if batch_size < 100 else max(batch_size * 4, scale.n(records)), batch_size, in_flight))
    figures += bench_bulk_path(url, max(4_000, scale.n(40_000)))
    figures += bench_throttled(url, 20.0 if scale.factor < 1 else 30.0)
    return figures
