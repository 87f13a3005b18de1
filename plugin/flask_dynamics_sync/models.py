"""Tables of the plugin, all prefixed ``dynamics_sync_``.

The models live on their own :class:`~sqlalchemy.MetaData` (:data:`metadata`),
not on the host's ``db.Model``: the host's own migrations never see them, and
the plugin ships its own (``flask dynamics-sync db upgrade``). They use the
host's engine and session through Flask-SQLAlchemy.

All times are naive UTC. On MariaDB/MySQL they keep microseconds (``DATETIME(6)``).
"""

from __future__ import annotations

import datetime as dt
import typing as t

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

TABLE_PREFIX = "dynamics_sync_"

#: Column sizes; the recording API validates against them before writing.
OBJECT_TYPE_LENGTH = 64
RECORD_ID_LENGTH = 128
LABEL_LENGTH = 255
ERROR_CODE_LENGTH = 32
ERROR_MESSAGE_LENGTH = 2000
CLAIM_TOKEN_LENGTH = 32
EMAIL_SUBJECT_LENGTH = 998

UtcDateTime = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
"""Naive UTC timestamp with microseconds on every backend."""

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
"""Auto-increment key: BIGINT, but INTEGER on SQLite where only that auto-increments."""

LongText = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")
"""Text of any length (MariaDB's TEXT stops at 64 KB)."""

#: Table options: utf8mb4 on MariaDB/MySQL whatever the server default.
TABLE_OPTIONS = {"mysql_charset": "utf8mb4", "mariadb_charset": "utf8mb4"}

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class Base(DeclarativeBase):
    """Declarative base of the plugin's models (its own metadata)."""

    metadata = metadata


