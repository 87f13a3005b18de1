"""Database faults: the plugin's pages say so plainly and recover; jobs catch up at the next tick.

The shared database servers are never stopped. PostgreSQL and MariaDB are
reached through a TCP forwarder on 127.0.0.1 that the test cuts (``stop``:
connections dropped and refused, like a server that went away) or whose open
connections it breaks (``drop_connections``, like a network failure); the
server also kills the app's idle sessions (``pg_terminate_backend``, ``KILL``).
SQLite is made unavailable by another connection holding an exclusive lock,
on a database file of the test's own.
"""

from __future__ import annotations

import datetime as dt
import re
import socket
import sqlite3
import threading
import typing as t
from collections import defaultdict

import pytest
import sqlalchemy as sa

from flask_dynamics_sync.models import HourlyThroughput
from flask_dynamics_sync.models import JobState
from flask_dynamics_sync.models import QueueItem
from flask_dynamics_sync.models import SyncError
from flask_dynamics_sync.models import SyncEvent
from flask_dynamics_sync.models import metadata
from flask_dynamics_sync.scheduler import run_job
from flask_dynamics_sync.views.db_errors import RETRY_AFTER_SECONDS

from .conftest import ERRORS_URL
from .conftest import NOW
from .conftest import backend_of
from .conftest import insert_rows
from .conftest import load_errors_dataset

STATUS_URL = "/admin/dynamics/status/"
#: Every page of the plugin that reads the database, as a viewer opens it.
PAGES = [
    STATUS_URL,
    STATUS_URL + "?view=last_hour",
    STATUS_URL + "details/Lead",
    STATUS_URL + "json",
    STATUS_URL + "metrics",
    ERRORS_URL,
    ERRORS_URL + "?search=Duplicate",
    ERRORS_URL + "details/?id=700001",
    ERRORS_URL + "export/csv/",
    ERRORS_URL + "export/json/",
    ERRORS_URL + "export/xlsx/",
]
UNAVAILABLE_MESSAGE = "The database does not answer right now. Nothing is lost: try again in a moment."
#: What a page must never show of the failure.
INTERNALS = re.compile(r"Traceback|sqlalchemy|psycopg|pymysql|sqlite3|OperationalError|File \"", re.I)
SERVERS = ["postgresql", "mariadb"]


# -- fault injection ---------------------------------------------------------------------


class TcpProxy:
    """A loopback TCP forwarder to a database server that the test can cut."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> TcpProxy:
        """Listen (on the same port as before, after a ``stop``) and forward every connection."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._open.update((client, server))
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def drop_connections(self) -> None:
        """Break every open connection (both ends see it closed); new ones are still accepted."""
        with self._lock:
            connections, self._open = self._open, set()
        for end in connections:
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            end.close()

    def stop(self) -> None:
        """Refuse new connections and break the open ones: the server is gone."""
        if self._listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone would not.
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        self.drop_connections()

    @property
    def running(self) -> bool:
        return self._listener is not None


