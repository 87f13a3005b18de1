"""The sync engine of the load test: ``python -m tests.load.feeder URL SECONDS RATE``.

Every tick (50 ms) it enqueues ``RATE / 20`` changes through the recording API
(record ids ``load-<n>``, drawn from a space large enough that few coalesce),
then claims waiting records and reports them: synced, or one in 200 failed and
parked with a Dataverse code. After SECONDS it drains what is left and prints one
JSON line: changes enqueued, records synced and parked, ticks that fell behind.
"""

from __future__ import annotations

import json
import random
import sys
import time

from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_dynamics_sync import Change
from flask_dynamics_sync import DynamicsSync

TICK = 0.05
OBJECTS = ("Lead", "Contact", "Account", "Opportunity")
FAILURE_ODDS = 0.005
RECORD_SPACE = 10_000_000


def make_app(url: str) -> tuple[Flask, SQLAlchemy, DynamicsSync]:
    app = Flask("load_feeder")
    app.config.update(SQLALCHEMY_DATABASE_URI=url, DYNAMICS_SYNC_RETRY_BACKOFF=0)
    db = SQLAlchemy(app)
    sync = DynamicsSync()
    sync.init_app(app, db=db)
    return app, db, sync


def report(sync: DynamicsSync, rng: random.Random, batch: list) -> tuple[int, int]:
    """Report a claimed batch: (synced, parked)."""
    failed = [record for record in batch if rng.random() < FAILURE_ODDS]
    synced = [record for record in batch if record not in failed]
    if synced:
        sync.mark_synced(synced)
    for record in failed:
        sync.mark_failed(record, "0x80040237", "Duplicate record (load test)", retry=False)
    return len(synced), len(failed)


def main(url: str, seconds: float, rate: float) -> dict[str, object]:
    app, db, sync = make_app(url)
    rng = random.Random(2026)
    per_tick = max(1, round(rate * TICK))
    enqueued = synced = parked = late_ticks = 0
    keys: set[str] = set()
    with app.app_context():
        started = time.monotonic()
        next_tick = started
        while time.monotonic() - started < seconds:
            changes = [
                Change(rng.choice(OBJECTS), f"load-{rng.randrange(RECORD_SPACE)}", rng.choice(("insert", "update")))
                for _ in range(per_tick)
            ]
            sync.enqueue_many(changes)
            db.session.commit()
            enqueued += len(changes)
            keys.update(f"{c.object_type}:{c.record_id}" for c in changes)
            done = report(sync, rng, sync.claim(limit=per_tick * 2))
            synced, parked = synced + done[0], parked + done[1]
            next_tick += TICK
            delay = next_tick - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                late_ticks += 1
        elapsed = time.monotonic() - started
        while batch := sync.claim(limit=1000):  # what is left, after the clients stopped
            done = report(sync, rng, batch)
            synced, parked = synced + done[0], parked + done[1]
    return {
        "seconds": round(elapsed, 2),
        "enqueued": enqueued,
        "records": len(keys),
        "synced": synced,
        "parked": parked,
        "late_ticks": late_ticks,
        "ticks": round(elapsed / TICK),
        "enqueue_rate": round(enqueued / elapsed),
        "drain_rate": round((synced + parked) / elapsed),
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], float(sys.argv[2]), float(sys.argv[3]))), flush=True)
