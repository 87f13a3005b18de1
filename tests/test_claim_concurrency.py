"""Several workers claiming at once never get the same record."""

from __future__ import annotations

import threading
from collections import Counter

from flask_dynamics_sync import Change

WORKERS = 4
RECORDS = 300
BATCH = 7


def drain(app, sync, barrier: threading.Barrier, claimed: list[str], failures: list[BaseException]) -> None:
    try:
        with app.app_context():
            barrier.wait(timeout=30)
            while True:
                batch = sync.claim(limit=BATCH)
                if not batch:
                    return
                claimed.extend(f"{r.object_type}:{r.record_id}" for r in batch)
    except BaseException as exc:  # noqa: BLE001 - reported to the test thread
        failures.append(exc)


def test_concurrent_workers_never_get_the_same_record(app, sync, db):
    sync.enqueue_many([Change("Lead", i, "insert") for i in range(RECORDS)])
    db.session.commit()
    barrier = threading.Barrier(WORKERS)
    per_worker: list[list[str]] = [[] for _ in range(WORKERS)]
    failures: list[BaseException] = []

    threads = [
        threading.Thread(target=drain, args=(app, sync, barrier, per_worker[i], failures)) for i in range(WORKERS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert failures == []
    everything = Counter(key for worker in per_worker for key in worker)
    assert [key for key, seen in everything.items() if seen > 1] == []
    assert len(everything) == RECORDS


def test_concurrent_workers_marking_synced_leave_an_empty_queue(app, sync, db):
    sync.enqueue_many([Change("Contact", i, "update") for i in range(100)])
    db.session.commit()
    barrier = threading.Barrier(2)
    failures: list[BaseException] = []
    outcomes: list[int] = []

    def work() -> None:
        try:
            with app.app_context():
                barrier.wait(timeout=30)
                while batch := sync.claim(limit=10):
                    outcomes.append(sync.mark_synced(batch).synced)
        except BaseException as exc:  # noqa: BLE001
            failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert failures == []
    assert sum(outcomes) == 100
    assert sync.claim(limit=10) == []