class Outage:
    """Makes the app's database unavailable (``begin``) and available again (``end``)."""

    url: str
    engine_options: dict[str, t.Any]

    def begin(self) -> None:
        raise NotImplementedError

    def end(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.end()


class ServerOutage(Outage):
    """PostgreSQL or MariaDB behind a :class:`TcpProxy`: the server stops answering."""

    def __init__(self, db_url: str) -> None:
        url = sa.make_url(db_url)
        default_port = 5432 if backend_of(db_url) == "postgresql" else 3306
        self.proxy = TcpProxy((url.host or "127.0.0.1", url.port or default_port)).start()
        self.url = url.set(host="127.0.0.1", port=self.proxy.port).render_as_string(hide_password=False)
        self.engine_options = {"pool_pre_ping": True, "connect_args": {"connect_timeout": 5}}

    def begin(self) -> None:
        self.proxy.stop()

    def end(self) -> None:
        if not self.proxy.running:
            self.proxy.start()

    def close(self) -> None:
        self.proxy.stop()


class SqliteOutage(Outage):
    """A SQLite file locked exclusively by another connection: every statement finds it locked."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"
        engine = sa.create_engine(self.url)
        metadata.create_all(engine)
        engine.dispose()
        # Wait only a moment for the lock, so a locked page answers at once.
        self.engine_options = {"pool_pre_ping": True, "connect_args": {"timeout": 0.2}}
        self._holder: sqlite3.Connection | None = None

    def begin(self) -> None:
        self._holder = sqlite3.connect(self.path, isolation_level=None)
        self._holder.execute("BEGIN EXCLUSIVE")

    def end(self) -> None:
        if self._holder is not None:
            self._holder.execute("ROLLBACK")
            self._holder.close()
            self._holder = None


@pytest.fixture
def outage(db_url: str, tmp_path) -> t.Iterator[Outage]:
    """The fault of the backend under test; ended after the test whatever happens."""
    fault: Outage = SqliteOutage(str(tmp_path / "faults.db")) if backend_of(db_url) == "sqlite" else ServerOutage(db_url)
    try:
        yield fault
    finally:
        fault.close()


@pytest.fixture
def faulty_app(outage: Outage, make_app):
    """The standard host on the outage's database, with the Sync Errors data set."""
    app = make_app(outage.url, config={"SQLALCHEMY_ENGINE_OPTIONS": outage.engine_options})

    @app.route("/host/report")
    def host_report() -> str:  # one of the host's own pages that reads the database
        db = app.extensions["test_db"]
        return str(db.session.scalar(sa.select(sa.func.count()).select_from(SyncError)))

    with app.app_context():
        load_errors_dataset(app.extensions["test_db"])
    yield app
    outage.end()  # before make_app empties the tables


@pytest.fixture
def app_without_pre_ping(outage: Outage, make_app):
    """The standard host on the outage's database, without ``pool_pre_ping``."""
    options = {**outage.engine_options, "pool_pre_ping": False}
    yield make_app(outage.url, config={"SQLALCHEMY_ENGINE_OPTIONS": options})
    outage.end()


def csrf_token(client) -> str:
    html = client.get(ERRORS_URL).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


# -- pages ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", PAGES)
def test_a_page_answers_503_with_a_plain_message_while_the_database_is_away(faulty_app, outage, path):
    client = faulty_app.test_client()
    assert client.get(path).status_code == 200  # connections are pooled before the outage

    outage.begin()
    response = client.get(path)
    body = response.get_data(as_text=True)

    assert response.status_code == 503
    assert response.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert UNAVAILABLE_MESSAGE in body
    assert not INTERNALS.search(body)


def test_the_html_page_keeps_the_console_layout(faulty_app, outage):
    client = faulty_app.test_client()
    outage.begin()

    html = client.get(ERRORS_URL).get_data(as_text=True)

    assert "<h4 class=\"alert-heading\">Database unavailable</h4>" in html
    assert 'href="/admin/dynamics/status/"' in html  # the console's menu is still there


def test_the_json_endpoint_answers_json(faulty_app, outage):
    client = faulty_app.test_client()
    outage.begin()

    response = client.get(STATUS_URL + "json")

    assert (response.status_code, response.json) == (
        503, {"error": "database_unavailable", "message": UNAVAILABLE_MESSAGE},
    )


def test_an_action_answers_503_and_changes_nothing(faulty_app, outage):
    client = faulty_app.test_client()
    token = csrf_token(client)
    outage.begin()

    response = client.post(ERRORS_URL + "action/", data={
        "action": "resolve", "scope": "all", "confirmed": "1", "csrf_token": token,
    })
    outage.end()

    assert response.status_code == 503
    with faulty_app.app_context():
        states = faulty_app.extensions["test_db"].session.scalars(sa.select(SyncError.state)).all()
    assert sorted(states) == sorted(["open"] * 5 + ["ignored", "resolved", "retried"])


@pytest.mark.parametrize("path", [STATUS_URL, ERRORS_URL + "export/csv/"])
def test_pages_work_again_on_the_first_request_once_the_database_is_back(faulty_app, outage, path):
    client = faulty_app.test_client()
    outage.begin()
    assert client.get(path).status_code == 503

    outage.end()
    response = client.get(path)

    assert response.status_code == 200
    assert "0x80040237" in response.get_data(as_text=True) or path == STATUS_URL


def test_an_export_is_refused_whole_not_cut_after_its_header(faulty_app, outage):
    client = faulty_app.test_client()
    outage.begin()

    response = client.get(ERRORS_URL + "export/csv/")

    assert response.status_code == 503
    assert "text/html" in response.content_type  # not a CSV holding only the header row


def test_the_hosts_own_pages_keep_the_hosts_error_handling(faulty_app, outage):
    client = faulty_app.test_client()
    outage.begin()

    # The test host propagates its unhandled errors (TESTING): the plugin did not catch this one.
    with pytest.raises(sa.exc.OperationalError):
        client.get("/host/report")


def test_a_programming_error_is_not_reported_as_an_outage(client, monkeypatch):
    def missing_table(*args, **kwargs):
        raise sa.exc.ProgrammingError("SELECT 1 FROM nowhere", {}, Exception("no such table: nowhere"))

    monkeypatch.setattr("flask_dynamics_sync.views.status.status_data.status_report", missing_table)

    # Retrying would not help: an ordinary error (propagated by the test host), not a 503.
    with pytest.raises(sa.exc.ProgrammingError):
        client.get(STATUS_URL)


@pytest.mark.parametrize("db_url", SERVERS, indirect=True)
def test_a_connection_broken_during_a_page_load_gives_503_then_the_next_load_works(faulty_app, outage):
    client = faulty_app.test_client()
    with faulty_app.app_context():
        engine = faulty_app.extensions["test_db"].engine
    statements = []

    def break_on_third_statement(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)
        if len(statements) == 3:
            outage.proxy.drop_connections()

    sa.event.listen(engine, "before_cursor_execute", break_on_third_statement)
    try:
        broken = client.get(STATUS_URL)
    finally:
        sa.event.remove(engine, "before_cursor_execute", break_on_third_statement)

    assert broken.status_code == 503
    assert client.get(STATUS_URL).status_code == 200


def kill_app_sessions(db_url: str, outage: ServerOutage) -> int:
    """The server ends every session of the app's database but the killer's own; returns how many."""
    admin = sa.create_engine(db_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if backend_of(db_url) == "postgresql":
                return len(conn.execute(sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )).all())
            ids = conn.scalars(sa.text(
                "SELECT id FROM information_schema.processlist WHERE db = DATABASE() AND id <> CONNECTION_ID()"
            )).all()
            for session_id in ids:
                conn.execute(sa.text(f"KILL {int(session_id)}"))
            return len(ids)
    finally:
        admin.dispose()


@pytest.mark.parametrize("db_url", SERVERS, indirect=True)
def test_sessions_the_server_killed_are_replaced_without_an_error_with_pre_ping(faulty_app, outage, db_url):
    client = faulty_app.test_client()
    assert client.get(STATUS_URL).status_code == 200

    assert kill_app_sessions(db_url, outage) >= 1
    assert [client.get(path).status_code for path in (STATUS_URL, ERRORS_URL)] == [200, 200]


@pytest.mark.parametrize("db_url", SERVERS, indirect=True)
def test_without_pre_ping_a_killed_session_costs_one_503_then_the_pool_is_renewed(app_without_pre_ping, outage, db_url):
    client = app_without_pre_ping.test_client()
    assert client.get(STATUS_URL).status_code == 200

    kill_app_sessions(db_url, outage)

    assert [client.get(STATUS_URL).status_code for _ in range(3)] == [503, 200, 200]


# -- jobs -----------------------------------------------------------------------------


def raw_counts(db) -> dict[tuple, tuple[int, int]]:
    """(hour, object, operation, direction) -> (synced, failed), counted from the raw rows in Python."""
    counts: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    with db.engine.connect() as conn:
        for row in conn.execute(sa.select(SyncEvent.__table__)):
            counts[(row.synced_at.replace(minute=0, second=0, microsecond=0), row.object_type, row.operation,
                    row.direction)][0] += 1
        for row in conn.execute(sa.select(SyncError.__table__)):
            counts[(row.occurred_at.replace(minute=0, second=0, microsecond=0), row.object_type, row.operation,
                    row.direction)][1] += 1
    return {key: tuple(value) for key, value in counts.items()}


def rolled_up(db) -> dict[tuple, tuple[int, int]]:
    with db.engine.connect() as conn:
        return {
            (r.hour, r.object_type, r.operation, r.direction): (r.synced_count, r.failed_count)
            for r in conn.execute(sa.select(HourlyThroughput.__table__))
        }


def job_row(db, name: str = "rollup"):
    with db.engine.connect() as conn:
        return conn.execute(sa.select(JobState.__table__).where(JobState.name == name)).one()


def add_events(db, *times: dt.datetime) -> None:
    insert_rows(db, SyncEvent, [
        {"object_type": "Lead", "record_id": f"L-{i}", "operation": "insert", "direction": "to_dynamics",
         "synced_at": at, "latency_ms": 100}
        for i, at in enumerate(times)
    ])


@pytest.fixture
def job_app(faulty_app):
    with faulty_app.app_context():
        yield faulty_app


def test_a_rollup_tick_while_the_database_is_away_is_caught_up_by_the_next_tick(job_app, outage, clock):
    db = job_app.extensions["test_db"]
    add_events(db, NOW.replace(hour=11, minute=30))
    clock.set(NOW.replace(hour=12, minute=5))
    assert run_job(job_app, "rollup").reason == "ran"
    add_events(db, NOW.replace(hour=12, minute=30), NOW.replace(hour=13, minute=1))

    clock.set(NOW.replace(hour=13, minute=5))
    outage.begin()
    with pytest.raises(sa.exc.OperationalError):  # the scheduler logs it and keeps the schedule
        run_job(job_app, "rollup")
    outage.end()
    add_events(db, NOW.replace(hour=13, minute=40), NOW.replace(hour=14, minute=2))
    clock.set(NOW.replace(hour=14, minute=5))
    run = run_job(job_app, "rollup")

    assert (run.ran, run.reason) == (True, "ran")
    assert rolled_up(db) == raw_counts(db)
    assert sum(synced for synced, _ in rolled_up(db).values()) == 5


@pytest.mark.parametrize("db_url", SERVERS, indirect=True)
def test_a_rollup_whose_connection_breaks_mid_run_records_the_failure_and_the_next_tick_catches_up(
    job_app, outage, clock
):
    db = job_app.extensions["test_db"]
    add_events(db, NOW.replace(hour=13, minute=10), NOW.replace(minute=2))
    clock.set(NOW.replace(minute=5))

    def break_during_upsert(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO DYNAMICS_SYNC_HOURLY"):
            outage.proxy.drop_connections()

    sa.event.listen(db.engine, "before_cursor_execute", break_during_upsert)
    try:
        failed = run_job(job_app, "rollup")
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", break_during_upsert)
    row = job_row(db)
    assert (failed.reason, row.last_status) == ("failed", "failed")
    assert row.last_message.startswith("OperationalError")
    assert rolled_up(db) == {}  # the broken run's transaction left nothing behind

    clock.set(NOW.replace(hour=15, minute=5))
    run = run_job(job_app, "rollup")

    assert run.reason == "ran" and job_row(db).last_status == "ok"
    assert rolled_up(db) == raw_counts(db)


# -- the recording API ------------------------------------------------------------------


def queue_rows(db) -> list[tuple]:
    """The test's own queue rows (``R-…``; the data set parks two others)."""
    with db.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(
            sa.select(QueueItem.record_id, QueueItem.state, QueueItem.claim_token.is_not(None))
            .where(QueueItem.record_id.like("R-%")).order_by(QueueItem.record_id)
        )]


def test_recording_calls_during_an_outage_raise_and_the_work_resumes_afterwards(job_app, outage, clock):
    sync = job_app.extensions["dynamics_sync"].extension
    db = job_app.extensions["test_db"]
    sync.enqueue("Lead", "R-1", "insert")
    db.session.commit()
    [claimed] = sync.claim()

    outage.begin()
    with pytest.raises(sa.exc.OperationalError):
        sync.mark_synced(claimed)
    with pytest.raises(sa.exc.OperationalError):
        sync.enqueue("Lead", "R-2", "insert")
        db.session.commit()
    db.session.rollback()
    outage.end()

    assert queue_rows(db) == [("R-1", "pending", True)]  # still claimed: nothing half-recorded
    assert sync.mark_synced(claimed).synced == 1
    with db.engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(SyncEvent)) == 1
    assert queue_rows(db) == []


def test_a_missing_table_is_not_reported_as_an_outage(empty_app):
    # A host that never created the tables: SQLite reports it as an OperationalError, like a
    # locked database. (A database of its own: dropping a table of the shared one would break
    # every later test.)
    with pytest.raises(sa.exc.DatabaseError):
        empty_app.test_client().get(ERRORS_URL)
