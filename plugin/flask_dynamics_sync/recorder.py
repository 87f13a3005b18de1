"""The recording API's implementation: the queue (outbox), successes and failures.

The host's sync engine calls these through :class:`~flask_dynamics_sync.DynamicsSync`.
Every argument is validated before any SQL runs, so misuse raises a clear
``ValueError``/``TypeError`` and leaves the host's transaction untouched.

* ``enqueue`` writes into the caller's session (the host's transaction): the
  change and its queue row commit or roll back together. It never commits.
* ``claim``, ``mark_synced`` and ``mark_failed`` are worker operations: each
  runs in a short transaction of its own on the engine.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import typing as t
import uuid
from collections import defaultdict
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from sqlalchemy.orm import scoped_session

from .clock import Clock
from .config import Settings
from .database import dialect_family
from .database import run_transaction
from .errors import ClaimLostError
from .models import ERROR_CODE_LENGTH
from .models import ERROR_MESSAGE_LENGTH
from .models import LABEL_LENGTH
from .models import RECORD_ID_LENGTH
from .models import QueueItem
from .models import SyncError
from .models import SyncEvent
from .pauses import not_paused
from .types import Change
from .types import ClaimedRecord
from .types import Direction
from .types import ErrorState
from .types import Operation
from .types import QueueState
from .types import SyncOutcome

queue = QueueItem.__table__
events = SyncEvent.__table__
errors = SyncError.__table__

_T = t.TypeVar("_T")
_MAX_BACKOFF_SECONDS = 3600
_MAX_CLAIM_BATCH = 10_000
#: The longest claim lease: a year (a claim's expiry must stay a valid date).
_MAX_LEASE_SECONDS = 365 * 24 * 3600


# -- validation -------------------------------------------------------------------


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    return value


def _clean_text(value: str, limit: int) -> str:
    """Make free text storable everywhere: no NUL, no lone surrogate, at most ``limit`` chars."""
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    if not value.isascii():
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value[:limit]


def storable(text: str) -> bool:
    """Does ``text`` reach every database unchanged (no NUL byte, no lone surrogate)?

    What a URL or a form brings is compared with stored values only if it is:
    PostgreSQL refuses NUL in text, and nothing stored holds one.
    """
    return "\x00" not in text and (text.isascii() or text == text.encode("utf-8", "replace").decode("utf-8"))


def validate_object_type(settings: Settings, object_type: object) -> str:
    """Return ``object_type`` if it is a configured object type."""
    object_type = _text(object_type, "object_type")
    if object_type not in settings.objects:
        known = ", ".join(settings.objects)
        raise ValueError(
            f"unknown object type {object_type!r}; configured in DYNAMICS_SYNC_OBJECTS: {known}"
        )
    return object_type


def validate_record_id(record_id: object) -> str:
    """Return the record id as text; ints and UUIDs are accepted and converted."""
    if type(record_id) is str:
        text = record_id
    elif isinstance(record_id, bool) or not isinstance(record_id, (str, int, uuid.UUID)):
        raise TypeError(f"record_id must be a str, int or UUID, not {type(record_id).__name__}")
    else:
        text = str(record_id)
    if not text:
        raise ValueError("record_id must not be empty")
    if len(text) > RECORD_ID_LENGTH:
        raise ValueError(f"record_id is {len(text)} characters long; at most {RECORD_ID_LENGTH} fit")
    if not storable(text):
        raise ValueError("record_id contains a NUL byte or an unencodable character")
    return text


# str enums hash like their values: one lookup accepts "insert" and Operation.INSERT alike.
_OPERATIONS: dict[str, Operation] = {o.value: o for o in Operation}
_DIRECTIONS: dict[str, Direction] = {d.value: d for d in Direction}
# The same as plain strings: drivers must never see enum members (psycopg dumps an Enum by name).
_OPERATION_VALUES: dict[str, str] = {o.value: o.value for o in Operation}
_DIRECTION_VALUES: dict[str, str] = {d.value: d.value for d in Direction}
_PENDING = QueueState.PENDING.value


def _fast_value(values: dict[str, str], given: object) -> str | None:
    """The hot path of validation: a known value, or None to take the validator's slow path."""
    return values.get(given) if isinstance(given, str) else None


