"""What needs attention among the sync errors: counts per state tab, groups of open errors.

Every figure here is one indexed read that never counts more than it must:

* :func:`capped_count` counts at most ``cap + 1`` rows (shown as "10,000+"
  beyond the cap), the way the Sync Errors list always has;
* :func:`tab_counts` gives the Open / Ignored / Resolved / All tabs their numbers;
* :func:`open_error_groups` groups the open errors by error code, object and
  direction, reading only the ``(state, direction, object_type, error_code,
  occurred_at)`` index;
* :func:`open_error_count` is the number on the *Sync Errors* menu entry and on
  the *Sync Status* headline, kept for :data:`OPEN_COUNT_SECONDS` per application.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import threading
import time
from collections.abc import Callable
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .models import SyncError
from .types import Direction
from .types import ErrorState

errors = SyncError.__table__


class StateTab(str, enum.Enum):
    """The tabs of the Sync Errors list (``?state=``); *Open* is the default."""

    OPEN = "open"
    IGNORED = "ignored"
    RESOLVED = "resolved"
    ALL = "all"


#: The error states each tab shows; ``None``: every state (retried errors are only under *All*).
TAB_STATES: dict[StateTab, ErrorState | None] = {
    StateTab.OPEN: ErrorState.OPEN,
    StateTab.IGNORED: ErrorState.IGNORED,
    StateTab.RESOLVED: ErrorState.RESOLVED,
    StateTab.ALL: None,
}

#: Most groups listed, the biggest first.
GROUP_LIMIT = 100

#: How long the open-error count of the menu badge is reused, in seconds.
OPEN_COUNT_SECONDS = 30.0


def tab_condition(tab: StateTab) -> sa.ColumnElement[bool] | None:
    """The ``WHERE`` condition of a tab (``None`` for *All*)."""
    state = TAB_STATES[tab]
    return None if state is None else errors.c.state == state.value


def _and(*conditions: sa.ColumnElement[bool] | None) -> sa.ColumnElement[bool] | None:
    present = [c for c in conditions if c is not None]
    return sa.and_(*present) if present else None


def _capped(condition: sa.ColumnElement[bool] | None, cap: int) -> sa.ScalarSelect[int]:
    inner = sa.select(sa.literal(1)).select_from(errors)
    if condition is not None:
        inner = inner.where(condition)
    return sa.select(sa.func.count()).select_from(inner.limit(cap + 1).subquery()).scalar_subquery()


def capped_count(conn: Connection | sa.orm.Session, condition: sa.ColumnElement[bool] | None, cap: int) -> int:
    """Errors matching ``condition``, counting at most ``cap + 1`` of them."""
    return int(conn.scalar(sa.select(_capped(condition, cap))) or 0)


def tab_counts(
    conn: Connection | sa.orm.Session, condition: sa.ColumnElement[bool] | None, cap: int
) -> dict[StateTab, int]:
    """Capped counts of each tab within ``condition`` (the search and filters), in one statement."""
    row = conn.execute(
        sa.select(*(_capped(_and(condition, tab_condition(tab)), cap).label(tab.value) for tab in StateTab))
    ).one()
    return {tab: int(row._mapping[tab.value] or 0) for tab in StateTab}


def tab_counts_of_states(states: Iterable[str]) -> dict[StateTab, int]:
    """Tab counts from the states of every matching error (a search reads them in its one pass)."""
    counts = dict.fromkeys(StateTab, 0)
    for state in states:
        counts[StateTab.ALL] += 1
        for tab, tab_state in TAB_STATES.items():
            if tab_state is not None and tab_state.value == state:
                counts[tab] += 1
    return counts


@dataclasses.dataclass(frozen=True)
class ErrorGroup:
    """Open errors that share an error code, an object and a direction: one cause to fix."""

    error_code: str
    object_type: str
    direction: Direction
    count: int
    first_seen: dt.datetime
    last_seen: dt.datetime
    sample_message: str
    """The message of the group's latest error."""
    sample_error_id: int


def group_condition(error_code: str, object_type: str, direction: Direction | str) -> sa.ColumnElement[bool]:
    """The open errors of one group."""
    return sa.and_(
        errors.c.state == ErrorState.OPEN.value,
        errors.c.direction == Direction(direction).value,
        errors.c.object_type == object_type,
        errors.c.error_code == error_code,
    )


def open_error_groups(conn: Connection, *, limit: int = GROUP_LIMIT) -> list[ErrorGroup]:
    """The ``limit`` biggest groups of open errors (then the most recent first).

    Two reads: the groups from the grouping index, then each group's latest message.
    """
    last_seen = sa.func.max(errors.c.occurred_at)
    rows = conn.execute(
        sa.select(
            errors.c.error_code,
            errors.c.object_type,
            errors.c.direction,
            sa.func.count().label("count"),
            sa.func.min(errors.c.occurred_at).label("first_seen"),
            last_seen.label("last_seen"),
        )
        .where(errors.c.state == ErrorState.OPEN.value)
        .group_by(errors.c.direction, errors.c.object_type, errors.c.error_code)
        .order_by(sa.func.count().desc(), last_seen.desc(), errors.c.error_code, errors.c.object_type, errors.c.direction)
        .limit(limit)
    ).all()
    samples = _latest_errors(conn, [(row.error_code, row.object_type, row.direction, row.last_seen) for row in rows])
    groups = []
    for row in rows:
        sample_id, message = samples[(row.error_code, row.object_type, row.direction)]
        groups.append(
            ErrorGroup(
                error_code=row.error_code,
                object_type=row.object_type,
                direction=Direction(row.direction),
                count=int(row.count),
                first_seen=row.first_seen,
                last_seen=row.last_seen,
                sample_message=message,
                sample_error_id=sample_id,
            )
        )
    return groups


def _latest_errors(
    conn: Connection, keys: list[tuple[str, str, str, dt.datetime]]
) -> dict[tuple[str, str, str], tuple[int, str]]:
    """Id and message of each group's latest open error (the highest id at its last time)."""
    if not keys:
        return {}
    found: dict[tuple[str, str, str], tuple[int, str]] = {}
    conditions = [
        sa.and_(group_condition(code, object_type, direction), errors.c.occurred_at == last_seen)
        for code, object_type, direction, last_seen in keys
    ]
    rows = conn.execute(
        sa.select(errors.c.id, errors.c.error_code, errors.c.object_type, errors.c.direction, errors.c.error_message)
        .where(sa.or_(*conditions))
        .order_by(errors.c.id)
    ).all()
    for row in rows:  # ascending ids: the highest wins
        found[(row.error_code, row.object_type, row.direction)] = (row.id, row.error_message)
    return found


class OpenErrorCount:
    """The open-error count, read at most once per :data:`OPEN_COUNT_SECONDS` (per application)."""

    def __init__(self, seconds: float = OPEN_COUNT_SECONDS, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._value: int | None = None
        self._read_at = 0.0

    def get(self, read: Callable[[], int]) -> int:
        """The cached count, or ``read()`` when it is older than :attr:`seconds`."""
        with self._lock:
            if self._value is not None and self._monotonic() - self._read_at < self.seconds:
                return self._value
        value = read()
        self.put(value)
        return value

    def put(self, value: int) -> None:
        """Keep a count just read elsewhere (the headline reads it fresh)."""
        with self._lock:
            self._value, self._read_at = value, self._monotonic()


def open_error_count(conn: Connection, cap: int) -> int:
    """Open errors, counting at most ``cap + 1`` (the ``(state, occurred_at)`` index)."""
    return capped_count(conn, tab_condition(StateTab.OPEN), cap)
