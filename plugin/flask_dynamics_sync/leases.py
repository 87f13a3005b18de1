"""Leases: exactly one process runs a scheduled job, whatever the number of workers.

Each database uses what it has:

- PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``),
- MariaDB/MySQL: a named lock (``GET_LOCK``), named after the database so two
  databases on one server never share it,
- SQLite: a lease row (``holder``, ``lease_expires_at``) in the job's row,
  that expires after ``DYNAMICS_SYNC_LEASE_SECONDS``.

A dead holder cannot keep a lock: the server drops a session's advisory and
named locks when its connection goes away, and a lease row simply expires.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import socket
import typing as t
import uuid

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Engine

from .clock import Clock
from .database import dialect_family
from .jobs import ensure_job_row
from .models import job_table

logger = logging.getLogger(__name__)


def default_holder() -> str:
    """This process, as a lease holder: host, pid and a random suffix."""
    return f"{socket.gethostname()[:80]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class LeaseLost(RuntimeError):
    """A lease row was taken over by another process while its holder was still working."""


class Lease:
    """The right to run one job now. ``acquire`` never waits; ``release`` is idempotent.

    Use as ``if lease.acquire(): try: ... finally: lease.release()``; a long
    job calls :meth:`renew` between steps.
    """

    def __init__(self, engine: Engine, name: str) -> None:
        self.engine = engine
        self.name = name
        self.held = False

    def acquire(self) -> bool:
        raise NotImplementedError

    def renew(self) -> None:
        """Extend the lease (lease rows only; server locks last as long as their connection)."""

    def release(self) -> None:
        raise NotImplementedError


class _SessionLockLease(Lease):
    """A server lock held by a dedicated autocommit connection for the lease's lifetime."""

    acquire_sql: t.ClassVar[str]
    release_sql: t.ClassVar[str]

    def __init__(self, engine: Engine, name: str) -> None:
        super().__init__(engine, name)
        self._conn: Connection | None = None

    def _key(self, conn: Connection) -> t.Any:
        raise NotImplementedError

    def acquire(self) -> bool:
        if self.held:
            return True
        conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            got = conn.execute(sa.text(self.acquire_sql), {"key": self._key(conn)}).scalar()
        except BaseException:
            conn.close()
            raise
        if not got:
            conn.close()
            return False
        self._conn, self.held = conn, True
        return True

    def release(self) -> None:
        conn, self._conn, self.held = self._conn, None, False
        if conn is None:
            return
        try:
            conn.execute(sa.text(self.release_sql), {"key": self._key(conn)})
        except Exception:  # noqa: BLE001 - closing the session below frees the lock anyway
            logger.warning("could not release the lock of job %s; dropping its connection", self.name)
            conn.invalidate()
        finally:
            conn.close()


class AdvisoryLockLease(_SessionLockLease):
    """PostgreSQL: ``pg_try_advisory_lock`` on a 64-bit key derived from the job name (per database)."""

    acquire_sql = "SELECT pg_try_advisory_lock(:key)"
    release_sql = "SELECT pg_advisory_unlock(:key)"

    def _key(self, conn: Connection) -> int:
        digest = hashlib.sha256(f"dynamics_sync:{self.name}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)


class NamedLockLease(_SessionLockLease):
    """MariaDB/MySQL: ``GET_LOCK(name, 0)``. Named locks are server-wide, so the name includes the database."""

    acquire_sql = "SELECT GET_LOCK(:key, 0)"
    release_sql = "SELECT RELEASE_LOCK(:key)"

    def _key(self, conn: Connection) -> str:
        database = conn.execute(sa.text("SELECT DATABASE()")).scalar() or ""
        # MySQL caps lock names at 64 characters.
        return "dynamics_sync:" + hashlib.sha256(f"{database}:{self.name}".encode()).hexdigest()[:40]


class RowLease(Lease):
    """A lease in the job row: taken when free or expired, valid for ``seconds``.

    Used on SQLite (which has no server locks); works on every database. A
    holder that dies keeps the row until ``lease_expires_at``, then anyone may
    take it over.
    """

    def __init__(self, engine: Engine, name: str, *, clock: Clock, seconds: int, holder: str | None = None) -> None:
        super().__init__(engine, name)
        self.clock = clock
        self.seconds = seconds
        self.holder = holder or default_holder()

    def _mine(self) -> sa.ColumnElement[bool]:
        return sa.and_(job_table.c.name == self.name, job_table.c.holder == self.holder)

    def acquire(self) -> bool:
        now = self.clock()
        with self.engine.begin() as conn:
            ensure_job_row(conn, self.name)
        with self.engine.begin() as conn:
            taken = conn.execute(
                sa.update(job_table)
                .where(
                    job_table.c.name == self.name,
                    sa.or_(
                        job_table.c.holder.is_(None),
                        job_table.c.holder == self.holder,
                        job_table.c.lease_expires_at.is_(None),
                        job_table.c.lease_expires_at <= now,
                    ),
                )
                .values(holder=self.holder, lease_expires_at=now + dt.timedelta(seconds=self.seconds))
            ).rowcount
        self.held = taken == 1
        return self.held

    def renew(self) -> None:
        """Push the expiry back; raises :class:`LeaseLost` if another process took the lease over."""
        if not self.held:
            raise LeaseLost(f"lease of job {self.name!r} is not held")
        expires = self.clock() + dt.timedelta(seconds=self.seconds)
        with self.engine.begin() as conn:
            renewed = conn.execute(sa.update(job_table).where(self._mine()).values(lease_expires_at=expires)).rowcount
        if renewed != 1:
            self.held = False
            raise LeaseLost(f"lease of job {self.name!r} was taken over by another process")

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        with self.engine.begin() as conn:
            conn.execute(sa.update(job_table).where(self._mine()).values(holder=None, lease_expires_at=None))


def make_lease(engine: Engine, name: str, *, clock: Clock, seconds: int, holder: str | None = None) -> Lease:
    """The lease kind of the engine's database for job ``name``."""
    family = dialect_family(engine)
    if family == "postgresql":
        return AdvisoryLockLease(engine, name)
    if family == "mysql":
        return NamedLockLease(engine, name)
    return RowLease(engine, name, clock=clock, seconds=seconds, holder=holder)
