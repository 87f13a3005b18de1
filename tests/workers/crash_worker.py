"""A process to kill -9 in the middle of its work: ``python -m tests.workers.crash_worker MODE URL NOW ...``.

Each mode starts one piece of the plugin's work on the test database (frozen
clock at NOW) and freezes inside it: right after a chosen SQL statement has
run, before its transaction commits, it prints ``paused <session>`` (the
server session id, ``-`` on SQLite) and sleeps until the test kills it.

Modes:
- ``rollup URL NOW``: the scheduler's rollup tick, frozen after its upsert of hourly rows.
- ``prune URL NOW BATCH``: the retention tick, frozen after the BATCH-th delete of sync
  events (the batches before it are committed).
- ``claim URL NOW LIMIT``: a claim of LIMIT records, frozen after it marked them claimed.
- ``mark-synced URL NOW LIMIT``: claims LIMIT records (committed; prints ``claimed`` and
  their keys as JSON), then reports them synced, frozen after the sync events are written.
- ``export URL NOW``: the Sync Errors CSV export, frozen after writing its first chunk of rows
  of rows was sent.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
import typing as t

import sqlalchemy as sa
from flask import Flask
from flask_admin import Admin
from flask_sqlalchemy import SQLAlchemy

from flask_dynamics_sync import DynamicsSync

from .jobs_worker import Clock
from .jobs_worker import Worker

#: The configuration the worker and the test's app share.
CONFIG = {
    "DYNAMICS_SYNC_PRUNE_BATCH_SIZE": 10,
    "DYNAMICS_SYNC_EXPORT_CHUNK_SIZE": 50,
}
PAUSE_SECONDS = 600


def make_app(url: str, now: str) -> tuple[Flask, SQLAlchemy, DynamicsSync]:
    app = Flask("crash_worker")
    app.config.update(SQLALCHEMY_DATABASE_URI=url, SECRET_KEY="crash-worker", **CONFIG)
    if url.startswith("sqlite"):
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {"connect_args": {"timeout": 30}}
    db = SQLAlchemy(app)
    sync = DynamicsSync(clock=Clock(dt.datetime.fromisoformat(now)))
    sync.init_app(app, admin=Admin(app), db=db)
    return app, db, sync


def session_id(dbapi_connection: t.Any) -> str:
    """The server's id of a driver connection: PostgreSQL backend pid, MariaDB thread id."""
    info = getattr(dbapi_connection, "info", None)
    if hasattr(info, "backend_pid"):
        return str(info.backend_pid)
    if hasattr(dbapi_connection, "thread_id"):
        return str(dbapi_connection.thread_id())
    return "-"


def pause(session: str) -> t.NoReturn:
    print(f"paused {session}", flush=True)
    time.sleep(PAUSE_SECONDS)
    raise SystemExit("not killed in time")


def pause_after(engine: sa.Engine, prefix: str, occurrence: int = 1) -> None:
    """Freeze the process right after the ``occurrence``-th statement starting with ``prefix`` ran."""
    seen = 0

    def after_cursor_execute(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        nonlocal seen
        if statement.lstrip().upper().startswith(prefix.upper()):
            seen += 1
            if seen == occurrence:
                pause(session_id(conn.connection.dbapi_connection))

    sa.event.listen(engine, "after_cursor_execute", after_cursor_execute)


def run_tick(url: str, now: str, job: str, prefix: str, occurrence: int = 1) -> None:
    from flask_dynamics_sync.scheduler import run_job

    app, db, _sync = make_app(url, now)
    with app.app_context():
        pause_after(db.engine, prefix, occurrence)
        run = run_job(app, job)
    raise SystemExit(f"the {job} tick ended without pausing: {run}")


def rollup(url: str, now: str) -> None:
    run_tick(url, now, "rollup", "INSERT INTO dynamics_sync_hourly")


def prune(url: str, now: str, batch: str) -> None:
    run_tick(url, now, "prune", "DELETE FROM dynamics_sync_event", int(batch))


def claim(url: str, now: str, limit: str) -> None:
    app, db, sync = make_app(url, now)
    with app.app_context():
        pause_after(db.engine, "UPDATE dynamics_sync_queue")
        sync.claim(limit=int(limit))
    raise SystemExit("the claim ended without pausing")


def mark_synced(url: str, now: str, limit: str) -> None:
    app, db, sync = make_app(url, now)
    with app.app_context():
        batch = sync.claim(limit=int(limit))
        print("claimed " + json.dumps([f"{r.object_type}:{r.record_id}" for r in batch]), flush=True)
        pause_after(db.engine, "INSERT INTO dynamics_sync_event")
        sync.mark_synced(batch)
    raise SystemExit("mark_synced ended without pausing")


def export(url: str, now: str) -> None:
    from flask_dynamics_sync import export as export_module

    app, db, _sync = make_app(url, now)
    sessions: list[str] = []

    def remember_session(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        if "FROM dynamics_sync_error" in statement:
            sessions.append(session_id(conn.connection.dbapi_connection))

    write_csv = export_module.csv_chunks

    def frozen_after_the_first_chunk(chunks, header):  # noqa: ANN001, ANN202
        parts = write_csv(chunks, header)
        yield next(parts)  # byte order mark and header
        yield next(parts)  # the first chunk of rows: the cursor is open on the server
        pause(sessions[-1])

    export_module.csv_chunks = frozen_after_the_first_chunk
    with app.app_context():
        sa.event.listen(db.engine, "after_cursor_execute", remember_session)
    app.test_client().get("/admin/dynamics/errors/export/csv/")
    raise SystemExit("the export ended without pausing")


class CrashWorker(Worker):
    """A running ``crash_worker`` (the parent's side): read its lines, kill it."""

    def __init__(self, mode: str, *args: object) -> None:
        super().__init__(mode, *args, module="tests.workers.crash_worker")

    def paused(self, timeout: float = 60) -> str:
        """Wait until the worker froze; returns its server session id (``-`` on SQLite)."""
        return self.expect("paused", timeout).split(" ", 1)[1]


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    {"rollup": rollup, "prune": prune, "claim": claim, "mark-synced": mark_synced, "export": export}[mode](*args)