_E = t.TypeVar("_E", Operation, Direction)


def _validate_choice(value: object, what: str, choices: dict[str, _E]) -> _E:
    found = choices.get(_text(value, what))
    if found is None:
        raise ValueError(f"unknown {what} {value!r}; expected one of: {', '.join(choices)}")
    return found


def validate_operation(operation: object) -> Operation:
    """Return ``operation`` as an :class:`Operation`."""
    return _validate_choice(operation, "operation", _OPERATIONS)


def validate_direction(direction: object) -> Direction:
    """Return ``direction`` as a :class:`Direction`."""
    return _validate_choice(direction, "direction", _DIRECTIONS)


def validate_label(label: object) -> str | None:
    """Return a storable label (display text: cleaned and truncated, never rejected for length)."""
    if label is None:
        return None
    return _clean_text(_text(label, "label"), LABEL_LENGTH)


def validate_error_code(code: object) -> str:
    """Return the error code; it must be short printable text such as ``0x80040237``.

    No control character, line break or other unprintable character: the code
    goes into e-mail subjects and filter URLs as it is.
    """
    code = _text(code, "code").strip()
    if not code:
        raise ValueError("code must not be empty")
    if len(code) > ERROR_CODE_LENGTH:
        raise ValueError(f"code is {len(code)} characters long; at most {ERROR_CODE_LENGTH} fit")
    if not code.isprintable():
        bad = next(ch for ch in code if not ch.isprintable())
        raise ValueError(f"code must be printable text; it holds {bad!r} (U+{ord(bad):04X})")
    return code


def validate_error_message(message: object) -> str:
    """Return the message, truncated to its column: a long message never fails a write."""
    return _clean_text(_text(message, "message"), ERROR_MESSAGE_LENGTH)


def validate_claimed(records: object) -> list[ClaimedRecord]:
    """Accept one :class:`ClaimedRecord` or an iterable of them."""
    if isinstance(records, ClaimedRecord):
        return [records]
    if isinstance(records, (str, bytes)) or not isinstance(records, Iterable):
        raise TypeError("expected a ClaimedRecord or an iterable of ClaimedRecord")
    result = list(records)
    for record in result:
        if not isinstance(record, ClaimedRecord):
            raise TypeError(f"expected ClaimedRecord, got {type(record).__name__}")
    return result


# -- SQL --------------------------------------------------------------------------


def _const(value: str) -> sa.ColumnElement[str]:
    """An SQL string literal for one of the plugin's own constants (never user input)."""
    assert value.isidentifier()
    return sa.literal_column(f"'{value}'", sa.String)


