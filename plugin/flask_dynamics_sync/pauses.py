"""Pausing an object in one direction: while paused, no claim hands its records out and no change is read.

Stored in ``dynamics_sync_pause`` (one row per paused object and direction), so
every worker on every machine sees it and it survives restarts. The queue
keeps growing while paused; resuming lets the workers drain it oldest first.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .database import dialect_family
from .models import LABEL_LENGTH
from .models import pause_table
from .models import queue_table
from .types import Direction


@dataclasses.dataclass(frozen=True)
class PauseInfo:
    """Who paused an object in a direction, and when."""

    object_type: str
    direction: Direction
    paused_by: str | None
    paused_at: dt.datetime


def paused(conn: Connection, object_types: Iterable[str] | None = None) -> dict[str, list[PauseInfo]]:
    """The pauses (of these object types: a primary-key search), by object type, directions in
    the order of :class:`Direction`."""
    query = sa.select(pause_table)
    if object_types is not None:
        query = query.where(pause_table.c.object_type.in_(list(object_types)))
    rows = conn.execute(query).all()
    found: dict[str, list[PauseInfo]] = {}
    order = list(Direction)
    for row in sorted(rows, key=lambda r: (r.object_type, order.index(Direction(r.direction)))):
        found.setdefault(row.object_type, []).append(
            PauseInfo(row.object_type, Direction(row.direction), row.paused_by, row.paused_at)
        )
    return found


def is_paused(conn: Connection, object_type: str, direction: Direction) -> bool:
    """Is ``object_type`` paused in ``direction``?"""
    return (
        conn.scalar(
            sa.select(sa.literal(1)).where(
                pause_table.c.object_type == object_type, pause_table.c.direction == direction.value
            )
        )
        is not None
    )


def pause(conn: Connection, object_type: str, direction: Direction, by: str | None, now: dt.datetime) -> bool:
    """Pause ``object_type`` in ``direction``; False if it already was (the first pause is kept)."""
    values = {
        "object_type": object_type,
        "direction": direction.value,
        "paused_by": None if by is None else by[:LABEL_LENGTH],
        "paused_at": now,
    }
    family = dialect_family(conn)
    if family == "mysql":
        return conn.execute(sa.insert(pause_table).prefix_with("IGNORE").values(values)).rowcount == 1
    if family == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    # psycopg reports no row count for ON CONFLICT DO NOTHING: RETURNING says whether a row went in.
    stmt = insert(pause_table).values(values).on_conflict_do_nothing().returning(pause_table.c.object_type)
    return conn.execute(stmt).first() is not None


def resume(conn: Connection, object_type: str, direction: Direction) -> bool:
    """Resume ``object_type`` in ``direction``; False if it was not paused."""
    return (
        conn.execute(
            sa.delete(pause_table).where(
                pause_table.c.object_type == object_type, pause_table.c.direction == direction.value
            )
        ).rowcount
        == 1
    )


def not_paused() -> sa.ColumnElement[bool]:
    """A condition on queue rows: their object type is not paused in their direction."""
    return ~sa.exists().where(
        pause_table.c.object_type == queue_table.c.object_type,
        pause_table.c.direction == queue_table.c.direction,
    )
