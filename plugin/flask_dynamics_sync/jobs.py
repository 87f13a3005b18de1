"""Job rows (:class:`~flask_dynamics_sync.models.JobState`): the jobs' names, their progress and how each run went.

``last_started_at``, ``last_finished_at``, ``last_status``, ``last_message``,
``next_run_at`` and ``watermark`` are read by the status view through
:func:`job_states`; :mod:`.leases` decides who may run a job.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import logging
import typing as t
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Engine

from .clock import Clock
from .database import dialect_family
from .models import job_table

logger = logging.getLogger(__name__)

_R = t.TypeVar("_R")


class JobName(str, enum.Enum):
    """The plugin's jobs, as named in their rows, the scheduler and the CLI."""

    ROLLUP = "rollup"
    REFRESH = "refresh"
    PRUNE = "prune"
    NOTIFY = "notify"
    ALERTS = "alerts"

    def __str__(self) -> str:
        return str(self.value)


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