def upsert_queue_statement(family: str) -> sa.Insert:
    """``INSERT`` into the queue that coalesces into an existing row for the same record.

    On conflict (same object type, record id and direction): an insert absorbs
    updates; a parked row waits again from now; a row in flight is marked dirty
    so that ``mark_synced`` keeps the newer change. MariaDB evaluates the
    assignments left to right with the new values, so ``state`` comes last.
    """
    if family == "mysql":
        from sqlalchemy.dialects.mysql import insert as mysql_insert

        stmt = mysql_insert(queue)
        new = stmt.inserted
    elif family == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt = pg_insert(queue)
        new = stmt.excluded
    elif family == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(queue)
        new = stmt.excluded
    else:  # pragma: no cover - guarded by the extension
        raise NotImplementedError(f"unsupported database dialect {family!r}")

    # Constants are inlined: PyMySQL's executemany cannot bind parameters after VALUES.
    parked = queue.c.state == _const(QueueState.PARKED.value)
    insert = _const(Operation.INSERT.value)
    assignments: list[tuple[sa.Column[t.Any], t.Any]] = [
        (
            queue.c.operation,
            sa.case(
                (sa.or_(queue.c.operation == insert, new.operation == insert), insert),
                else_=_const(Operation.UPDATE.value),
            ),
        ),
        (queue.c.queued_at, sa.case((parked, new.queued_at), else_=queue.c.queued_at)),
        (queue.c.not_before, sa.case((parked, new.not_before), else_=queue.c.not_before)),
        (
            queue.c.dirty_since,
            sa.case(
                (
                    sa.and_(queue.c.claim_token.is_not(None), queue.c.dirty_since.is_(None)),
                    new.changed_at,
                ),
                else_=queue.c.dirty_since,
            ),
        ),
        (queue.c.label, sa.func.coalesce(new.label, queue.c.label)),
        (queue.c.changed_at, new.changed_at),
        (queue.c.change_count, queue.c.change_count + sa.literal_column("1", sa.Integer)),
        (queue.c.state, _const(QueueState.PENDING.value)),
    ]
    if family == "mysql":
        return stmt.on_duplicate_key_update([(column.name, value) for column, value in assignments])
    return stmt.on_conflict_do_update(
        index_elements=[queue.c.object_type, queue.c.record_id, queue.c.direction],
        set_={column.name: value for column, value in assignments},
    )


@dataclasses.dataclass(frozen=True)
class _DriverUpsert:
    """The queue upsert compiled once per dialect and run with driver-level parameters.

    The outbox is on the host's hot write path (every tracked commit, every
    batch): going through the driver directly costs a fraction of SQLAlchemy's
    per-row parameter processing, which still converts the timestamps here.
    """

    sql: str
    keys: tuple[str, ...]
    positional: bool
    processors: tuple[tuple[int, Callable[[t.Any], t.Any]], ...]

    @classmethod
    def compile(cls, stmt: sa.Insert, dialect: sa.Dialect, row_keys: tuple[str, ...]) -> _DriverUpsert:
        compiled = stmt.compile(dialect=dialect, column_keys=list(row_keys))
        keys = tuple(compiled.positiontup) if compiled.positional else tuple(compiled.binds)
        if sorted(keys) != sorted(row_keys):  # pragma: no cover - a dialect that renames parameters
            raise RuntimeError(f"unexpected upsert parameters {keys} for {dialect.name}")
        processors = []
        for index, key in enumerate(keys):
            processor = compiled.binds[key].type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                processors.append((index, processor))
        return cls(str(compiled), keys, bool(compiled.positional), tuple(processors))

    def params(self, rows: Sequence[dict[str, t.Any]]) -> list[t.Any]:
        converted: dict[t.Any, t.Any] = {}  # a batch shares its timestamps: convert each once
        result: list[t.Any] = []
        for row in rows:
            values = [row[key] for key in self.keys]
            for index, processor in self.processors:
                value = values[index]
                if value is not None:
                    processed = converted.get((index, value))
                    if processed is None:
                        processed = converted[(index, value)] = processor(value)
                    values[index] = processed
            result.append(tuple(values) if self.positional else dict(zip(self.keys, values)))
        return result


#: The latency column is an INTEGER: a record that waited longer (24.8 days, e.g. parked
#: and retried weeks later) is recorded with this value instead of failing mark_synced.
MAX_LATENCY_MS = 2**31 - 1


def _latency_ms(now: dt.datetime, queued_at: dt.datetime) -> int:
    return min(MAX_LATENCY_MS, max(0, int((now - queued_at).total_seconds() * 1000)))


def insert_events(
    conn: Connection, synced: Sequence[tuple[str, str, str, str, dt.datetime | None]], now: dt.datetime
) -> None:
    """Record sync events: ``(object_type, record_id, operation, direction, since)`` each, where
    ``since`` is when the record started waiting (its latency; None: unknown)."""
    if not synced:
        return
    conn.execute(
        sa.insert(events),
        [
            {
                "object_type": object_type,
                "record_id": record_id,
                "operation": operation,
                "direction": direction,
                "synced_at": now,
                "latency_ms": None if since is None else _latency_ms(now, since),
            }
            for object_type, record_id, operation, direction, since in synced
        ],
    )


