"""Time limits: no statement of a plugin page or export runs longer than its setting, on any database.

A slow statement is made the way it happens in production: on PostgreSQL and
MariaDB another session holds a lock on the table (a migration, a long
transaction); on SQLite, which has no such wait for readers, a search reads
many rows.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from flask_dynamics_sync.models import QueueItem
from flask_dynamics_sync.models import SyncError
from flask_dynamics_sync.time_limits import is_timeout
from flask_dynamics_sync.time_limits import time_limit

from .conftest import ERRORS_URL
from .conftest import backend_of
from .conftest import page_text

#: A statement that takes seconds on each database.
SLOW = {
    "sqlite": "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 100000000) SELECT count(*) FROM n",
    "postgresql": "SELECT pg_sleep(5)",
    "mariadb": "SELECT SLEEP(5)",
}
#: A statement that takes about half a second on each database.
HALF_SECOND = {
    "sqlite": "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 1000000) SELECT count(*) FROM n",
    "postgresql": "SELECT pg_sleep(0.5)",
    "mariadb": "SELECT SLEEP(0.5)",
}
LIMIT = 0.2


def stopped_message(seconds: float) -> str:
    return (f"Reading the database took longer than {seconds} seconds and was stopped."
            " Narrow the search or filters, or try again in a moment.")


def test_a_statement_past_its_limit_is_stopped_at_the_limit(db, backend):
    with db.engine.connect() as conn:
        started = time.monotonic()
        with pytest.raises(sa.exc.OperationalError) as stopped, time_limit(conn, LIMIT):
            conn.exec_driver_sql(SLOW[backend]).all()
        elapsed = time.monotonic() - started

    assert is_timeout(stopped.value)
    assert LIMIT <= elapsed < LIMIT + 1


def test_the_connection_has_no_limit_after_the_block(db, backend):
    with db.engine.connect() as conn:
        with time_limit(conn, LIMIT):
            conn.exec_driver_sql("SELECT 1").all()

        assert conn.exec_driver_sql(HALF_SECOND[backend]).all()


def test_an_ordinary_error_is_not_a_timeout(db):
    with db.engine.connect() as conn, pytest.raises(sa.exc.DBAPIError) as failed:
        conn.exec_driver_sql("SELECT * FROM no_such_table")

    assert not is_timeout(failed.value)


# -- pages --------------------------------------------------------------------------


@contextlib.contextmanager
def table_held(engine: sa.Engine, table: sa.Table) -> Iterator[None]:
    """Another session holds ``table`` so that readers wait (PostgreSQL and MariaDB)."""
    with engine.connect() as holder:
        if backend_of(str(engine.url)) == "postgresql":
            holder.execute(sa.text(f"LOCK TABLE {table.name} IN ACCESS EXCLUSIVE MODE"))
        else:
            holder.execute(sa.text(f"LOCK TABLES {table.name} WRITE"))
        try:
            yield
        finally:
            if backend_of(str(engine.url)) == "postgresql":
                holder.rollback()
            else:
                holder.execute(sa.text("UNLOCK TABLES"))


def many_errors(engine: sa.Engine, rows: int) -> None:
    """``rows`` sync errors, written by SQLite itself."""
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO dynamics_sync_error (object_type, record_id, record_label, operation, direction, error_code,"
            " error_message, occurred_at, attempt, state)"
            " WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < :rows)"
            " SELECT 'Lead', 'L-' || x, 'Label ' || x, 'insert', 'to_dynamics', '0x8004' || (x % 97),"
            " 'Duplicate record number ' || x, '2026-03-10 14:00:00.000000', 1, 'open' FROM n"
        ), {"rows": rows})


#: Page limits of the tests: on SQLite a search of :data:`SQLITE_ROWS` rows reads for about 0.1 s.
LIMITS = {"sqlite": 0.02, "postgresql": LIMIT, "mariadb": LIMIT}
SQLITE_ROWS = 100_000


@contextlib.contextmanager
def slow_errors_list(engine: sa.Engine) -> Iterator[dict[str, str]]:
    """The list arguments of a search that reads for longer than the limit of :data:`LIMITS`; yields them."""
    if backend_of(str(engine.url)) == "sqlite":
        many_errors(engine, SQLITE_ROWS)
        try:
            yield {"search": "nothing"}
        finally:
            with engine.begin() as conn:
                conn.execute(sa.delete(SyncError.__table__))
    else:
        with table_held(engine, SyncError.__table__):
            yield {"search": "Duplicate"}


@pytest.fixture
def limited_app(make_app, db_url, backend):
    limit = LIMITS[backend]
    return make_app(db_url, config={"DYNAMICS_SYNC_PAGE_TIME_LIMIT": limit, "DYNAMICS_SYNC_EXPORT_TIME_LIMIT": limit})


def test_a_list_past_its_limit_answers_503_with_a_clear_message_at_once(limited_app, backend):
    client = limited_app.test_client()
    with limited_app.app_context():
        engine = limited_app.extensions["test_db"].engine
    with slow_errors_list(engine) as query:
        started = time.monotonic()
        response = client.get(ERRORS_URL, query_string=query)
        elapsed = time.monotonic() - started

    assert (response.status_code, response.headers["Retry-After"]) == (503, "30")
    assert stopped_message(LIMITS[backend]) in page_text(response.text)
    assert elapsed < LIMITS[backend] + 2


def test_an_export_past_its_limit_answers_503_before_any_download(limited_app, backend):
    client = limited_app.test_client()
    with limited_app.app_context():
        engine = limited_app.extensions["test_db"].engine
    with slow_errors_list(engine) as query:
        response = client.get(ERRORS_URL + "export/csv/", query_string=query)

    assert (response.status_code, response.headers["Retry-After"], response.mimetype) == (503, "30", "text/html")
    assert stopped_message(LIMITS[backend]) in page_text(response.text)


def test_the_next_request_after_a_timeout_is_served(limited_app):
    client = limited_app.test_client()
    with limited_app.app_context():
        engine = limited_app.extensions["test_db"].engine
    with slow_errors_list(engine) as query:
        assert client.get(ERRORS_URL, query_string=query).status_code == 503

    assert client.get(ERRORS_URL).status_code == 200


@pytest.mark.parametrize("db_url", ["postgresql", "mariadb"], indirect=True)
def test_the_status_json_past_its_limit_answers_503_in_json(limited_app):
    client = limited_app.test_client()
    with limited_app.app_context():
        engine = limited_app.extensions["test_db"].engine
    with table_held(engine, QueueItem.__table__):
        response = client.get("/admin/dynamics/status/json")

    assert (response.status_code, response.headers["Retry-After"]) == (503, "30")
    assert json.loads(response.data) == {"error": "query_timeout", "message": stopped_message(LIMIT)}
