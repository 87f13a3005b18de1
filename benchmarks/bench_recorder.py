"""Recording API figures: outbox overhead on host writes, batch enqueue, claim + mark_synced."""

from __future__ import annotations

import datetime as dt
import time

import sqlalchemy as sa
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from flask_dynamics_sync import Change
from flask_dynamics_sync.models import QueueItem
from flask_dynamics_sync.models import SyncEvent

from .apps import make_app
from .apps import reset_database
from .apps import sqlite_url
from .harness import Figure
from .harness import median_p95

host_db = SQLAlchemy()


class HostContact(host_db.Model):
    """A host's CRM contact as a real console has it: a dozen columns, a unique e-mail, an index."""

    __tablename__ = "bench_host_contact"

    id: Mapped[int] = mapped_column(primary_key=True)
    first_name: Mapped[str] = mapped_column(sa.String(80))
    last_name: Mapped[str] = mapped_column(sa.String(80), index=True)
    email: Mapped[str] = mapped_column(sa.String(200), unique=True)
    phone: Mapped[str | None] = mapped_column(sa.String(40))
    company: Mapped[str | None] = mapped_column(sa.String(120))
    job_title: Mapped[str | None] = mapped_column(sa.String(120))
    city: Mapped[str | None] = mapped_column(sa.String(80))
    country: Mapped[str | None] = mapped_column(sa.String(2))
    notes: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(sa.DateTime)


def _contact(i: int) -> HostContact:
    now = dt.datetime(2026, 3, 10, 14, 0) + dt.timedelta(seconds=i)
    return HostContact(
        id=i,
        first_name=f"First{i}",
        last_name=f"Last{i % 997}",
        email=f"contact{i}@example.com",
        phone=f"+39 02 {i:07d}",
        company=f"Company {i % 311}",
        job_title="Buyer",
        city="Milano",
        country="IT",
        notes="Met at the fair; wants a quote for 40 seats.",
        created_at=now,
        updated_at=now,
    )


def _single_row_commits(count: int, start_id: int) -> list[float]:
    timings = []
    for i in range(start_id, start_id + count):
        began = time.perf_counter()
        host_db.session.add(_contact(i))
        host_db.session.commit()
        timings.append(time.perf_counter() - began)
    return timings


def bench_outbox(url: str, commits: int) -> Figure:
    """Host commits of one row each, untracked then tracked, alternating in rounds."""
    reset_database(url)
    app, _, sync = _host_app(url)
    with app.app_context():
        host_db.drop_all()
        host_db.create_all()
        untracked: list[float] = []
        tracked: list[float] = []
        rounds = 5
        per_round = commits // rounds
        next_id = 1
        for _ in range(rounds):
            untracked += _single_row_commits(per_round, next_id)
            next_id += per_round
            tracking = sync.track(HostContact, "Contact", label="last_name")
            tracked += _single_row_commits(per_round, next_id)
            next_id += per_round
            tracking.remove()
        queued = host_db.session.scalar(sa.select(sa.func.count()).select_from(QueueItem))
        assert queued == commits, queued
    med, p95 = median_p95([t * 1000 for t in tracked])
    base, _ = median_p95([t * 1000 for t in untracked])
    return Figure(
        name="tracked host write through the outbox",
        scale=f"{commits:,} single-row commits",
        unit="ms",
        median=med,
        p95=p95,
        target=None,
        baseline=base,
        baseline_label="the same writes untracked (per commit)",
        max_ratio=1.3,
    )


def _host_app(url: str):
    from flask import Flask
    from flask_admin import Admin

    from flask_dynamics_sync import DynamicsSync

    app = Flask("bench_outbox_host")
    app.config.update(SECRET_KEY="bench", SQLALCHEMY_DATABASE_URI=url)
    host_db.init_app(app)
    sync = DynamicsSync()
    sync.init_app(app, admin=Admin(app), db=host_db)
    return app, host_db, sync


def bench_batch_enqueue(url: str, changes: int, repeat: int = 3) -> Figure:
    reset_database(url)
    app, db, sync = make_app(url, frozen=False)
    rates = []
    with app.app_context():
        batch = [Change("Lead", i, "insert", label=f"Lead {i}") for i in range(changes)]
        for _ in range(repeat):
            db.session.execute(sa.delete(QueueItem))
            db.session.commit()
            began = time.perf_counter()
            sync.enqueue_many(batch)
            db.session.commit()
            rates.append(changes / (time.perf_counter() - began))
    rates.sort()
    return Figure(
        name="batch enqueue",
        scale=f"{changes:,} changes",
        unit="rows/s",
        median=rates[len(rates) // 2],
        p95=rates[0],
        target=100_000,
        higher_is_better=True,
        note="p95 column: slowest run",
    )


def bench_claim_and_mark_synced(url: str, records: int, batch_size: int = 500, repeat: int = 3) -> Figure:
    reset_database(url)
    app, db, sync = make_app(url, frozen=False)
    rates = []
    with app.app_context():
        changes = [Change("Contact", i, "update") for i in range(records)]
        for _ in range(repeat):
            db.session.execute(sa.delete(SyncEvent))
            sync.enqueue_many(changes)
            db.session.commit()
            began = time.perf_counter()
            done = 0
            while claimed := sync.claim(limit=batch_size):
                done += sync.mark_synced(claimed).synced
            rates.append(done / (time.perf_counter() - began))
            assert done == records, done
    rates.sort()
    return Figure(
        name="claim + mark_synced throughput",
        scale=f"{records:,} records, batches of {batch_size}",
        unit="records/s",
        median=rates[len(rates) // 2],
        p95=rates[0],
        target=20_000,
        higher_is_better=True,
        note="p95 column: slowest run",
    )


def run_backend(scale, backend: str, server: str | None) -> list[Figure]:
    """The recording API's figures, on SQLite only (the host's write path is the same code elsewhere)."""
    if backend != "sqlite":
        return []
    url = sqlite_url("recorder")
    return [
        bench_outbox(url, scale.n(10_000)),
        bench_batch_enqueue(url, scale.n(100_000)),
        bench_claim_and_mark_synced(url, scale.n(100_000)),
    ]
