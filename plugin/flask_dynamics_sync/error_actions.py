"""What an admin can do with sync errors: retry, ignore, resolve.

Each action takes a selection, a ``WHERE`` condition on the error table (the
ids ticked in the list, see :func:`by_ids`, or the current search and
filters), and changes only the errors it applies to (:data:`SOURCE_STATES`).
Every function runs on the caller's connection and transaction; the view
runs each action in one transaction of its own.

*Retry* puts each selected record back into the queue through the recording
API (:meth:`Recorder.enqueue_rows`, whose upsert turns a parked row into a
pending one) and marks the errors ``retried`` in the same transaction.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import typing as t
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Engine

from .models import SyncError
from .recorder import Recorder
from .types import Change
from .types import ErrorState
from .types import Operation

errors = SyncError.__table__

#: Rows read and changed per round trip by a retry.
BATCH_SIZE = 1000


class ErrorAction(str, enum.Enum):
    """An action on sync errors."""

    RETRY = "retry"
    IGNORE = "ignore"
    RESOLVE = "resolve"


#: The states an action applies to; errors in other states are left alone.
SOURCE_STATES: dict[ErrorAction, tuple[ErrorState, ...]] = {
    ErrorAction.RETRY: (ErrorState.OPEN, ErrorState.IGNORED),
    ErrorAction.IGNORE: (ErrorState.OPEN, ErrorState.RETRIED),
    ErrorAction.RESOLVE: (ErrorState.OPEN, ErrorState.RETRIED, ErrorState.IGNORED),
}

#: The state an action leaves its errors in.
TARGET_STATE: dict[ErrorAction, ErrorState] = {
    ErrorAction.RETRY: ErrorState.RETRIED,
    ErrorAction.IGNORE: ErrorState.IGNORED,
    ErrorAction.RESOLVE: ErrorState.RESOLVED,
}


@dataclasses.dataclass(frozen=True)
class ActionOutcome:
    """What an action changed."""

    errors: int
    """Error rows whose state changed."""
    records: int = 0
    """Distinct records put back into the queue (retry only)."""


#: The largest error id there can be (a signed 64-bit key on every database).
MAX_ERROR_ID = 2**63 - 1


def by_ids(ids: Iterable[int | str]) -> sa.ColumnElement[bool]:
    """Select errors by primary key; ids that are not integers raise ``ValueError``.

    Ids outside ``1 … MAX_ERROR_ID`` match no error and are left out (databases
    refuse such numbers instead of matching nothing).
    """
    values = sorted({value for value in map(int, ids) if 0 < value <= MAX_ERROR_ID})
    return errors.c.id.in_(values)


def applicable(
    action: ErrorAction,
    where: sa.ColumnElement[bool] | None,
    *,
    object_types: Iterable[str],
    up_to_id: int | None = None,
) -> sa.ColumnElement[bool]:
    """The errors of ``where`` that ``action`` changes.

    Only errors in the action's source states; for a retry, only errors of
    object types still configured (the queue accepts no others). ``up_to_id``
    pins an "all matching" selection to what the viewer confirmed: errors
    recorded after the confirmation are not touched.
    """
    conditions = [errors.c.state.in_([s.value for s in SOURCE_STATES[action]])]
    if action is ErrorAction.RETRY:
        conditions.append(errors.c.object_type.in_(list(object_types)))
    if up_to_id is not None:
        conditions.append(errors.c.id <= up_to_id)
    if where is not None:
        conditions.append(where)
    return sa.and_(*conditions)


def preview(conn: Connection, condition: sa.ColumnElement[bool]) -> tuple[int, int | None]:
    """How many errors ``condition`` (from :func:`applicable`) selects, and the highest id."""
    count, highest = conn.execute(
        sa.select(sa.func.count(), sa.func.max(errors.c.id)).where(condition)
    ).one()
    return int(count), highest


#: Errors a confirmation page lists above its question.
SAMPLE_SIZE = 5


def sample(conn: Connection, condition: sa.ColumnElement[bool], limit: int = SAMPLE_SIZE) -> list[sa.Row[t.Any]]:
    """The first ``limit`` errors ``condition`` selects, by id: what a confirmation shows of them."""
    return list(
        conn.execute(
            sa.select(errors.c.id, errors.c.object_type, errors.c.record_id, errors.c.error_code, errors.c.error_message)
            .where(condition)
            .order_by(errors.c.id)
            .limit(limit)
        )
    )


def _set_state(
    conn: Connection, condition: sa.ColumnElement[bool], state: ErrorState, now: dt.datetime
) -> int:
    return conn.execute(
        sa.update(errors).where(condition).values(state=state.value, state_changed_at=now)
    ).rowcount


def ignore_errors(conn: Connection, condition: sa.ColumnElement[bool], *, now: dt.datetime) -> ActionOutcome:
    """Mark the errors of ``condition`` ignored (nothing is re-queued)."""
    return ActionOutcome(errors=_set_state(conn, condition, ErrorState.IGNORED, now))


def resolve_errors(conn: Connection, condition: sa.ColumnElement[bool], *, now: dt.datetime) -> ActionOutcome:
    """Mark the errors of ``condition`` resolved (nothing is re-queued)."""
    return ActionOutcome(errors=_set_state(conn, condition, ErrorState.RESOLVED, now))


def retry_errors(
    conn: Connection, recorder: Recorder, condition: sa.ColumnElement[bool], *, now: dt.datetime
) -> ActionOutcome:
    """Queue the records of the errors of ``condition`` again and mark those errors retried.

    Reads the errors in id order, :data:`BATCH_SIZE` at a time (memory stays
    flat for "all matching" selections); each record is queued once, as an
    insert if any of its selected errors was an insert. A record no longer in
    the queue comes back with its failed attempts counted, so that its errors
    are resolved when it syncs (``mark_synced``) and a new failure continues
    the count; a record still queued (parked) keeps its row's count.
    """
    columns = (
        errors.c.id,
        errors.c.object_type,
        errors.c.record_id,
        errors.c.direction,
        errors.c.operation,
        errors.c.record_label,
        errors.c.attempt,
    )
    queued: set[tuple[str, str, str]] = set()
    changed = 0
    last_id: int | None = None
    while True:
        stmt = sa.select(*columns).where(condition).order_by(errors.c.id).limit(BATCH_SIZE)
        if last_id is not None:
            stmt = stmt.where(errors.c.id > last_id)
        rows = conn.execute(stmt).all()
        if not rows:
            break
        last_id = rows[-1].id
        changes: dict[tuple[str, str, str], Change] = {}
        attempts: dict[tuple[str, str, str], int] = {}
        for row in rows:
            key = (row.object_type, row.record_id, row.direction)
            if key in queued:  # by an earlier batch
                continue
            earlier = changes.get(key)
            insert = row.operation == Operation.INSERT.value or (
                earlier is not None and earlier.operation is Operation.INSERT
            )
            label = row.record_label or (earlier.label if earlier is not None else None)
            operation = Operation.INSERT if insert else Operation.UPDATE
            changes[key] = Change(row.object_type, row.record_id, operation, row.direction, label)
            attempts[key] = max(attempts.get(key, 0), row.attempt or 1)
        queue_rows = []
        for key, change in changes.items():
            queue_row = recorder.queue_row(change, now)
            queue_row["attempts"] = attempts[key]  # only used when the row is new (the upsert keeps a row's count)
            queue_rows.append(queue_row)
        recorder.enqueue_rows(conn, queue_rows)
        queued.update(changes)
        changed += _set_state(conn, errors.c.id.in_([row.id for row in rows]), ErrorState.RETRIED, now)
    return ActionOutcome(errors=changed, records=len(queued))


def run_action(
    conn: Connection,
    action: ErrorAction,
    condition: sa.ColumnElement[bool],
    *,
    recorder: Recorder,
    now: dt.datetime,
) -> ActionOutcome:
    """Run ``action`` on the errors of ``condition`` (built with :func:`applicable`)."""
    if action is ErrorAction.RETRY:
        return retry_errors(conn, recorder, condition, now=now)
    if action is ErrorAction.IGNORE:
        return ignore_errors(conn, condition, now=now)
    if action is ErrorAction.RESOLVE:
        return resolve_errors(conn, condition, now=now)
    t.assert_never(action)


def run_on_ids(
    engine: Engine, recorder: Recorder, action: ErrorAction | str, ids: Iterable[int | str], *, now: dt.datetime
) -> ActionOutcome:
    """Run ``action`` on the errors with these ids, in a transaction of its own.

    What ``DynamicsSync.retry_errors``/``ignore_errors``/``resolve_errors`` call.
    """
    action = ErrorAction(action)
    condition = applicable(action, by_ids(ids), object_types=recorder.settings.objects)
    with engine.begin() as conn:
        return run_action(conn, action, condition, recorder=recorder, now=now)