class QueueItem(Base):
    """A record waiting to be synced: one row per object type, record id and direction.

    Changes to a waiting record coalesce into its row: an update on a pending
    insert stays one pending insert. ``queued_at`` is when the record started
    waiting and never moves while it waits, so the oldest pending insert and
    update are exact. ``claim_token``/``claimed_until`` mark a record handed to
    a worker; ``dirty_since`` is set when the record changes while in flight.
    """

    __tablename__ = TABLE_PREFIX + "queue"
    __table_args__ = (
        sa.UniqueConstraint("object_type", "record_id", "direction"),
        # Backlog counts per object and operation (and direction: the rollup's snapshots,
        # the Prometheus gauges) are index-only ranges; the oldest pending record of an
        # object and operation is one seek per direction.
        sa.Index(None, "state", "object_type", "operation", "direction", "queued_at"),
        # Claim: the oldest claimable records first.
        sa.Index(None, "state", "queued_at"),
        TABLE_OPTIONS,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    object_type: Mapped[str] = mapped_column(sa.String(OBJECT_TYPE_LENGTH))
    record_id: Mapped[str] = mapped_column(sa.String(RECORD_ID_LENGTH))
    direction: Mapped[str] = mapped_column(sa.String(16))
    operation: Mapped[str] = mapped_column(sa.String(16))
    state: Mapped[str] = mapped_column(sa.String(16))
    label: Mapped[str | None] = mapped_column(sa.String(LABEL_LENGTH))
    queued_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    changed_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    change_count: Mapped[int] = mapped_column(sa.Integer, default=1)
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    not_before: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    claim_token: Mapped[str | None] = mapped_column(sa.String(CLAIM_TOKEN_LENGTH))
    claimed_until: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    dirty_since: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class SyncEvent(Base):
    """One record synced: append-only, rolled up into :class:`HourlyThroughput`."""

    __tablename__ = TABLE_PREFIX + "event"
    __table_args__ = (
        # The rollup reads a time range and groups; covering it avoids table lookups.
        sa.Index(None, "synced_at", "object_type", "operation", "direction", "latency_ms"),
        TABLE_OPTIONS,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    object_type: Mapped[str] = mapped_column(sa.String(OBJECT_TYPE_LENGTH))
    record_id: Mapped[str] = mapped_column(sa.String(RECORD_ID_LENGTH))
    operation: Mapped[str] = mapped_column(sa.String(16))
    direction: Mapped[str] = mapped_column(sa.String(16))
    synced_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    latency_ms: Mapped[int | None] = mapped_column(sa.Integer)


class HourlyThroughput(Base):
    """Records synced (and failed) per hour, object, operation and direction.

    Recomputed whole from the raw events by the rollup job; views and charts
    read only this table.
    """

    __tablename__ = TABLE_PREFIX + "hourly"
    __table_args__ = (TABLE_OPTIONS,)

    hour: Mapped[dt.datetime] = mapped_column(UtcDateTime, primary_key=True)
    object_type: Mapped[str] = mapped_column(sa.String(OBJECT_TYPE_LENGTH), primary_key=True)
    operation: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    direction: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    synced_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    failed_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    latency_sum_ms: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    latency_max_ms: Mapped[int | None] = mapped_column(sa.Integer)
    computed_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class BacklogSnapshot(Base):
    """The backlog per object, operation and direction at a point in time.

    Taken by the scheduled rollup job; the status view compares the backlog
    with the one six hours ago (*Growing* or *Normal*).
    """

    __tablename__ = TABLE_PREFIX + "backlog_snapshot"
    __table_args__ = (TABLE_OPTIONS,)

    taken_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, primary_key=True)
    object_type: Mapped[str] = mapped_column(sa.String(OBJECT_TYPE_LENGTH), primary_key=True)
    operation: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    direction: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    pending_count: Mapped[int] = mapped_column(sa.Integer)


#: Columns the Sync Errors search looks in, and PostgreSQL's trigram index over them.
ERROR_SEARCH_COLUMNS = ("record_id", "record_label", "error_code", "error_message")
ERROR_SEARCH_INDEX = "ix_dynamics_sync_error_search"
#: Named explicitly: the conventional name would exceed the 63/64 characters databases allow.
ERROR_GROUP_INDEX = "ix_dynamics_sync_error_groups"


class SyncError(Base):
    """One failed sync attempt, with what Dynamics (Dataverse) answered."""

    __tablename__ = TABLE_PREFIX + "error"
    __table_args__ = (
        sa.Index(None, "occurred_at"),
        sa.Index(None, "object_type", "occurred_at"),
        sa.Index(None, "error_code", "occurred_at"),
        sa.Index(None, "state", "occurred_at"),
        sa.Index(None, "object_type", "record_id", "direction", "state"),
        # Groups of open errors (one cause each) and their "show these" list, read from the index alone.
        sa.Index(ERROR_GROUP_INDEX, "state", "direction", "object_type", "error_code", "occurred_at"),
        # Search: a record id typed alone; on PostgreSQL, substrings through trigrams.
        sa.Index(None, "record_id"),
        sa.Index(
            ERROR_SEARCH_INDEX,
            *ERROR_SEARCH_COLUMNS,
            postgresql_using="gin",
            postgresql_ops=dict.fromkeys(ERROR_SEARCH_COLUMNS, "gin_trgm_ops"),
        ).ddl_if(dialect="postgresql"),
        TABLE_OPTIONS,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    object_type: Mapped[str] = mapped_column(sa.String(OBJECT_TYPE_LENGTH))
    record_id: Mapped[str] = mapped_column(sa.String(RECORD_ID_LENGTH))
    record_label: Mapped[str | None] = mapped_column(sa.String(LABEL_LENGTH))
    operation: Mapped[str] = mapped_column(sa.String(16))
    direction: Mapped[str] = mapped_column(sa.String(16))
    error_code: Mapped[str] = mapped_column(sa.String(ERROR_CODE_LENGTH))
    error_message: Mapped[str] = mapped_column(sa.String(ERROR_MESSAGE_LENGTH))
    occurred_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    attempt: Mapped[int] = mapped_column(sa.Integer, default=1)
    state: Mapped[str] = mapped_column(sa.String(16))
    state_changed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class JobState(Base):
    """A scheduled job's lease and bookkeeping: one row per job name.

    The lease (``holder``, ``lease_expires_at``) lets exactly one process run a
    job across workers; an expired lease can be taken over. ``watermark`` is
    the job's progress (e.g. the last hour the rollup has completed).
    """

    __tablename__ = TABLE_PREFIX + "job"
    __table_args__ = (TABLE_OPTIONS,)

    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    holder: Mapped[str | None] = mapped_column(sa.String(128))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    last_started_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    last_finished_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    last_status: Mapped[str | None] = mapped_column(sa.String(16))
    last_message: Mapped[str | None] = mapped_column(sa.String(500))
    next_run_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    watermark: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class WorkerState(Base):
    """One sync worker process's figures, written after each of its cycles.

    Every worker process (on any machine) keeps its own row, so the figures of
    all of them add up in the status JSON and the Prometheus metrics without any
    other channel between processes. Counters only grow while the row lives.
    """

    __tablename__ = TABLE_PREFIX + "worker"
    __table_args__ = (sa.Index(None, "heartbeat_at"), TABLE_OPTIONS)

    worker_id: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    started_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    heartbeat_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    stopped_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    requests: Mapped[int] = mapped_column(sa.BigInteger)
    throttled: Mapped[int] = mapped_column(sa.BigInteger)
    retries: Mapped[int] = mapped_column(sa.BigInteger)
    token_refreshes: Mapped[int] = mapped_column(sa.BigInteger)
    records_synced: Mapped[int] = mapped_column(sa.BigInteger)
    records_failed: Mapped[int] = mapped_column(sa.BigInteger)
    records_per_second: Mapped[float] = mapped_column(sa.Double)


class ChangeTrackingState(Base):
    """Where the change-tracking read of one mapped table stands, shared by every worker.

    ``link`` is the next URL to read: an ``@odata.nextLink`` while a read is
    under way, then the ``@odata.deltaLink`` (with a ``$deltatoken``) of the
    last read. None: the next read is a full one (the first, or after the token
    expired).
    """

    __tablename__ = TABLE_PREFIX + "change_tracking"
    __table_args__ = (TABLE_OPTIONS,)

    object_type: Mapped[str] = mapped_column(sa.String(OBJECT_TYPE_LENGTH), primary_key=True)
    link: Mapped[str | None] = mapped_column(sa.Text)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    full_reads: Mapped[int] = mapped_column(sa.Integer, default=0)
    """Full reads started so far (the first, and one per expired token)."""


class PendingEmail(Base):
    """A notification e-mail not sent yet (:mod:`.notifications`).

    Written in the transaction that decides to send it (the alert check moves its
    watermark in the same one), deleted once the SMTP server took it: an e-mail
    is sent at least once, and never again after it was sent. ``claimed_until``
    keeps two senders from sending one e-mail at once.
    """

    __tablename__ = TABLE_PREFIX + "pending_email"
    __table_args__ = (TABLE_OPTIONS,)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    subject: Mapped[str] = mapped_column(sa.String(EMAIL_SUBJECT_LENGTH))
    body: Mapped[str] = mapped_column(LongText)
    claimed_until: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class Pause(Base):
    """An object and direction an operator paused: nothing is sent or read for it until resumed.

    The queue keeps growing meanwhile; on resume it drains in order. A table,
    so that every worker on every machine sees it and it survives restarts.
    """

    __tablename__ = TABLE_PREFIX + "pause"
    __table_args__ = (TABLE_OPTIONS,)

    object_type: Mapped[str] = mapped_column(sa.String(OBJECT_TYPE_LENGTH), primary_key=True)
    direction: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    paused_by: Mapped[str | None] = mapped_column(sa.String(LABEL_LENGTH))
    paused_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


# Core tables, for SQL expressions. (Declarative types ``__table__`` as any FromClause.)
queue_table = t.cast(sa.Table, QueueItem.__table__)
event_table = t.cast(sa.Table, SyncEvent.__table__)
error_table = t.cast(sa.Table, SyncError.__table__)
hourly_table = t.cast(sa.Table, HourlyThroughput.__table__)
snapshot_table = t.cast(sa.Table, BacklogSnapshot.__table__)
job_table = t.cast(sa.Table, JobState.__table__)
change_tracking_table = t.cast(sa.Table, ChangeTrackingState.__table__)
pending_email_table = t.cast(sa.Table, PendingEmail.__table__)
pause_table = t.cast(sa.Table, Pause.__table__)

# pg_trgm is a trusted extension (PostgreSQL 13+): the database owner can create it.
sa.event.listen(
    error_table,
    "before_create",
    sa.DDL("CREATE EXTENSION IF NOT EXISTS pg_trgm").execute_if(dialect="postgresql"),  # type: ignore[no-untyped-call]
)
