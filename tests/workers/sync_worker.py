"""A sync engine process for the multi-process tests: ``python -m tests.workers.sync_worker URL MODE ...``.

Modes:
- ``churn SEED ROUNDS``: enqueue random changes, claim, then mark each synced or failed
  (failure codes picked by the seeded RNG); prints one JSON line with what it did (and how
  many of its enqueue transactions it re-ran after a deadlock).
- ``claim-and-hang LIMIT``: claim a batch, print its keys as JSON, then sleep until killed.
- ``rollup-until-eof``: roll up again and again until its stdin closes, then once more;
  prints one JSON line with the number of runs.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time

import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_dynamics_sync import Change
from flask_dynamics_sync import DynamicsSync
from flask_dynamics_sync.database import is_deadlock

OBJECTS = ("Lead", "Contact", "Account", "Opportunity")
DEADLOCK_ATTEMPTS = 5


def make_app(url: str) -> tuple[Flask, SQLAlchemy, DynamicsSync]:
    app = Flask("worker")
    app.config.update(SQLALCHEMY_DATABASE_URI=url, DYNAMICS_SYNC_RETRY_BACKOFF=0)
    if url.startswith("sqlite"):
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {"connect_args": {"timeout": 30}}
    db = SQLAlchemy(app)
    sync = DynamicsSync()
    sync.init_app(app, db=db)
    return app, db, sync


def enqueue_committed(db: SQLAlchemy, sync: DynamicsSync, changes: list[Change]) -> int:
    """Enqueue in a transaction of the host's, re-run when the database picks it as a deadlock victim.

    On InnoDB an enqueue can deadlock with a worker's report on the same records;
    like any host transaction it is then rolled back whole and run again.
    Returns the number of deadlocks.
    """
    for attempt in range(DEADLOCK_ATTEMPTS):
        try:
            sync.enqueue_many(changes)
            db.session.commit()
            return attempt
        except sa.exc.OperationalError as exc:
            db.session.rollback()
            if attempt == DEADLOCK_ATTEMPTS - 1 or not is_deadlock(exc):
                raise
    raise AssertionError("unreachable")


def churn(url: str, seed: int, rounds: int) -> None:
    app, db, sync = make_app(url)
    rng = random.Random(seed)
    enqueued: list[str] = []
    synced = failed = deadlocks = 0
    with app.app_context():
        for _ in range(rounds):
            changes = [
                Change(rng.choice(OBJECTS), rng.randrange(60), rng.choice(("insert", "update")))
                for _ in range(rng.randrange(1, 8))
            ]
            deadlocks += enqueue_committed(db, sync, changes)
            enqueued.extend(f"{c.object_type}:{c.record_id}" for c in changes)
            batch = sync.claim(limit=rng.randrange(1, 10))
            ok = [r for r in batch if rng.random() < 0.8]
            if ok:
                sync.mark_synced(ok)
                synced += len(ok)  # every record sent is an event, whether it left the queue or waits again
            for record in batch:
                if record not in ok:
                    sync.mark_failed(record, "0x80072322", "Too many requests", retry=rng.random() < 0.5)
                    failed += 1
    print(json.dumps({"enqueued": enqueued, "synced": synced, "failed": failed, "deadlocks": deadlocks}), flush=True)


def claim_and_hang(url: str, limit: int) -> None:
    app, _, sync = make_app(url)
    with app.app_context():
        batch = sync.claim(limit=limit, lease_seconds=60)
        print(json.dumps([f"{r.object_type}:{r.record_id}" for r in batch]), flush=True)
        time.sleep(600)


def rollup_until_eof(url: str) -> None:
    app, _, sync = make_app(url)
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    runs = 0
    with app.app_context():
        while not stop.is_set():
            sync.rollup()
            runs += 1
        sync.rollup()  # after every change is in: the figures to compare with the raw rows
    print(json.dumps({"runs": runs + 1}), flush=True)


if __name__ == "__main__":
    url, mode, *rest = sys.argv[1:]
    if mode == "churn":
        churn(url, int(rest[0]), int(rest[1]))
    elif mode == "claim-and-hang":
        claim_and_hang(url, int(rest[0]))
    elif mode == "rollup-until-eof":
        rollup_until_eof(url)
    else:
        raise SystemExit(f"unknown mode {mode}")
