"""What the plugin needs to know of the database in use: its family, and transactions retried on deadlock."""

from __future__ import annotations

import random
import time
import typing as t
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from sqlalchemy.orm import scoped_session

from .models import QueueItem

_R = t.TypeVar("_R")

DEADLOCK_RETRIES = 5
#: MySQL/MariaDB deadlock and lock wait timeout; PostgreSQL deadlock and serialization failure.
_RETRYABLE_MYSQL_CODES = {1213, 1205}
_RETRYABLE_SQLSTATES = {"40P01", "40001"}


def dialect_family(bind: Engine | Connection | Session | scoped_session[t.Any]) -> str:
    """``sqlite``, ``postgresql`` or ``mysql`` (MariaDB included)."""
    if isinstance(bind, (Session, scoped_session)):
        bind = bind.get_bind(mapper=QueueItem)  # the plugin's tables may live on a bind of their own
    name = bind.dialect.name
    return "mysql" if name in ("mysql", "mariadb") else name


def is_deadlock(exc: sa.exc.DBAPIError) -> bool:
    """Did the server abort this transaction to break a deadlock (or a lock wait), so that a retry may pass?"""
    orig = exc.orig
    if getattr(orig, "sqlstate", None) in _RETRYABLE_SQLSTATES:
        return True
    args: tuple[t.Any, ...] = getattr(orig, "args", ())
    return bool(args) and args[0] in _RETRYABLE_MYSQL_CODES


class Transaction(t.Protocol):
    """Runs a unit of work in a transaction of its own (:func:`run_transaction` on an engine)."""

    def __call__(self, work: Callable[[Connection], _R]) -> _R: ...


def run_transaction(engine: Engine, work: Callable[[Connection], _R]) -> _R:
    """Run ``work`` in a transaction of its own, retried on deadlock.

    InnoDB and PostgreSQL may abort one of two transactions that lock the
    same rows in different orders; the loser rolled back, so running it again
    is safe. MariaDB/MySQL use READ COMMITTED here to avoid gap locks.
    """
    for attempt in range(1, DEADLOCK_RETRIES + 1):
        try:
            with engine.connect() as conn:
                if dialect_family(conn) == "mysql":
                    conn = conn.execution_options(isolation_level="READ COMMITTED")
                with conn.begin():
                    return work(conn)
        except sa.exc.DBAPIError as exc:
            if attempt == DEADLOCK_RETRIES or not is_deadlock(exc):
                raise
            time.sleep(random.uniform(0.005, 0.05) * attempt)
    raise AssertionError("unreachable")  # pragma: no cover
