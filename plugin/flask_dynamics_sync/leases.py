"""Job rows (:class:`~flask_dynamics_sync.models.JobState`): who may run a job, and how it went.

Two things live here:

* **Leases** — exactly one process runs a scheduled job, whatever the number of
  workers. Each database uses what it has:

  - PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``),
  - MariaDB/MySQL: a named lock (``GET_LOCK``), named after the database so two
    databases on one server never share it,
  - SQLite: a lease row (``holder``, ``lease_expires_at``) that expires after
    ``DYNAMICS_SYNC_LEASE_SECONDS``.

  A dead holder cannot keep a lock: the server drops a session's advisory and
  named locks when its connection goes away, and a lease row simply expires.

* **Bookkeeping** — ``last_started_at``, ``last_finished_at``, ``last_status``,
  ``last_message``, ``next_run_at`` and ``watermark``, read by the status view
  through :func:`job_states`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import logging
import os
import socket
import typing as t
import uuid
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Engine

from .models import JobState
from .recorder import dialect_family

logger = logging.getLogger(__name__)

job_table = JobState.__table__

_R = t.TypeVar("_R")
Clock = Callable[[], dt.datetime]


class Transaction(t.Protocol):
    """Runs a unit of work in a transaction of its own (``Recorder.transaction``: retried on deadlock)."""

    def __call__(self, work: Callable[[Connection], _R]) -> _R: ...


class JobStatus(str, enum.Enum):
    """``last_status`` of a job row."""

    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"


#: Longest ``last_message`` the column holds.
MESSAGE_LENGTH = 500


@dataclasses.dataclass(frozen=True)
class JobStateInfo:
    """One job's row, as the status view shows it. Times are naive UTC."""

    name: str
    last_started_at: dt.datetime | None
    last_finished_at: dt.datetime | None
    last_status: str | None
    last_message: str | None
    next_run_at: dt.datetime | None
    """When the scheduler runs the job next (written by the process that ran it last)."""
    watermark: dt.datetime | None
    """The job's progress; for ``rollup``: every hour before it is final."""
    holder: str | None
    """The lease holder (SQLite only; PostgreSQL and MariaDB hold server locks instead)."""
    lease_expires_at: dt.datetime | None


def job_states(engine: Engine) -> dict[str, JobStateInfo]:
    """Every job row by name (a handful of rows): ``rollup``, ``refresh``, ``prune``, ``notify``, ``alerts``."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(job_table).order_by(job_table.c.name)).all()
    return {row.name: _info(row) for row in rows}


def _info(row: sa.Row[t.Any]) -> JobStateInfo:
    return JobStateInfo(**{field.name: getattr(row, field.name) for field in dataclasses.fields(JobStateInfo)})


def read_job(conn: Connection, name: str) -> JobStateInfo | None:
    """One job row, or ``None`` if the job never ran."""
    row = conn.execute(sa.select(job_table).where(job_table.c.name == name)).first()
    return None if row is None else _info(row)


def ensure_job_row(conn: Connection, name: str) -> None:
    """Create the job's row if it is missing; safe when several processes do it at once.

    On InnoDB, ``INSERT IGNORE`` of an existing row takes a shared lock on it:
    commit before updating the row, or two transactions upgrading their shared
    locks deadlock. Hence callers run it in a transaction of its own.
    """
    family = dialect_family(conn)
    if family == "mysql":
        stmt: sa.Executable = sa.insert(job_table).prefix_with("IGNORE").values(name=name)
    elif family == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt = pg_insert(job_table).values(name=name).on_conflict_do_nothing()
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(job_table).values(name=name).on_conflict_do_nothing()
    conn.execute(stmt)


def lock_job_row(conn: Connection, name: str) -> None:
    """Hold the job row's write lock until the transaction ends (creating the row if needed).

    A no-op ``UPDATE`` is the one statement that locks on every backend: a row
    lock on PostgreSQL and InnoDB, the database write lock on SQLite (taken
    before anything is read, so the transaction sees the latest data).
    """
    lock = sa.update(job_table).where(job_table.c.name == name).values(holder=job_table.c.holder)
    if conn.execute(lock).rowcount == 0:
        ensure_job_row(conn, name)  # first run ever: rare, and a deadlock here is retried by the caller
        conn.execute(lock)


def set_watermark(conn: Connection, name: str, watermark: dt.datetime | None) -> None:
    """Store a job's progress (inside the transaction whose work it describes)."""
    conn.execute(sa.update(job_table).where(job_table.c.name == name).values(watermark=watermark))


# -- bookkeeping -----------------------------------------------------------------


def _update(engine: Engine, name: str, **values: t.Any) -> None:
    update = sa.update(job_table).where(job_table.c.name == name).values(**values)
    with engine.begin() as conn:
        if conn.execute(update).rowcount == 1:
            return
    with engine.begin() as conn:
        ensure_job_row(conn, name)
    with engine.begin() as conn:
        conn.execute(update)


def _short(message: str) -> str:
    return message if len(message) <= MESSAGE_LENGTH else message[: MESSAGE_LENGTH - 1] + "…"


_UNCHANGED: t.Any = object()


def record_run(
    engine: Engine,
    name: str,
    clock: Clock,
    work: Callable[[], _R],
    *,
    describe: Callable[[_R], str] = str,
    next_run_at: dt.datetime | None = _UNCHANGED,
) -> _R:
    """Run ``work`` with the job row telling the story: started, then ok or failed with a message.

    The exception of a failed run is recorded, then raised again.
    ``next_run_at`` is written at the end when given (the scheduler knows it; the CLI does not).
    """
    _update(
        engine, name, last_started_at=clock(), last_status=JobStatus.RUNNING.value, last_message=None
    )
    finished: dict[str, t.Any] = {} if next_run_at is _UNCHANGED else {"next_run_at": next_run_at}
    try:
        result = work()
    except BaseException as exc:
        message = f"{type(exc).__name__}: {exc}"
        try:
            _update(
                engine,
                name,
                last_finished_at=clock(),
                last_status=JobStatus.FAILED.value,
                last_message=_short(message),
                **finished,
            )
        except Exception:  # noqa: BLE001 - the original error matters more
            logger.exception("could not record the failure of job %s", name)
        raise
    _update(
        engine,
        name,
        last_finished_at=clock(),
        last_status=JobStatus.OK.value,
        last_message=_short(describe(result)),
        **finished,
    )
    return result


# -- leases ----------------------------------------------------------------------


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