def resolve_errors(conn: Connection, records: Sequence[tuple[str, str, str]], now: dt.datetime) -> None:
    """Resolve the open and retried errors of these ``(object_type, record_id, direction)`` records."""
    if not records:
        return
    conn.execute(
        sa.update(errors)
        .where(
            errors.c.object_type == sa.bindparam("o"),
            errors.c.record_id == sa.bindparam("r"),
            errors.c.direction == sa.bindparam("d"),
            # not IN (…): an expanding parameter cannot go through executemany
            sa.or_(
                errors.c.state == _const(ErrorState.OPEN.value),
                errors.c.state == _const(ErrorState.RETRIED.value),
            ),
        )
        .values(state=ErrorState.RESOLVED.value, state_changed_at=now),
        [{"o": o, "r": r, "d": d} for o, r, d in records],
    )


def insert_error(
    conn: Connection,
    object_type: str,
    record_id: str,
    label: str | None,
    operation: str,
    direction: str,
    code: str,
    message: str,
    now: dt.datetime,
    attempt: int,
) -> None:
    """Record one failed attempt as an open sync error (``code`` and ``message`` validated)."""
    conn.execute(
        sa.insert(errors).values(
            object_type=object_type,
            record_id=record_id,
            record_label=label,
            operation=operation,
            direction=direction,
            error_code=code,
            error_message=message,
            occurred_at=now,
            attempt=attempt,
            state=ErrorState.OPEN.value,
        )
    )


