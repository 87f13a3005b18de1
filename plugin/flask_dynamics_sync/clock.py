"""Time as the tables store it: naive UTC datetimes, whole hours, ISO 8601 with a ``Z``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

Clock = Callable[[], dt.datetime]
"""Returns the current time as a naive UTC datetime."""

HOUR = dt.timedelta(hours=1)


def utcnow() -> dt.datetime:
    """The current time as a naive UTC datetime, the form every table stores."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def naive_utc(value: dt.datetime) -> dt.datetime:
    """``value`` as the naive UTC datetime the tables store (naive input is taken as UTC)."""
    if not isinstance(value, dt.datetime):
        raise TypeError(f"expected a datetime, not {type(value).__name__}")
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value


def floor_hour(value: dt.datetime) -> dt.datetime:
    """The start of the hour ``value`` falls in."""
    return value.replace(minute=0, second=0, microsecond=0)


def ceil_hour(value: dt.datetime) -> dt.datetime:
    """The first hour boundary at or after ``value``."""
    floor = floor_hour(value)
    return floor if floor == value else floor + HOUR


def isoformat_utc(moment: dt.datetime, *, timespec: str = "auto") -> str:
    """A naive UTC timestamp as ISO 8601 with a ``Z``: ``2026-03-10T14:20:00Z``.

    ``timespec`` as for :meth:`datetime.datetime.isoformat` (exports use ``"seconds"``).
    """
    return moment.replace(tzinfo=None).isoformat(timespec=timespec) + "Z"
