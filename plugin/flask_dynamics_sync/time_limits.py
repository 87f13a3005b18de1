"""Time limits on what the plugin's pages and exports ask the database.

Each database stops a statement that runs too long in its own way:

* PostgreSQL: ``statement_timeout``, set for the current transaction only
  (``set_config(..., true)``, the function form of ``SET LOCAL``);
* MariaDB: the session's ``max_statement_time`` (MySQL: ``max_execution_time``,
  which applies to ``SELECT`` only), put back as it was afterwards;
* SQLite: a progress handler that interrupts the statement once the deadline
  has passed (it bounds everything run on the connection in the meantime).

A statement stopped this way raises the driver's own error, which
:func:`is_timeout` recognises; the views answer it with a clear page or a
``503`` with ``Retry-After`` (:mod:`.views.db_errors`). The worker is free at
once: the database gave up, not the client.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Engine

from .database import dialect_family
from .errors import DynamicsSyncError

#: PostgreSQL's ``query_canceled`` (statement_timeout, or a cancel request).
_POSTGRESQL_CANCELED = "57014"
#: MariaDB's ``ER_STATEMENT_TIMEOUT``, MySQL's ``ER_QUERY_TIMEOUT``.
_MYSQL_TIMEOUT_CODES = {1969, 3024}
#: SQLite's ``SQLITE_INTERRUPT``.
_SQLITE_INTERRUPT = 9
#: Virtual machine instructions between two looks at the clock on SQLite.
_SQLITE_PROGRESS_STEPS = 1000


class QueryTimeout(DynamicsSyncError):
    """Reading took longer than its time limit (checked between the statements of an export)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"reading took longer than {seconds:g} seconds")
        self.seconds = seconds


def is_timeout(exc: BaseException) -> bool:
    """Was ``exc`` raised because a statement ran past its time limit?"""
    if isinstance(exc, QueryTimeout):
        return True
    orig = getattr(exc, "orig", None)
    if orig is None:
        return False
    if getattr(orig, "sqlstate", None) == _POSTGRESQL_CANCELED:
        return True
    if getattr(orig, "sqlite_errorcode", None) == _SQLITE_INTERRUPT:
        return True
    args = getattr(orig, "args", ())
    return bool(args) and args[0] in _MYSQL_TIMEOUT_CODES


@contextlib.contextmanager
def time_limit(conn: Connection, seconds: float) -> Iterator[None]:
    """Stop every statement ``conn`` runs in this block after ``seconds`` (see the module docstring).

    On PostgreSQL the limit lasts until the block ends or the transaction does;
    the other databases get their setting back when the block ends.
    """
    family = dialect_family(conn)
    if family == "postgresql":
        with _postgresql_limit(conn, seconds):
            yield
    elif family == "mysql":
        with _mysql_limit(conn, seconds):
            yield
    else:
        with _sqlite_limit(conn, seconds):
            yield


@contextlib.contextmanager
def _postgresql_limit(conn: Connection, seconds: float) -> Iterator[None]:
    milliseconds = str(max(1, round(seconds * 1000)))
    # The select list is evaluated left to right: the previous value is read before it is replaced.
    previous = conn.execute(
        sa.select(
            sa.func.current_setting("statement_timeout"),
            sa.func.set_config("statement_timeout", milliseconds, True),
        )
    ).scalar_one()
    yield
    # Reached only when the block succeeded: after an error the transaction is rolled back,
    # which ends the limit anyway (and accepts no statement before).
    conn.execute(sa.select(sa.func.set_config("statement_timeout", previous, True)))


@contextlib.contextmanager
def _mysql_limit(conn: Connection, seconds: float) -> Iterator[None]:
    if conn.dialect.is_mariadb:  # type: ignore[attr-defined]
        variable, value = "max_statement_time", seconds
    else:
        variable, value = "max_execution_time", max(1, round(seconds * 1000))
    previous = conn.exec_driver_sql(f"SELECT @@session.{variable}").scalar_one()
    setting = sa.text(f"SET SESSION {variable} = :value")
    conn.execute(setting, {"value": value})
    try:
        yield
    finally:
        if not conn.invalidated:  # a lost connection is discarded with its setting
            try:
                conn.execute(setting, {"value": previous})
            except sa.exc.SQLAlchemyError:
                # Never hand the host a pooled connection that still carries the plugin's limit.
                conn.invalidate()


@contextlib.contextmanager
def _sqlite_limit(conn: Connection, seconds: float) -> Iterator[None]:
    raw = conn.connection.dbapi_connection
    deadline = time.monotonic() + seconds
    raw.set_progress_handler(lambda: time.monotonic() > deadline, _SQLITE_PROGRESS_STEPS)  # type: ignore[union-attr]
    try:
        yield
    finally:
        if not conn.invalidated:
            raw.set_progress_handler(None, _SQLITE_PROGRESS_STEPS)  # type: ignore[union-attr]


@contextlib.contextmanager
def limited_connection(engine: Engine, seconds: float) -> Iterator[Connection]:
    """A connection of ``engine`` whose statements stop after ``seconds`` each, returned to the pool afterwards."""
    with engine.connect() as conn, time_limit(conn, seconds):
        yield conn


def check_deadline(deadline: float, seconds: float) -> None:
    """Raise :class:`QueryTimeout` once ``time.monotonic()`` is past ``deadline`` (set ``seconds`` before)."""
    if time.monotonic() > deadline:
        raise QueryTimeout(seconds)