class Recorder:
    """Queue, success and failure recording for one application."""

    def __init__(
        self,
        settings: Settings,
        get_engine: Callable[[], Engine],
        get_session: Callable[[], Session],
        clock: Clock,
    ) -> None:
        self.settings = settings
        self._get_engine = get_engine
        self._get_session = get_session
        self._clock = clock
        self._upserts: dict[str, sa.Insert] = {}
        self._driver_upserts: dict[str, _DriverUpsert] = {}

    def transaction(self, work: Callable[[Connection], _T]) -> _T:
        """Run ``work`` in a transaction of its own on the host's engine, retried on deadlock."""
        return run_transaction(self._get_engine(), work)

    # -- enqueue ----------------------------------------------------------------

    def queue_row(self, change: Change, now: dt.datetime) -> dict[str, t.Any]:
        """Validate one change and return its queue row values (plain ``str``, never enums)."""
        direction = change.direction if change.direction is not None else self.settings.default_direction
        return {
            "object_type": validate_object_type(self.settings, change.object_type),
            "record_id": validate_record_id(change.record_id),
            "operation": _fast_value(_OPERATION_VALUES, change.operation) or validate_operation(change.operation).value,
            "direction": _fast_value(_DIRECTION_VALUES, direction) or validate_direction(direction).value,
            "state": _PENDING,
            "label": validate_label(change.label),
            "queued_at": now,
            "changed_at": now,
            "not_before": now,
            "change_count": 1,
            "attempts": 0,
        }

    def upsert(self, family: str) -> sa.Insert:
        """The cached coalescing upsert for a dialect family."""
        stmt = self._upserts.get(family)
        if stmt is None:
            stmt = self._upserts[family] = upsert_queue_statement(family)
        return stmt

    def enqueue_rows(self, bind: Session | Connection, rows: Sequence[dict[str, t.Any]]) -> None:
        """Write validated queue rows (from :meth:`queue_row`) through ``bind``, the caller's transaction."""
        if not rows:
            return
        conn = bind.connection() if isinstance(bind, (Session, scoped_session)) else bind
        driver_upsert = self._driver_upserts.get(conn.dialect.name)
        if driver_upsert is None:
            driver_upsert = self._driver_upserts[conn.dialect.name] = _DriverUpsert.compile(
                self.upsert(dialect_family(conn)), conn.dialect, tuple(rows[0])
            )
        params = driver_upsert.params(rows)
        conn.exec_driver_sql(driver_upsert.sql, params[0] if len(params) == 1 else params)

    def enqueue_many(self, changes: Iterable[Change], session: Session | Connection | None) -> int:
        now = self._clock()
        rows = []
        for change in changes:
            if not isinstance(change, Change):
                raise TypeError(f"expected Change, got {type(change).__name__}")
            rows.append(self.queue_row(change, now))
        self.enqueue_rows(session if session is not None else self._get_session(), rows)
        return len(rows)

    # -- claim ------------------------------------------------------------------

    def claim(
        self,
        limit: int,
        *,
        object_types: Sequence[str] | None,
        direction: Direction | str | None,
        lease_seconds: int | None,
    ) -> list[ClaimedRecord]:
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise TypeError(f"limit must be an int, not {type(limit).__name__}")
        if not 1 <= limit <= _MAX_CLAIM_BATCH:
            raise ValueError(f"limit must be between 1 and {_MAX_CLAIM_BATCH}, got {limit}")
        if object_types is not None:
            if isinstance(object_types, str):
                raise TypeError("object_types must be a sequence of names, not a str")
            object_types = [validate_object_type(self.settings, o) for o in object_types]
        wanted_direction = validate_direction(direction).value if direction is not None else None
        lease = self.settings.claim_timeout if lease_seconds is None else lease_seconds
        if isinstance(lease, bool) or not isinstance(lease, int) or not 0 < lease <= _MAX_LEASE_SECONDS:
            raise ValueError(f"lease_seconds must be a positive int of at most {_MAX_LEASE_SECONDS} (a year)")

        now = self._clock()
        token = uuid.uuid4().hex
        conditions = [
            queue.c.state == QueueState.PENDING.value,
            queue.c.not_before <= now,
            sa.or_(queue.c.claim_token.is_(None), queue.c.claimed_until < now),
            not_paused(),
        ]
        if object_types is not None:
            conditions.append(queue.c.object_type.in_(object_types))
        if wanted_direction is not None:
            conditions.append(queue.c.direction == wanted_direction)
        candidates = sa.select(queue.c.id).where(*conditions).order_by(queue.c.queued_at).limit(limit)
        claim_values = {
            "claim_token": token,
            "claimed_until": now + dt.timedelta(seconds=lease),
            "dirty_since": None,
        }

        def work(conn: Connection) -> list[sa.Row[t.Any]]:
            family = dialect_family(conn)
            if family == "sqlite":
                # One UPDATE takes SQLite's write lock before it reads the candidates,
                # so two workers can never pick the same rows.
                target = queue.c.id.in_(candidates.scalar_subquery())
            else:
                ids = conn.scalars(candidates.with_for_update(skip_locked=True)).all()
                if not ids:
                    return []
                target = queue.c.id.in_(ids)
            claim = sa.update(queue).where(target).values(**claim_values)
            if family == "mysql":  # no UPDATE … RETURNING on MariaDB/MySQL
                conn.execute(claim)
                rows = conn.execute(sa.select(queue).where(target)).all()
            else:
                rows = conn.execute(claim.returning(*queue.c)).all()
            return sorted(rows, key=lambda row: (row.queued_at, row.id))

        rows = self.transaction(work)
        return [
            ClaimedRecord(
                queue_id=row.id,
                object_type=row.object_type,
                record_id=row.record_id,
                operation=Operation(row.operation),
                direction=Direction(row.direction),
                label=row.label,
                queued_at=row.queued_at,
                attempts=row.attempts,
                claim_token=token,
            )
            for row in rows
        ]

    # -- success ----------------------------------------------------------------

    def mark_synced(self, records: object) -> SyncOutcome:
        claimed = validate_claimed(records)
        if not claimed:
            return SyncOutcome(synced=0, requeued=0, lost_claim=0)
        now = self._clock()
        by_token: dict[str, list[int]] = defaultdict(list)
        for record in claimed:
            by_token[record.claim_token].append(record.queue_id)

        def work(conn: Connection) -> tuple[int, int]:
            synced = requeued = 0
            for token, ids in by_token.items():
                mine = sa.and_(queue.c.claim_token == token, queue.c.id.in_(ids))
                synced += conn.execute(
                    sa.delete(queue).where(mine, queue.c.dirty_since.is_(None))
                ).rowcount
                # Changed while in flight: what was sent is synced, the newer change waits.
                requeued += conn.execute(
                    sa.update(queue)
                    .where(mine, queue.c.dirty_since.is_not(None))
                    .ordered_values(
                        (queue.c.operation, Operation.UPDATE.value),
                        (queue.c.queued_at, queue.c.dirty_since),
                        (queue.c.not_before, queue.c.dirty_since),
                        (queue.c.dirty_since, None),
                        (queue.c.claim_token, None),
                        (queue.c.claimed_until, None),
                    )
                ).rowcount
            insert_events(
                conn,
                [(r.object_type, r.record_id, r.operation.value, r.direction.value, r.queued_at) for r in claimed],
                now,
            )
            resolve_errors(
                conn, [(r.object_type, r.record_id, r.direction.value) for r in claimed if r.attempts > 0], now
            )
            return synced, requeued

        synced, requeued = self.transaction(work)
        return SyncOutcome(synced=synced, requeued=requeued, lost_claim=len(claimed) - synced - requeued)

    # -- failure ----------------------------------------------------------------

    def retry_delay(self, attempt: int) -> dt.timedelta:
        """Exponential backoff: ``RETRY_BACKOFF * 2**(attempt-1)`` seconds, capped at one hour."""
        seconds = self.settings.retry_backoff * 2 ** min(attempt - 1, 20)
        return dt.timedelta(seconds=min(seconds, _MAX_BACKOFF_SECONDS))

    def mark_failed(self, record: object, code: object, message: object, retry: object) -> bool:
        if not isinstance(record, ClaimedRecord):
            raise TypeError(f"record must be a ClaimedRecord, not {type(record).__name__}")
        if not isinstance(retry, bool):
            raise TypeError(f"retry must be a bool, not {type(retry).__name__}")
        code = validate_error_code(code)
        message = validate_error_message(message)
        now = self._clock()
        attempt = record.attempts + 1
        park = not retry or attempt >= self.settings.max_attempts
        mine = sa.and_(queue.c.id == record.queue_id, queue.c.claim_token == record.claim_token)
        released = (
            (queue.c.dirty_since, None),
            (queue.c.claim_token, None),
            (queue.c.claimed_until, None),
        )

        def work(conn: Connection) -> bool:
            parked_or_backed_off = conn.execute(
                sa.update(queue)
                .where(mine, queue.c.dirty_since.is_(None))
                .ordered_values(
                    (queue.c.attempts, attempt),
                    (queue.c.state, QueueState.PARKED.value if park else QueueState.PENDING.value),
                    (queue.c.not_before, now + self.retry_delay(attempt)),
                    *released,
                )
            ).rowcount
            # Changed while in flight: never parked, the newer change gets its try at once.
            changed_in_flight = conn.execute(
                sa.update(queue)
                .where(mine, queue.c.dirty_since.is_not(None))
                .ordered_values(
                    (queue.c.attempts, attempt),
                    (queue.c.state, QueueState.PENDING.value),
                    (queue.c.not_before, now),
                    *released,
                )
            ).rowcount
            if not parked_or_backed_off and not changed_in_flight:
                # Rolled back with nothing written: an error here would belong to a record
                # another worker now owns, and nothing would ever resolve it.
                raise ClaimLostError(
                    f"the claim on {record.object_type} {record.record_id!r} ({record.direction.value})"
                    " expired and another worker claimed it; the failure was not recorded"
                )
            insert_error(conn, record.object_type, record.record_id, record.label, record.operation.value,
                         record.direction.value, code, message, now, attempt)
            return park and bool(parked_or_backed_off)

        return self.transaction(work)
